"""A certificate authority and a server certificate for 127.0.0.1/localhost, made with the
JDK's ``keytool`` (every machine that runs the local stack has it) for the secure local
stack and the tests: none is checked in. Passwords are generated and kept in files of
mode 0600 beside the stores."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Long enough for a session of tests or a demo; a new stack folder makes new ones.
VALIDITY_DAYS = 30


class CertificateError(RuntimeError):
    """keytool is missing or refused: one line."""


@dataclass(frozen=True)
class Certificates:
    """What a folder made by ``make_certificates`` holds."""

    folder: Path

    @property
    def ca_pem(self) -> Path:
        """The CA's certificate (PEM): what clients trust."""
        return self.folder / "ca.pem"

    @property
    def truststore(self) -> Path:
        """The CA as a PKCS12 truststore, for Java clients (the Spark connector)."""
        return self.folder / "truststore.p12"

    @property
    def keystore(self) -> Path:
        """The server's key and certificate chain (PKCS12), for the brokers and nodes."""
        return self.folder / "server.p12"

    @property
    def password_file(self) -> Path:
        """The one password of the three stores (mode 0600)."""
        return self.folder / "store-password"

    @property
    def password(self) -> str:
        return self.password_file.read_text(encoding="ascii").strip()


def write_secret(path: Path, text: str) -> None:
    """A file only its owner can read, holding ``text``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")
    path.chmod(0o600)


def make_certificates(folder: Path, *, common_name: str = "orderlog-local-ca") -> Certificates:
    """A CA, a server certificate it signed (for 127.0.0.1 and localhost) and a truststore,
    in ``folder``; kept if they are already there."""
    made = Certificates(folder)
    if all(p.exists() for p in (made.ca_pem, made.truststore, made.keystore, made.password_file)):
        return made
    keytool = shutil.which("keytool")
    if keytool is None:
        raise CertificateError("keytool is not on PATH: install a JDK (the local stack needs one anyway)")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*"):
        stale.unlink()
    write_secret(made.password_file, secrets.token_urlsafe(24))
    store = ["-storetype", "PKCS12", "-storepass:file", str(made.password_file)]
    ca_store = [*store, "-keystore", str(folder / "ca.p12")]
    server_store = [*store, "-keystore", str(made.keystore)]
    validity = ["-validity", str(VALIDITY_DAYS)]
    csr, server_pem = folder / "server.csr", folder / "server.pem"
    steps = [
        ["-genkeypair", "-alias", "ca", "-dname", f"CN={common_name}", "-keyalg", "RSA", "-keysize", "2048",
         "-ext", "bc:c", *validity, *ca_store],
        ["-exportcert", "-rfc", "-alias", "ca", "-file", str(made.ca_pem), *ca_store],
        ["-genkeypair", "-alias", "server", "-dname", "CN=localhost", "-keyalg", "RSA", "-keysize", "2048",
         *validity, *server_store],
        ["-certreq", "-alias", "server", "-file", str(csr), *server_store],
        ["-gencert", "-alias", "ca", "-infile", str(csr), "-outfile", str(server_pem), "-rfc",
         "-ext", "SAN=ip:127.0.0.1,dns:localhost", "-ext", "KU=digitalSignature,keyEncipherment",
         "-ext", "EKU=serverAuth", *validity, *ca_store],
        ["-importcert", "-noprompt", "-alias", "ca", "-file", str(made.ca_pem), *server_store],
        ["-importcert", "-alias", "server", "-file", str(server_pem), *server_store],
        ["-importcert", "-noprompt", "-alias", "ca", "-file", str(made.ca_pem), *store,
         "-keystore", str(made.truststore)],
    ]
    for step in steps:
        done = subprocess.run([keytool, *step], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            reason = (done.stderr or done.stdout).strip().splitlines()
            raise CertificateError(f"keytool {step[0]} failed: {reason[-1] if reason else done.returncode}")
    for private in (folder / "ca.p12", made.keystore):  # they hold private keys
        private.chmod(0o600)
    return made
