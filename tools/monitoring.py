"""Where each Prometheus endpoint of the pipeline is, from the effective configuration (the
ORDERLOG_* settings of this shell), whether it answers now, and the scrape configuration to
give your own Prometheus: the compose profile "monitoring" does the same inside Docker.

    python -m tools.monitoring          # make monitoring

Exit status: 0, or 2 for a bad setting (one line).
"""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass

from orderlog.config import Settings, load_or_exit

# How long each endpoint gets to answer the check.
CHECK_TIMEOUT_SECONDS = 1.0
# A server bound to every address is reached on this host through loopback.
WILDCARDS = {"0.0.0.0": "127.0.0.1"}


@dataclass(frozen=True)
class Endpoint:
    job: str  # the Prometheus job name
    what: str
    host: str
    port: int  # 0: turned off
    settings: str  # the variables that place it

    @property
    def target(self) -> str:
        """host:port as a scraper on this host connects to it."""
        return f"{WILDCARDS.get(self.host, self.host)}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"


def endpoints(settings: Settings) -> list[Endpoint]:
    return [
        Endpoint("orderlog-ingest", "ingest API", settings.ingest.host, settings.ingest.port,
                 "ORDERLOG_INGEST_HOST, ORDERLOG_INGEST_PORT"),
        Endpoint("orderlog-viewer", "viewer", settings.viewer.host, settings.viewer.port,
                 "ORDERLOG_VIEWER_HOST, ORDERLOG_VIEWER_PORT"),
        Endpoint("orderlog-streaming", "streaming job", settings.stream.metrics_host, settings.stream.metrics_port,
                 "ORDERLOG_STREAM_METRICS_HOST, ORDERLOG_STREAM_METRICS_PORT"),
    ]


def answers(endpoint: Endpoint) -> bool:
    try:
        with urllib.request.urlopen(endpoint.url, timeout=CHECK_TIMEOUT_SECONDS) as reply:
            return reply.status == 200
    except (OSError, ValueError):
        return False


def scrape_config(served: list[Endpoint]) -> str:
    """The scrape_configs entries of the endpoints, as YAML (a target in JSON's quotes, which
    YAML reads as the same string)."""
    lines = ["scrape_configs:"]
    for e in served:
        lines += [f"  - job_name: {e.job}", "    metrics_path: /metrics", "    static_configs:",
                  f"      - targets: [{json.dumps(e.target)}]"]
    return "\n".join(lines) if served else "scrape_configs: []"


def report(settings: Settings, check: bool = True) -> str:
    lines = ["The pipeline's Prometheus endpoints (from this shell's ORDERLOG_* configuration):", ""]
    served = []
    for e in endpoints(settings):
        if not e.port:
            lines.append(f"  {e.what:<14} off ({e.settings.split(', ')[-1]}=0)")
            continue
        served.append(e)
        state = ("answering" if answers(e) else "not answering now") if check else ""
        lines.append(f"  {e.what:<14} {e.url:<36} {state:<18} ({e.settings})")
    lines += [
        "  aggregate job  not scraped: a batch job; its runs are the viewer's orderlog_aggregate_* figures",
        "",
        "The streaming job serves its endpoint only while it runs (make streaming). /metrics needs no",
        "credentials on either app. For a Prometheus on another host, set the apps' and the job's",
        "*_HOST beyond loopback and use this host's address (docs/operations.md).",
        "",
        "Prometheus scrape configuration (prometheus.yml):",
        "",
        scrape_config(served).rstrip(),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv:
        print("usage: python -m tools.monitoring (no arguments: it reads the ORDERLOG_* settings)", file=sys.stderr)
        return 2
    print(report(load_or_exit("python -m tools.monitoring")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
