"""HTTP load through wrk (a C load generator), and the constant-JSON floor app.

The Python load clients of the first benchmarks took the CPU the server needed on a 2-core
machine, so request rates measured the clients as much as the server. wrk (Debian package
``wrk``; ``make system-deps`` installs it) costs far less per request. ``bench/wrk.lua``
sends the lines of a file in turn (paths to GET, or JSON bodies to POST) and reports p50,
p95 and p99 as one JSON line, read here.

Run on its own, it measures the framework's floor alone (what the other benches compare
with): `.venv/bin/python -m bench.wrk [--seconds 10] [--connections 32] [--size 170]`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, Response

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "wrk.lua"


def wrk(url: str, items: Sequence[str], *, seconds: float, connections: int, method: str = "GET",
        threads: int = 2) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) of ``connections`` keep-alive connections
    sending ``items`` in turn for ``seconds``."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("bench: wrk is not installed (make system-deps, or apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lines", delete=False, encoding="utf-8") as listing:
        listing.write("\n".join(items) + "\n")
    try:
        # wrk needs nothing of this process's environment: only what its script reads.
        env = {"WRK_ITEMS": listing.name, "WRK_METHOD": method}
        result = subprocess.run(
            [binary, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
             "--timeout", "30s", "-s", str(LUA), url],
            env=env, capture_output=True, text=True, timeout=seconds + 120, check=False,
        )
    finally:
        os.unlink(listing.name)
    lines = [line for line in result.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"bench: wrk failed ({result.returncode}): {result.stderr.strip() or result.stdout[-500:]}")
    raw = json.loads(lines[-1].removeprefix("WRK_JSON "))
    return {
        "requests_per_s": raw["requests"] / (raw["duration_us"] / 1e6),
        "requests": raw["requests"],
        "failed": raw["non_2xx_3xx"] + raw["socket_errors"],
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
    }


# -- the framework's floor: constant JSON under the same gunicorn configuration ---------------

def floor_app(size: int) -> str:
    """The gunicorn app argument of the floor app answering ``size`` bytes."""
    return f"bench.wrk:create_floor_app({int(size)})"


def create_floor_app(size: int = 64) -> Flask:
    """A Flask app that answers every request to /floor with the same JSON document of
    ``size`` bytes (status 202 for POST, as the ingest API): what Flask and gunicorn cost on
    this machine with no work behind them."""
    empty = len(json.dumps({"status": "ok", "pad": ""}))
    body = json.dumps({"status": "ok", "pad": "x" * max(0, size - empty)}).encode()
    app = Flask(__name__)

    @app.route("/floor", methods=["GET", "POST"])
    def floor() -> Response:
        from flask import request

        request.get_data()  # read the body, as the real apps do
        return Response(body, status=202 if request.method == "POST" else 200, mimetype="application/json")

    return app


@contextmanager
def gunicorn(config: str, app: str, port: int, env: dict[str, str], ready_path: str) -> Iterator[str]:
    """``app`` under gunicorn with the config file of one of our apps, in the environment
    ``env`` (orderlog.config.child_environment: the settings of that config); yields the base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", config, "-b", f"127.0.0.1:{port}", "--access-logfile", "/dev/null",
         app],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"bench: gunicorn {app} exited ({process.returncode})")
            try:
                with urllib.request.urlopen(base + ready_path, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench: gunicorn {app} did not answer {ready_path}") from None
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    """Figures and ratios as the bench's last line shows them: three decimals, None kept."""
    return {k: None if v is None else round(v, 3) for k, v in values.items()}


def main() -> None:
    """The constant-JSON floor under the ingest API's gunicorn configuration, GET and POST."""
    import argparse

    from local_stack.supervisor import free_ports
    from orderlog.config import child_environment, load_or_exit

    parser = argparse.ArgumentParser(description="the framework's floor: constant JSON under gunicorn, loaded by wrk")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--size", type=int, default=170, help="bytes of the constant answer")
    args = parser.parse_args()
    settings = load_or_exit("bench.wrk")
    (port,) = free_ports(1)
    env = child_environment(settings.replace(ingest_log_level="warning"))
    with gunicorn("ingest_api/gunicorn.conf.py", floor_app(args.size), port, env, "/floor") as base:
        get = wrk(base, ["/floor"], seconds=args.seconds, connections=args.connections)
        post = wrk(base + "/floor", ["{}"], method="POST", seconds=args.seconds, connections=args.connections)
    print(f"constant JSON ({args.size} bytes), gunicorn {settings.ingest.workers} workers x "
          f"{settings.ingest.threads} threads, {args.connections} wrk connections, {args.seconds:g} s each")
    for name, result in (("GET", get), ("POST", post)):
        print(f"  {name:5} {result['requests_per_s']:>10,.0f} req/s   p50 {result['p50_ms']:.1f} ms   "
              f"p95 {result['p95_ms']:.1f} ms")
    ratios = {"post_vs_get": post["requests_per_s"] / get["requests_per_s"]}
    print(json.dumps({"bench": "framework_floor", "ratios": rounded(ratios),
                      "figures": rounded({"get_requests_per_s": get["requests_per_s"], "get_p95_ms": get["p95_ms"],
                                          "post_requests_per_s": post["requests_per_s"], "post_p95_ms": post["p95_ms"],
                                          "load_average_1m": os.getloadavg()[0]})}))


if __name__ == "__main__":
    main()
