"""Prints, one per line, the spark-submit arguments that spark-submit.sh adds for a job:
the master (ORDERLOG_SPARK_MASTER, unless the command line names one), the connector jars,
the project's package as --py-files (jobs/shipping.py builds it when the sources changed)
and the connector settings. Kept in Python so that the configuration is read in exactly one
place; a bad setting, or a package that cannot be built, is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.session import connector_jars, spark_conf
from jobs.shipping import ShippingError, shipped_archive
from orderlog.config import Settings, load_or_exit

PROG = "spark-submit.sh"


def submit_args(settings: Settings, code: Path, *, master_given: bool) -> list[str]:
    jars = connector_jars(settings)
    if not jars:
        raise SystemExit(f"{PROG}: error: no connector jars in {settings.paths.jars_path / 'spark'}; run `make setup`")
    args = [] if master_given else ["--master", settings.spark.master]
    args += ["--jars", ",".join(jars), "--py-files", str(code)]
    for key, value in spark_conf(settings).items():
        args += ["--conf", f"{key}={value}"]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.submit_args")
    parser.add_argument("--master-given", action="store_true", help="the command line names the master")
    args = parser.parse_args(argv)
    settings = load_or_exit(PROG)
    try:
        code = shipped_archive()
    except ShippingError as exc:
        raise SystemExit(f"{PROG}: error: {exc}") from None
    print("\n".join(submit_args(settings, code, master_given=args.master_given)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
