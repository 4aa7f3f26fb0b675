"""Secure connections (issue 17), the pure part: the settings (secrets from files, masked,
checked together), each Kafka client's mapping of them, the Python driver's TLS context,
and the Spark settings that may go on a command line holding no secret."""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
from pathlib import Path

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_api.producer import make_producer
from jobs.session import secret_spark_conf, spark_conf
from local_stack.certificates import Certificates, make_certificates
from orderlog.cassandra_session import ssl_context
from orderlog.config import (
    MASK,
    ConfigError,
    Settings,
    child_environment,
    declarations,
    effective_lines,
    load_settings,
    secret_variables,
)
from orderlog.kafka_security import (
    jaas_config,
    kafka_python_client,
    kafka_python_security,
    librdkafka_security,
    spark_kafka_options,
)
from tests.test_config import ROOT, VARIABLES  # the same facts as the configuration tests use

# What a secret is only accepted with.
NEEDED_WITH = {"ORDERLOG_VIEWER_PASSWORD": {"ORDERLOG_VIEWER_USER": "u"},
               "ORDERLOG_CASSANDRA_PASSWORD": {"ORDERLOG_CASSANDRA_USERNAME": "u"}}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def _secret_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "secret"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _scram_ssl(ca: Path, **extra: str) -> dict[str, str]:
    return {"ORDERLOG_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "ORDERLOG_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "ORDERLOG_KAFKA_SASL_USERNAME": "orderlog", "ORDERLOG_KAFKA_SASL_PASSWORD": 'pa"ss\\word',
            "ORDERLOG_KAFKA_SSL_CA_FILE": str(ca), **extra}


# --- secrets from files -------------------------------------------------------------------------


@pytest.mark.parametrize("variable", secret_variables())
def test_every_secret_can_be_read_from_a_file_without_its_trailing_newline(tmp_path, variable):
    env = {f"{variable}_FILE": _secret_file(tmp_path, "s3 cret\n"), **NEEDED_WITH.get(variable, {})}
    settings = load_settings(environ=env)
    values = {d.env: getattr(getattr(settings, s), f) for s, f, d, _ in declarations()}
    assert values[variable] == "s3 cret"
    assert f"{variable}={MASK}  # {variable}_FILE" in effective_lines(settings, env)


def test_a_secret_set_both_ways_is_an_error_naming_both(tmp_path):
    path = _secret_file(tmp_path, "from-file")
    with pytest.raises(ConfigError) as error:
        load_settings(environ={"ORDERLOG_KAFKA_SASL_PASSWORD": "direct", "ORDERLOG_KAFKA_SASL_PASSWORD_FILE": path})
    assert str(error.value) == (f"ORDERLOG_KAFKA_SASL_PASSWORD_FILE={path!r}: expected ORDERLOG_KAFKA_SASL_PASSWORD "
                                "unset (set only one of them)")
    # An empty value is no value: compose files write them.
    settings = load_settings(environ={"ORDERLOG_KAFKA_SASL_PASSWORD": "", "ORDERLOG_KAFKA_SASL_PASSWORD_FILE": path})
    assert settings.kafka.sasl_password == "from-file"


