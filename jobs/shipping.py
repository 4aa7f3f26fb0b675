"""The code spark-submit.sh ships to the Spark driver and executors: this project's wheel
(pyproject.toml), built again only when its sources changed.

pyspark puts a ``--py-files`` entry on the executors' sys.path only when its name ends in
.zip, .egg or .jar, and a wheel of pure Python is a zip archive: so the wheel travels as
``build/py-files/orderlog-<digest of the sources>.zip``, and the driver and every executor
import the package from that file, never from a working directory.

    python -m jobs.shipping        # build it if needed; print its path (the Docker image does)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from orderlog.config import PROJECT_ROOT

SHIPPED_DIR = PROJECT_ROOT / "build" / "py-files"
# What the wheel is built from: pyproject.toml's packages, their data, and what shapes it.
SOURCES = (
    "pyproject.toml", "requirements.txt", "requirements-dev.txt",
    "orderlog", "jobs", "ingest_api", "viewer", "tools", "local_stack", "cassandra",
)
# An older archive may still be on the sys.path of a job that runs (zipimport reads it on
# every import): archives are removed only once they are this old.
KEEP_OLD_ARCHIVES_S = 7 * 86_400


class ShippingError(RuntimeError):
    """The package could not be built; one line says why."""


def source_files(root: Path = PROJECT_ROOT) -> Iterator[Path]:
    for name in SOURCES:
        path = root / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in path.rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def sources_digest(root: Path = PROJECT_ROOT) -> str:
    """A digest of every file the wheel is built from (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(source_files(root)):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_wheel(root: Path, out_dir: Path) -> Path:
    """The wheel of the project at ``root``, built in ``out_dir`` from a copy of its sources
    (an in-tree build would leave build/lib and *.egg-info behind, and two builds at once
    would share them). Uses the setuptools of this environment: no download."""
    with tempfile.TemporaryDirectory(prefix="orderlog-wheel-") as tmp:
        source = Path(tmp) / "source"
        for path in source_files(root):
            target = source / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-cache-dir",
             "--wheel-dir", str(out_dir), str(source)],
            capture_output=True, text=True, check=False,
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip wheel failed"])[-1]
        raise ShippingError(f"building the package failed: {last}")
    return next(out_dir.glob("orderlog-*.whl"))


def shipped_archive(root: Path = PROJECT_ROOT, shipped_dir: Path = SHIPPED_DIR) -> Path:
    """The archive of the current sources, built now if it is not there yet."""
    target = shipped_dir / f"orderlog-{sources_digest(root)}.zip"
    if target.is_file():
        return target
    shipped_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=shipped_dir) as tmp:
        wheel = build_wheel(root, Path(tmp))
        os.replace(wheel, target)  # atomic: a job started meanwhile sees all of it or none
    _remove_old(shipped_dir, keep=target)
    return target


def _remove_old(shipped_dir: Path, keep: Path) -> None:
    for old in shipped_dir.glob("orderlog-*.zip"):
        if old != keep and time.time() - old.stat().st_mtime > KEEP_OLD_ARCHIVES_S:
            old.unlink(missing_ok=True)


if __name__ == "__main__":
    try:
        print(shipped_archive())
    except ShippingError as exc:
        sys.exit(f"python -m jobs.shipping: error: {exc}")
