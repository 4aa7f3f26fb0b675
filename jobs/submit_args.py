"""Prints, one per line, the spark-submit arguments that spark-submit.sh adds for a job:
the connector jars, the packaged code and the connector settings from the configuration.
Kept in Python so that the configuration is read in exactly one place."""

from __future__ import annotations

import sys

from jobs.session import connector_jars, spark_conf
from orderlog.config import load_settings


def submit_args(code_zip: str) -> list[str]:
    settings = load_settings()
    jars = connector_jars()
    if not jars:
        raise SystemExit("spark-submit.sh: no connector jars in build/jars/spark; run `make setup`")
    args = ["--jars", ",".join(jars), "--py-files", code_zip]
    for key, value in spark_conf(settings).items():
        args += ["--conf", f"{key}={value}"]
    return args


if __name__ == "__main__":
    print("\n".join(submit_args(sys.argv[1])))