@pytest.mark.parametrize("where", ["missing", "folder"])
def test_a_secret_file_that_cannot_be_read_is_one_line(tmp_path, where):
    path = str(tmp_path / "nothing") if where == "missing" else str(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_settings(environ={"ORDERLOG_CASSANDRA_PASSWORD_FILE": path})
    assert str(error.value) == f"ORDERLOG_CASSANDRA_PASSWORD_FILE={path!r}: expected a readable UTF-8 file holding " \
                               "the secret"


@hypothesis.settings(max_examples=100, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@given(variable=st.sampled_from(secret_variables()), content=st.binary(max_size=40),
       others=st.dictionaries(st.sampled_from(VARIABLES), st.text(max_size=20), max_size=2))
def test_any_bytes_in_a_secret_file_are_a_setting_or_one_line_without_the_secret(tmp_path, variable, content,
                                                                                 others):
    path = tmp_path / "secret"
    path.write_bytes(content)
    try:
        loaded = load_settings(environ={**others, f"{variable}_FILE": str(path)})
    except ConfigError as exc:
        message = str(exc)
        named = message.split("=", 1)[0]
        assert "\n" not in message and (named in VARIABLES or named == f"{variable}_FILE")
        secret = content.decode("utf-8", "replace").strip()
        assert len(secret) < 4 or secret not in message.split("=", 1)[1].replace(repr(str(path)), "")
    else:
        assert isinstance(loaded, Settings)


def test_python_m_orderlog_config_shows_no_secret_read_from_a_file(tmp_path):
    env = {"ORDERLOG_KAFKA_SASL_PASSWORD_FILE": _secret_file(tmp_path, "hunter22\n"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "orderlog.config"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"ORDERLOG_KAFKA_SASL_PASSWORD={MASK}  # ORDERLOG_KAFKA_SASL_PASSWORD_FILE" in result.stdout.splitlines()
    assert "hunter22" not in result.stdout + result.stderr


def test_a_child_process_reads_the_same_secret_file_and_gets_no_copy_in_its_environment(tmp_path):
    base = {"PATH": "/bin", "ORDERLOG_CASSANDRA_PASSWORD_FILE": _secret_file(tmp_path, "pw\n"),
            "ORDERLOG_CASSANDRA_USERNAME": "app"}
    settings = load_settings(environ=base)
    env = child_environment(settings, base)
    assert "ORDERLOG_CASSANDRA_PASSWORD" not in env and env["ORDERLOG_CASSANDRA_PASSWORD_FILE"] == base[
        "ORDERLOG_CASSANDRA_PASSWORD_FILE"]
    assert load_settings(environ=env) == settings
    changed = settings.replace(cassandra_password="other")  # a value set in code wins over the file
    env = child_environment(changed, base)
    assert "ORDERLOG_CASSANDRA_PASSWORD_FILE" not in env and load_settings(environ=env) == changed


# --- settings checked together ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORDERLOG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
         "ORDERLOG_KAFKA_SECURITY_PROTOCOL='SASL_SSL': expected ORDERLOG_KAFKA_SASL_USERNAME and "
         "ORDERLOG_KAFKA_SASL_PASSWORD (or ORDERLOG_KAFKA_SASL_PASSWORD_FILE) too"),
        ({"ORDERLOG_KAFKA_SECURITY_PROTOCOL": "TLS"},
         "ORDERLOG_KAFKA_SECURITY_PROTOCOL='TLS': expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ({"ORDERLOG_KAFKA_SASL_MECHANISM": "GSSAPI"},
         "ORDERLOG_KAFKA_SASL_MECHANISM='GSSAPI': expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
        ({"ORDERLOG_KAFKA_SSL_CA_FILE": "/no/such/ca.pem"},
         "ORDERLOG_KAFKA_SSL_CA_FILE='/no/such/ca.pem': expected a readable file (or unset)"),
        ({"ORDERLOG_KAFKA_SSL_CERT_FILE": "{ca}"},
         "ORDERLOG_KAFKA_SSL_CERT_FILE='{ca}': expected ORDERLOG_KAFKA_SSL_KEY_FILE too (a client certificate "
         "needs its key)"),
        ({"ORDERLOG_CASSANDRA_USERNAME": "app"},
         "ORDERLOG_CASSANDRA_USERNAME='app': expected ORDERLOG_CASSANDRA_PASSWORD too (authentication needs both, "
         "or neither)"),
        ({"ORDERLOG_CASSANDRA_PASSWORD": "pw"},
         f"ORDERLOG_CASSANDRA_PASSWORD='{MASK}': expected ORDERLOG_CASSANDRA_USERNAME too (authentication needs "
         "both, or neither)"),
        ({"ORDERLOG_CASSANDRA_SSL_TRUSTSTORE_TYPE": "PEM"},
         "ORDERLOG_CASSANDRA_SSL_TRUSTSTORE_TYPE='PEM': expected one of JKS, PKCS12"),
    ],
)
def test_security_settings_that_cannot_work_are_one_line(certificates, env, message):
    env = {k: v.replace("{ca}", str(certificates.ca_pem)) for k, v in env.items()}
    with pytest.raises(ConfigError) as error:
        load_settings(environ=env)
    assert str(error.value) == message.replace("{ca}", str(certificates.ca_pem))


# --- each Kafka client's names ------------------------------------------------------------------


def test_plaintext_sets_only_the_protocol():
    kafka = Settings().kafka
    assert librdkafka_security(kafka) == {"security.protocol": "plaintext"}
    assert kafka_python_security(kafka) == {"security_protocol": "PLAINTEXT"}
    assert spark_kafka_options(kafka) == {"kafka.security.protocol": "PLAINTEXT"}


def test_sasl_ssl_with_scram_in_librdkafka_names(certificates):
    kafka = load_settings(environ=_scram_ssl(certificates.ca_pem)).kafka
    assert librdkafka_security(kafka) == {
        "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "orderlog",
        "sasl.password": 'pa"ss\\word', "ssl.ca.location": str(certificates.ca_pem)}


def test_sasl_ssl_with_scram_in_kafka_python_names(certificates):
    kafka = load_settings(environ=_scram_ssl(certificates.ca_pem)).kafka
    assert kafka_python_security(kafka) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "orderlog",
        "sasl_plain_password": 'pa"ss\\word', "ssl_cafile": str(certificates.ca_pem)}
    assert kafka_python_client(kafka)["bootstrap_servers"] == ["127.0.0.1:9092"]


def test_mutual_tls_in_every_client(certificates):
    env = {"ORDERLOG_KAFKA_SECURITY_PROTOCOL": "SSL", "ORDERLOG_KAFKA_SSL_CERT_FILE": str(certificates.ca_pem),
           "ORDERLOG_KAFKA_SSL_KEY_FILE": str(certificates.password_file)}
    kafka = load_settings(environ=env).kafka
    assert librdkafka_security(kafka) == {"security.protocol": "ssl", "ssl.certificate.location": str(
        certificates.ca_pem), "ssl.key.location": str(certificates.password_file)}
    assert kafka_python_security(kafka)["ssl_certfile"] == str(certificates.ca_pem)
    options = spark_kafka_options(kafka)
    assert options["kafka.ssl.keystore.type"] == "PEM" and "sasl" not in " ".join(options)
    assert options["kafka.ssl.keystore.certificate.chain"] == certificates.ca_pem.read_text()


def test_the_spark_source_gets_the_ca_as_content_and_a_jaas_line_with_the_credentials_quoted(certificates):
    kafka = load_settings(environ=_scram_ssl(certificates.ca_pem)).kafka
    options = spark_kafka_options(kafka)
    assert options["kafka.security.protocol"] == "SASL_SSL" and options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["kafka.ssl.truststore.type"] == "PEM"
    assert options["kafka.ssl.truststore.certificates"] == certificates.ca_pem.read_text()
    assert options["kafka.sasl.jaas.config"] == jaas_config(kafka) == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="orderlog" '
        'password="pa\\"ss\\\\word";')


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_both_ingest_producers_take_the_security_settings(certificates, client):
    settings = load_settings(environ={**_scram_ssl(certificates.ca_pem), "ORDERLOG_KAFKA_CLIENT": client})
    config = make_producer(settings).config
    if client == "confluent-kafka":
        assert (config["security.protocol"], config["sasl.username"], config["ssl.ca.location"]) == (
            "sasl_ssl", "orderlog", str(certificates.ca_pem))
        assert config["acks"] == "all"
    else:
        assert (config["security_protocol"], config["sasl_plain_username"], config["ssl_cafile"]) == (
            "SASL_SSL", "orderlog", str(certificates.ca_pem))
        assert config["acks"] == "all"


