"""The secure variant of the local stack (``make up-secure``): what managed clusters ask of
a client, on this machine. Kafka takes clients only on a SASL_SSL listener with
SCRAM-SHA-512; Cassandra only over TLS, with PasswordAuthenticator. It runs beside the
plain stack: its own folder (``secure-stack/`` in ORDERLOG_VAR_DIR) and its own ports (the
plain stack's plus ORDERLOG_STACK_SECURE_PORT_OFFSET).

Everything secret is made at the first start, under its folder, never checked in: a CA and
the servers' certificate (``keytool``, local_stack/certificates.py), the passwords of the
application's Kafka user and Cassandra role and of the broker's own user (files of mode
0600). Clients find all of it through ``secure_environment``, which names the files
(``ORDERLOG_*_FILE``), not the secrets. Cassandra keeps its default superuser
(cassandra/cassandra, loopback only) to create the application's role.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster

from local_stack.certificates import Certificates, make_certificates, write_secret
from local_stack.stack import Cassandra, Kafka, Server, StackConfig, StackError, _kafka_cluster_id, _tcp_open
from orderlog.cassandra_session import ssl_context
from orderlog.config import Settings, child_environment, load_settings, secret_variables
from orderlog.kafka_admin import brokers_answer
from orderlog.kafka_security import kafka_python_security

# The application's Kafka user and Cassandra role; the broker's own SCRAM user.
APP_USER = "orderlog"
BROKER_USER = "broker"
CASSANDRA_SUPERUSER = ("cassandra", "cassandra")
SASL_MECHANISM = "SCRAM-SHA-512"
# The line that starts what the secure variant adds to a server's configuration.
SECURE_MARKER = "# The secure stack (local_stack/secure.py): clients only on SASL_SSL with SCRAM-SHA-512."


def secure_root(settings: Settings) -> Path:
    return (settings.paths.var_path / "secure-stack").resolve()


def _secret_file(root: Path, name: str) -> Path:
    return root / "secrets" / name


def secure_environment(settings: Settings) -> dict[str, str]:
    """The ORDERLOG_* variables that point every client (and the stack's own commands) at
    the secure stack: its ports and folder, SASL_SSL with SCRAM, TLS to Cassandra with the
    application's role; secrets by file."""
    root, offset = secure_root(settings), settings.stack.secure_port_offset
    certificates = Certificates(root / "certificates")
    kafka_port = int(settings.kafka.bootstrap_list[0].rpartition(":")[2]) + offset
    return {
        "ORDERLOG_STACK_DIR": str(root),
        "ORDERLOG_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "ORDERLOG_STACK_KAFKA_CONTROLLER_PORT": str(settings.stack.kafka_controller_port + offset),
        "ORDERLOG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ORDERLOG_KAFKA_SASL_MECHANISM": SASL_MECHANISM,
        "ORDERLOG_KAFKA_SASL_USERNAME": APP_USER,
        "ORDERLOG_KAFKA_SASL_PASSWORD_FILE": str(_secret_file(root, "kafka-password")),
        "ORDERLOG_KAFKA_SSL_CA_FILE": str(certificates.ca_pem),
        "ORDERLOG_CASSANDRA_PORT": str(settings.cassandra.port + offset),
        "ORDERLOG_STACK_CASSANDRA_STORAGE_PORT": str(settings.stack.cassandra_storage_port + offset),
        "ORDERLOG_STACK_CASSANDRA_JMX_PORT": str(settings.stack.cassandra_jmx_port + offset),
        "ORDERLOG_CASSANDRA_USERNAME": APP_USER,
        "ORDERLOG_CASSANDRA_PASSWORD_FILE": str(_secret_file(root, "cassandra-password")),
        "ORDERLOG_CASSANDRA_SSL": "1",
        "ORDERLOG_CASSANDRA_SSL_CA_FILE": str(certificates.ca_pem),
        "ORDERLOG_CASSANDRA_SSL_TRUSTSTORE_FILE": str(certificates.truststore),
        "ORDERLOG_CASSANDRA_SSL_TRUSTSTORE_PASSWORD_FILE": str(certificates.password_file),
        "ORDERLOG_CASSANDRA_SSL_TRUSTSTORE_TYPE": "PKCS12",
    }


def secure_child_environment(settings: Settings) -> dict[str, str]:
    """A child process's environment for the secure stack: ``settings`` moved onto it."""
    env = child_environment(settings)
    secure = secure_environment(settings)
    for variable in secret_variables():  # the file given, not a value
        if variable + "_FILE" in secure:
            env.pop(variable, None)
    return {**env, **secure}


def make_secrets(settings: Settings) -> Certificates:
    """The certificates and passwords, made at the first start and kept."""
    root = secure_root(settings)
    for name in ("kafka-password", "cassandra-password", "broker-password"):
        if not _secret_file(root, name).exists():
            write_secret(_secret_file(root, name), secrets.token_urlsafe(24))
    return make_certificates(root / "certificates")


def secure_settings(settings: Settings) -> Settings:
    """``settings`` pointed at the secure stack (its secrets made if they are not yet)."""
    make_secrets(settings)
    return load_settings(environ=secure_child_environment(settings))


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


class SecureKafka(Kafka):
    """The stack's Kafka with its client listener on SASL_SSL/SCRAM-SHA-512 (also the
    inter-broker listener); the controller listener stays on loopback PLAINTEXT."""

    @property
    def root(self) -> Path:
        return self.config.root

    def prepare(self, java: str) -> None:
        super().prepare(java)  # the plain node; format_storage below on the first start
        self._secure_properties()

    def _secure_properties(self) -> None:
        """The plain node's properties, the client listener moved to SASL_SSL (mode 0600:
        they hold the stores' and the broker's passwords)."""
        text = self.properties_file.read_text()
        if SECURE_MARKER in text:
            return
        certificates = Certificates(self.root / "certificates")
        broker_password = _read(_secret_file(self.root, "broker-password"))
        store_password = certificates.password
        text = (text.replace("PLAINTEXT://", "SASL_SSL://")
                .replace("inter.broker.listener.name=PLAINTEXT", "inter.broker.listener.name=SASL_SSL")
                .replace("CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"))
        text += "\n".join([
            SECURE_MARKER,
            f"sasl.enabled.mechanisms={SASL_MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={SASL_MECHANISM}",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram."
            f'ScramLoginModule required username="{BROKER_USER}" password="{broker_password}";',
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={certificates.keystore}",
            f"ssl.keystore.password={store_password}",
            f"ssl.key.password={store_password}",
            "ssl.truststore.type=PKCS12",
            f"ssl.truststore.location={certificates.truststore}",
            f"ssl.truststore.password={store_password}",
            "ssl.client.auth=none",
            "",
        ])
        write_secret(self.properties_file, text)

    def format_storage(self, java: str) -> None:
        """KRaft storage formatted with the SCRAM credentials of the broker and the
        application. The passwords go through a java @argument file of mode 0600, not the
        command line."""
        self._secure_properties()

        scram = [f"{SASL_MECHANISM}=[name={name},password={_read(_secret_file(self.root, file))}]"
                 for name, file in ((BROKER_USER, "broker-password"), (APP_USER, "kafka-password"))]
        arguments = [
            "-Xmx256m", f"-Dlog4j2.configurationFile={self.home / 'config' / 'log4j2.xml'}",
            "-cp", self.classpath(), "kafka.tools.StorageTool", "format", "-t", _kafka_cluster_id(),
            "-c", str(self.properties_file), *[a for value in scram for a in ("--add-scram", value)],
        ]
        argument_file = self.home / "config" / "format.args"
        write_secret(argument_file, "\n".join(f'"{a}"' for a in arguments))
        try:
            result = subprocess.run([java, f"@{argument_file}"], capture_output=True, text=True, check=False)
        finally:
            argument_file.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"formatting the secure Kafka's storage failed:\n{result.stdout}{result.stderr}")

    def answers(self) -> bool:
        settings = self.config.settings
        return _tcp_open("127.0.0.1", self.config.kafka_port) and brokers_answer(
            settings.kafka.bootstrap_list, 5.0, client_id="local-stack-probe",
            security=kafka_python_security(settings.kafka))[0]


