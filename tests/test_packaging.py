"""The project is a package that installs: its wheel carries every package and the CQL,
an installed copy works from any directory, spark-submit.sh ships it to the driver and the
executors (rebuilt only when the sources change), and `make setup` refuses a Python that
pyspark 3.5 and our pins do not support."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from jobs.shipping import SHIPPED_DIR, build_wheel, shipped_archive, sources_digest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orderlog", "jobs", "ingest_api", "viewer", "tools", "local_stack")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(ROOT, tmp_path_factory.mktemp("dist"))


def test_the_wheel_holds_every_package_and_the_data_they_read(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"{p}/__init__.py" for p in PACKAGES} <= names
    assert {"orderlog/cql/keyspace.cql", "orderlog/cql/tables.cql", "jobs/conf/log4j2.properties",
            "viewer/templates/daily.html", "viewer/static/viewer.js", "local_stack/jvm/pom.xml",
            "local_stack/templates/cassandra.yaml"} <= names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    # The CQL inside is the one of cassandra/, byte for byte.
    assert zipfile.ZipFile(wheel).read("orderlog/cql/tables.cql") == (ROOT / "cassandra" / "tables.cql").read_bytes()
    metadata = zipfile.ZipFile(wheel).read("orderlog-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: pyspark==3.5.7" in metadata and "Requires-Python: <3.13,>=3.11" in metadata
    assert 'Requires-Dist: pytest==9.2.0; extra == "dev"' in metadata  # tests stay out of the runtime


def test_an_installed_wheel_finds_its_cql_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)
    # The dependencies are the ones of this virtualenv (no download): a .pth file lends them.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": os.environ["PATH"], "ORDERLOG_CASSANDRA_KEYSPACE": "shop"}
    where = subprocess.run([str(python), "-c", "import orderlog.tables as t; print(t.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), where
    cql = subprocess.run([str(python), "-m", "orderlog.schema", "cql"], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=120)
    assert cql.returncode == 0, cql.stderr
    assert cql.stdout.startswith("CREATE KEYSPACE IF NOT EXISTS shop")
    assert "CREATE TABLE IF NOT EXISTS raw_orders" in cql.stdout
    assert "CREATE TABLE IF NOT EXISTS aggregated_dates" in cql.stdout


def test_the_shipped_package_is_built_again_only_when_the_sources_change(tmp_path: Path) -> None:
    first = shipped_archive()
    stamp = first.stat().st_mtime_ns
    assert shipped_archive() == first and first.stat().st_mtime_ns == stamp  # unchanged: not rebuilt
    assert first.parent == SHIPPED_DIR and first.name == f"orderlog-{sources_digest()}.zip"
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "requirements-dev.txt", *PACKAGES, "cassandra"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, copy / name)
    assert sources_digest(copy) == sources_digest()
    with (copy / "viewer" / "charts.py").open("a") as changed:
        changed.write("\n# a change\n")
    assert sources_digest(copy) != sources_digest()
    rebuilt = shipped_archive(copy, tmp_path / "py-files")
    assert rebuilt.name == f"orderlog-{sources_digest(copy)}.zip"
    assert b"# a change" in zipfile.ZipFile(rebuilt).read("viewer/charts.py")


@pytest.mark.integration
def test_a_job_run_through_spark_submit_imports_jobs_from_the_shipped_package() -> None:
    done = subprocess.run(["./spark-submit.sh", "code_origin"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    origins = json.loads(done.stdout.strip().splitlines()[-1])
    shipped = shipped_archive()
    assert origins["driver"] == str(shipped / "jobs" / "__init__.py")
    assert origins["executors"], origins
    for executor in origins["executors"]:  # Spark's copy of the very file, never this checkout
        assert executor.endswith(f"/{shipped.name}/jobs/__init__.py"), executor
        assert not executor.startswith(str(ROOT / "jobs")), executor


@pytest.mark.parametrize(
    ("interpreter", "line"),
    [
        ("#!/bin/sh\necho 'Python 3.13'\n", "Python 3.13; this project needs Python 3.11 or 3.12"),
        (None, "not found; this project needs Python 3.11 or 3.12"),
    ],
    ids=["python-3.13", "missing"],
)
def test_make_setup_refuses_an_unsupported_python_with_what_to_do(tmp_path: Path, interpreter, line) -> None:
    python = tmp_path / "python3.13"
    if interpreter:
        python.write_text(interpreter)
        python.chmod(0o755)
    done = subprocess.run(["make", "-s", "setup", f"PYTHON={python}", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stdout.strip() == (
        f"{python}: {line} (pyspark 3.5 and its pinned numpy): install one (Debian/Ubuntu: apt-get install "
        "python3.11-venv) and run PYTHON=python3.11 make setup"
    )
    assert not (tmp_path / "venv").exists()  # stopped before making anything


def test_make_accepts_a_supported_python() -> None:
    done = subprocess.run(["make", "-s", "check-python", f"PYTHON={sys.executable}", "VENV=/nonexistent"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
