"""The compose profile "monitoring" (Prometheus and Grafana), validated without a Docker
engine: Debian's ``docker-compose config`` with the profile, the scrape configuration
against the compose services and the ports their settings give, Grafana's provisioning,
and every dashboard expression against the metric names the code really exports (read from
the registries' own exposition and the viewer's real /metrics, never a hand-written list)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orderlog.config import load_settings
from tests.test_compose import COMPOSE, MONITORING, compose_config, published_port, volume_mount

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
MONITORING_DIR = ROOT / "monitoring"
DASHBOARD = MONITORING_DIR / "grafana" / "dashboards" / "orderlog.json"
ALERTS = MONITORING_DIR / "alerts.yml"
# Each /metrics of the pipeline: the compose service that serves it.
SCRAPED = {"ingest", "viewer", "streaming"}
METRIC = re.compile(r"\b(orderlog_[a-z0-9_]+)\b")
# Sample names a family of each type exposes (prometheus-client's exposition).
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("_sum", "_count", "_created"), "info": ("_info",), "unknown": ("",)}


@pytest.fixture(scope="module")
def config() -> dict:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is not installed: run `make compose-check` (apt-get install docker-compose)"
    # `config` with the profile, as a user starts it; then the resolved file, through the
    # same helper the other compose tests use.
    checked = subprocess.run([tool, "-f", str(COMPOSE), "--profile", "monitoring", "config", "--services"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert set(checked.stdout.split()) >= MONITORING
    result = compose_config()
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _mounts(service: dict) -> dict[str, str]:
    return dict(volume_mount(v) for v in service.get("volumes", []))


def test_the_profile_runs_pinned_official_images_on_localhost(config) -> None:
    services = config["services"]
    images = {name: services[name]["image"] for name in MONITORING}
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", images["prometheus"]), images
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", images["grafana"]), images
    for name in MONITORING:
        assert services[name]["profiles"] == ["monitoring"]
        assert services[name]["healthcheck"]["test"]
        assert {published_port(p)[0] for p in services[name]["ports"]} == {"127.0.0.1"}
    # Every file it mounts is in the repository.
    for name in MONITORING:
        for source in _mounts(services[name]).values():
            if source.startswith("/"):
                assert Path(source).exists(), (name, source)
                assert Path(source).resolve().is_relative_to(MONITORING_DIR), (name, source)
    assert _mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"] == str(MONITORING_DIR / "prometheus.yml")


def _scrape_targets() -> dict[str, list[str]]:
    scrape = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())
    return {job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
            for job in scrape["scrape_configs"]}


def test_every_scrape_target_is_a_service_and_the_port_its_settings_give(config) -> None:
    services = config["services"]
    targets = _scrape_targets()
    hosts = {}
    for job, addresses in targets.items():
        for address in addresses:
            host, port = address.rsplit(":", 1)
            assert host in services, (job, address)
            hosts[host] = int(port)
    assert set(hosts) == SCRAPED  # every /metrics of the pipeline, nothing else
    # The port each app really listens on, from the configuration compose gives it.
    effective = {name: load_settings(services[name]["environment"]) for name in SCRAPED}
    assert hosts["ingest"] == effective["ingest"].ingest.port
    assert hosts["viewer"] == effective["viewer"].viewer.port
    assert hosts["streaming"] == effective["streaming"].stream.metrics_port != 0
    # ... and on an address the compose network reaches.
    assert effective["ingest"].ingest.host == effective["viewer"].viewer.host == "0.0.0.0"
    assert effective["streaming"].stream.metrics_host == "0.0.0.0"
    # Only the streaming job's container listens beyond loopback for its metrics.
    for name in SCRAPED - {"streaming"}:
        assert effective[name].stream.metrics_host == "127.0.0.1"
    assert all(published_port(p)[1] != hosts["streaming"] for p in services["streaming"].get("ports", []))


def test_grafana_is_provisioned_with_the_prometheus_and_the_dashboard(config) -> None:
    services = config["services"]
    grafana = _mounts(services["grafana"])
    provisioning = Path(grafana["/etc/grafana/provisioning"])
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus"
    prometheus_port = {published_port(p)[1] for p in services["prometheus"]["ports"]}
    assert source["url"] in {f"http://prometheus:{port}" for port in prometheus_port}
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "orderlog.yml").read_text())["providers"]
    folder = Path(grafana[provider["options"]["path"]])  # the provider reads the mounted folder
    assert folder.resolve() == DASHBOARD.parent.resolve()
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def exported_names(exposition: str) -> set[str]:
    """Every sample name an exposition's families have or would have (a labelled family
    without children yet still declares its type)."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def exported(cassandra, settings) -> set[str]:
    """The names the code exports: the apps' default registry (ingest and viewer), the
    streaming driver's registry, and the viewer's real /metrics with a run in its ledger
    (its aggregate figures are made at scrape time)."""
    import ingest_api.metrics  # noqa: F401  (registers the ingest API's metrics)
    from jobs import stream_metrics
    from tests.viewer_data import load_standard, viewer_app
    from viewer.db import close_app

    names = exported_names(generate_latest(REGISTRY).decode())
    source = SimpleNamespace(latestOffset='{"t": {"0": 1}}', endOffset='{"t": {"0": 1}}')
    stream_metrics.record(SimpleNamespace(inputRowsPerSecond=0.0, processedRowsPerSecond=0.0,
                                          durationMs={"triggerExecution": 0}, sources=[source]), {})
    names |= exported_names(generate_latest(stream_metrics.REGISTRY).decode())
    load_standard(cassandra)
    app = viewer_app(settings)
    try:
        response = app.test_client().get("/metrics")  # type: ignore[attr-defined]
        assert response.status_code == 200
        names |= exported_names(response.get_data(as_text=True))
    finally:
        close_app(app)  # type: ignore[arg-type]
    return names