# --- Cassandra: the Python driver and the connector --------------------------------------------


def test_the_driver_has_no_tls_context_unless_asked():
    assert ssl_context(Settings()) is None


def test_the_driver_trusts_the_configured_ca_and_checks_host_names_unless_told_not_to(certificates):
    env = {"ORDERLOG_CASSANDRA_SSL": "1", "ORDERLOG_CASSANDRA_SSL_CA_FILE": str(certificates.ca_pem)}
    context = ssl_context(load_settings(environ=env))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(c["subject"][0])["commonName"] for c in context.get_ca_certs()] == ["orderlog-local-ca"]
    unchecked = ssl_context(load_settings(environ={**env, "ORDERLOG_CASSANDRA_SSL_CHECK_HOSTNAME": "0"}))
    assert not unchecked.check_hostname and unchecked.verify_mode == ssl.CERT_REQUIRED


def test_the_connector_settings_on_the_command_line_hold_no_secret(certificates):
    settings = load_settings(environ={
        "ORDERLOG_CASSANDRA_USERNAME": "app", "ORDERLOG_CASSANDRA_PASSWORD": "cass-pw", "ORDERLOG_CASSANDRA_SSL": "1",
        "ORDERLOG_CASSANDRA_SSL_TRUSTSTORE_FILE": str(certificates.truststore),
        "ORDERLOG_CASSANDRA_SSL_TRUSTSTORE_TYPE": "pkcs12", "ORDERLOG_CASSANDRA_SSL_TRUSTSTORE_PASSWORD": "ts-pw"})
    public = spark_conf(settings)
    assert public["spark.cassandra.connection.ssl.enabled"] == "true"
    assert public["spark.cassandra.connection.ssl.trustStore.path"] == str(certificates.truststore)
    assert public["spark.cassandra.connection.ssl.trustStore.type"] == "PKCS12"
    assert public["spark.cassandra.auth.username"] == "app"
    assert "cass-pw" not in public.values() and "ts-pw" not in public.values()
    assert secret_spark_conf(settings) == {"spark.cassandra.auth.password": "cass-pw",
                                           "spark.cassandra.connection.ssl.trustStore.password": "ts-pw"}


def test_the_certificates_are_made_once_with_private_files(certificates):
    assert make_certificates(certificates.folder) == certificates
    for private in (certificates.password_file, certificates.keystore):
        assert private.stat().st_mode & 0o077 == 0


