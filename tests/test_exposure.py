"""The ingest API and the viewer refuse to listen beyond loopback without their credentials
(one line, exit 2), unless ORDERLOG_ALLOW_UNAUTHENTICATED=1: the real gunicorn, with each
app's own configuration file, as `make ingest` / `make viewer` and compose run them."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from orderlog.config import ConfigError, Settings, check_exposure, child_environment, is_loopback
from tests.conftest import free_ports, stop_process

ROOT = Path(__file__).resolve().parent.parent
APPS = {"ingest": "ingest_api", "viewer": "viewer"}
CREDENTIALS = {
    "ingest": {"ORDERLOG_INGEST_API_TOKEN": "t0ken"},
    "viewer": {"ORDERLOG_VIEWER_USER": "analyst", "ORDERLOG_VIEWER_PASSWORD": "s3cret"},
}
# every interface (IPv4 and IPv6) and a LAN address
EXPOSED = ["0.0.0.0", "192.168.1.20", "::"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST",
                                  "app.localhost"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", [*EXPOSED, "10.0.0.5", "example.org", "my-laptop", "", "::ffff:10.0.0.1"])
def test_addresses_others_may_reach(host):
    assert not is_loopback(host)


@pytest.mark.parametrize("server", APPS)
@pytest.mark.parametrize("host", EXPOSED)
def test_without_credentials_a_non_loopback_bind_is_refused_naming_what_to_set(server, host):
    settings = Settings()
    with pytest.raises(ConfigError) as refused:
        check_exposure(settings, server, [host])
    variable = "ORDERLOG_INGEST_HOST" if server == "ingest" else "ORDERLOG_VIEWER_HOST"
    assert str(refused.value).startswith(f"{variable}={host!r}: expected a loopback address")
    assert next(iter(CREDENTIALS[server])) in str(refused.value)
    assert "ORDERLOG_ALLOW_UNAUTHENTICATED=1" in str(refused.value)
    # credentials, or the override, let it listen
    with_credentials = {"ingest": {"ingest_api_token": "t"}, "viewer": {"viewer_user": "u", "viewer_password": "p"}}
    check_exposure(settings.replace(**with_credentials[server]), server, [host])
    check_exposure(settings.replace(access_allow_unauthenticated=True), server, [host])
    check_exposure(settings, server, ["127.0.0.1", "::1", "localhost"])


def test_the_other_apps_credentials_do_not_count():
    settings = Settings().replace(ingest_api_token="t")
    with pytest.raises(ConfigError, match="ORDERLOG_VIEWER_USER and ORDERLOG_VIEWER_PASSWORD"):
        check_exposure(settings, "viewer", ["0.0.0.0"])


# --- the real servers -------------------------------------------------------------------------


def _gunicorn(server: str, *flags: str) -> list[str]:
    app = APPS[server]
    return [sys.executable, "-m", "gunicorn", "-c", f"{app}/gunicorn.conf.py", *flags, f"{app}:create_app()"]


def _environment(server: str, host: str, port: int, **extra: str) -> dict[str, str]:
    variable = "ORDERLOG_INGEST" if server == "ingest" else "ORDERLOG_VIEWER"
    return {**child_environment(Settings()), f"{variable}_HOST": host, f"{variable}_PORT": str(port), **extra}


@pytest.mark.parametrize("server", APPS)
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20"])
def test_gunicorn_refuses_an_exposed_bind_with_one_line_and_exit_2(server, host):
    (port,) = free_ports(1)
    result = subprocess.run(_gunicorn(server), cwd=ROOT, env=_environment(server, host, port),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f": error: ORDERLOG_{server.upper()}_HOST={host!r}: expected a loopback address" in lines[0]


@pytest.mark.parametrize("server", APPS)
def test_gunicorn_refuses_an_exposed_bind_given_by_its_flag(server):
    (port,) = free_ports(1)
    result = subprocess.run(_gunicorn(server, "-b", f"[::]:{port}"), cwd=ROOT,
                            env=_environment(server, "127.0.0.1", port), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "bind='::': expected a loopback address (127.0.0.1, ::1, localhost) without "
        f"{' and '.join(CREDENTIALS[server])}: set {'it' if server == 'ingest' else 'them'}, "
        "or ORDERLOG_ALLOW_UNAUTHENTICATED=1 to serve without credentials anyway"
    )


def _serves(server: str, env: dict[str, str], port: int, log: Path) -> None:
    """gunicorn starts with ``env`` and answers /healthz on the port; then it is stopped."""
    with log.open("wb") as out:
        process = subprocess.Popen(_gunicorn(server), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
                    assert reply.status == 200
                    return
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
    finally:
        stop_process(process)


@pytest.mark.parametrize("server", APPS)
def test_gunicorn_listens_on_every_interface_with_credentials_or_the_override(server, tmp_path):
    (port,) = free_ports(1)
    _serves(server, _environment(server, "0.0.0.0", port, **CREDENTIALS[server]), port, tmp_path / "auth.log")
    (port,) = free_ports(1)
    _serves(server, _environment(server, "0.0.0.0", port, ORDERLOG_ALLOW_UNAUTHENTICATED="1"), port,
            tmp_path / "override.log")