def test_every_dashboard_expression_names_metrics_the_code_exports(exported) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            found = METRIC.findall(target["expr"])
            assert found, (panel["title"], target["expr"])
            for name in found:
                used[name] = panel["title"]
    unknown = {name: title for name, title in used.items() if name not in exported}
    assert unknown == {}, f"not exported by the code: {unknown}"
    # What the issue asks the dashboard to show.
    assert {"orderlog_ingest_events_accepted_total", "orderlog_stream_offsets_behind",
            "orderlog_stream_batch_duration_seconds_bucket", "orderlog_stream_rows_total",
            "orderlog_aggregate_latest_date_age_days"} <= set(used)


def test_every_alert_is_loaded_and_names_metrics_the_code_exports(config, exported) -> None:
    scrape = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())
    mounts = _mounts(config["services"]["prometheus"])
    assert [Path(mounts[path]).resolve() for path in scrape["rule_files"]] == [ALERTS.resolve()]
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    operations = (ROOT / "docs" / "operations.md").read_text()
    jobs = set(_scrape_targets())
    for rule in rules:
        found = METRIC.findall(rule["expr"])
        # Prometheus' own `up` of our scrape jobs, or figures the code exports.
        up = re.fullmatch(r'up\{job=~"([a-z|]+)"\} == 0', rule["expr"])
        assert (up and set(up.group(1).split("|")) == jobs) or found, (rule["alert"], rule["expr"])
        assert set(found) <= exported, (rule["alert"], set(found) - exported)
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
        assert f"`{rule['alert']}`" in operations, f"{rule['alert']}: what to do is not in docs/operations.md"


def test_the_check_is_real_a_misspelt_metric_is_caught(exported) -> None:
    assert "orderlog_stream_offsets_behind" in exported and "orderlog_viewer_cassandra_up" in exported
    assert "orderlog_aggregate_last_run_failed" in exported  # from the viewer's scrape of the ledger
    assert "orderlog_stream_offset_behind" not in exported