class SecureCassandra(Cassandra):
    """The stack's Cassandra with client encryption required and PasswordAuthenticator."""

    def prepare(self, java: str) -> None:
        super().prepare(java)
        certificates = Certificates(self.config.root / "certificates")
        text = self.yaml_file.read_text()
        text = (text.replace("authenticator: AllowAllAuthenticator", "authenticator: PasswordAuthenticator")
                .replace("authorizer: AllowAllAuthorizer", "authorizer: CassandraAuthorizer"))
        text += "\n".join([
            "# The secure stack (local_stack/secure.py): CQL only over TLS.",
            "client_encryption_options:",
            "  enabled: true",
            "  optional: false",
            f"  keystore: {certificates.keystore}",
            f"  keystore_password: {certificates.password}",
            "  store_type: PKCS12",
            "  require_client_auth: false",
            "",
        ])
        write_secret(self.yaml_file, text)

    def answers(self) -> bool:
        return _tcp_open(self.config.address, self.config.cassandra_port) and superuser_query(
            self.config.settings, "SELECT release_version FROM system.local") is not None


def superuser_query(settings: Settings, statement: str) -> object:
    """One statement as the default superuser over TLS; None when it cannot be run now."""
    cluster = Cluster([settings.cassandra.host_list[0]], port=settings.cassandra.port, protocol_version=5,
                      auth_provider=PlainTextAuthProvider(*CASSANDRA_SUPERUSER), ssl_context=ssl_context(settings),
                      connect_timeout=5, control_connection_timeout=5)
    try:
        return cluster.connect().execute(statement, timeout=10)
    except Exception:  # noqa: BLE001 - the driver raises many kinds while the node starts
        return None
    finally:
        cluster.shutdown()


def create_application_role(settings: Settings) -> None:
    """The application's role with its generated password, allowed everything on every
    keyspace (it creates the schema). CREATE ROLE takes no bound password: it is ours,
    made of URL-safe characters only (secrets.token_urlsafe)."""
    password = settings.cassandra.password
    if not password.replace("-", "").replace("_", "").isalnum():
        raise StackError("the secure stack's Cassandra password file holds characters it did not generate")
    statements = [
        f"CREATE ROLE IF NOT EXISTS {APP_USER} WITH PASSWORD = '{password}' AND LOGIN = true",
        f"GRANT ALL PERMISSIONS ON ALL KEYSPACES TO {APP_USER}",
    ]
    for statement in statements:
        if superuser_query(settings, statement) is None:
            raise StackError(f"the secure Cassandra refused to set up the role {APP_USER}; see its log")


def secure_servers(config: StackConfig) -> dict[str, Server]:
    return {"kafka": SecureKafka(config), "cassandra": SecureCassandra(config)}