# --- a refusal named in one line -----------------------------------------------------------------


def test_a_refused_cassandra_login_or_certificate_is_one_line_naming_the_settings():
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    from orderlog.cassandra_session import refusal

    settings = load_settings(environ={"ORDERLOG_CASSANDRA_USERNAME": "app", "ORDERLOG_CASSANDRA_PASSWORD": "x",
                                      "ORDERLOG_CASSANDRA_SSL": "1"})
    login = NoHostAvailable("no host", {"h:1": AuthenticationFailed(
        'Failed to authenticate to h:1: Error from server: code=0100 [Bad credentials] message="Provided username '
        'app and/or password are incorrect"')})
    assert refusal(settings, login) == (
        "Cassandra at 127.0.0.1:9042 refused the login of ORDERLOG_CASSANDRA_USERNAME='app' (Provided username app "
        "and/or password are incorrect): check ORDERLOG_CASSANDRA_USERNAME and ORDERLOG_CASSANDRA_PASSWORD")
    certificate = NoHostAvailable("no host", {"h:1": PermissionError(
        1, "Tried connecting to [('h', 1)]. Last error: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
           "self-signed certificate in certificate chain (_ssl.c:1006)")})
    assert refusal(settings, certificate) == (
        "the TLS certificate of Cassandra at 127.0.0.1:9042 is not trusted (self-signed certificate in certificate "
        "chain): check ORDERLOG_CASSANDRA_SSL_CA_FILE (and ORDERLOG_CASSANDRA_SSL_CHECK_HOSTNAME)")
    assert refusal(settings, NoHostAvailable("no host", {"h:1": ConnectionRefusedError(111, "refused")})) is None
    # A reset of plain CQL is only a hint (a node shutting down resets too): retried, not a refusal.
    from orderlog.cassandra_session import _unreachable

    reset = NoHostAvailable("no host", {"h:1": ConnectionResetError(104, "reset")})
    assert refusal(settings, reset) is None
    assert _unreachable(settings.replace(cassandra_ssl=False), reset) == (
        "Cassandra is unreachable at 127.0.0.1:9042 (it closed the connection at once: does it require TLS? "
        "ORDERLOG_CASSANDRA_SSL=1)")


def test_a_refused_kafka_login_or_certificate_ends_the_streaming_job_with_one_line():
    from jobs.stream_source import kafka_refusal

    settings = load_settings(environ={"ORDERLOG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                      "ORDERLOG_KAFKA_SASL_USERNAME": "app", "ORDERLOG_KAFKA_SASL_PASSWORD": "x"})
    login = ("[STREAM_FAILED] Query terminated with exception: org.apache.kafka.common.errors."
             "SaslAuthenticationException: Authentication failed during authentication due to invalid credentials "
             "with SASL mechanism SCRAM-SHA-512\n\tat org.apache...")
    assert kafka_refusal(settings, login) == (
        "Kafka at 127.0.0.1:9092 refused the SASL login of ORDERLOG_KAFKA_SASL_USERNAME='app' (Authentication "
        "failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512): check "
        "ORDERLOG_KAFKA_SASL_USERNAME, ORDERLOG_KAFKA_SASL_PASSWORD and ORDERLOG_KAFKA_SASL_MECHANISM")
    certificate = ("org.apache.kafka.common.errors.SslAuthenticationException: SSL handshake failed\nCaused by: "
                   "sun.security.provider.certpath.SunCertPathBuilderException: unable to find valid "
                   "certification path to requested target")
    assert kafka_refusal(settings, certificate) == (
        "the TLS certificate of Kafka at 127.0.0.1:9092 is not trusted (unable to find valid certification path to "
        "requested target): check ORDERLOG_KAFKA_SSL_CA_FILE")
    assert kafka_refusal(settings, "java.lang.OutOfMemoryError: Java heap space") is None


def test_kafka_python_logs_no_password_even_at_debug(caplog):
    from kafka import KafkaAdminClient

    import orderlog.kafka_admin  # noqa: F401  (installs the mask where the admin clients are made)

    caplog.set_level(logging.DEBUG, logger="kafka")
    with pytest.raises(Exception):  # noqa: B017 - nothing listens there; only its log line matters
        KafkaAdminClient(bootstrap_servers=["127.0.0.1:1"], bootstrap_timeout_ms=200,
                         security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="u",
                         sasl_plain_password="pw-4714")
    started = [r.getMessage() for r in caplog.records if "Starting KafkaAdminClient" in r.getMessage()]
    assert started and "sasl_plain_username': 'u'" in started[0]
    assert "pw-4714" not in caplog.text and f"'sasl_plain_password': '{MASK}'" in started[0]
