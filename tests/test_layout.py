"""The floors of docs/architecture.md hold: imports only go down, so there is no cycle and
each app or job can be read (and shipped) without the others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"orderlog", "ingest_api", "viewer", "jobs", "tools", "local_stack", "bench", "tests"}

# What each package may import of ours (besides itself).
ALLOWED = {
    "orderlog": set(),
    "ingest_api": {"orderlog"},
    "viewer": {"orderlog"},
    "jobs": {"orderlog"},
}


def _our_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_floors_below_it(package):
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in _our_imports(path) - ALLOWED[package] - {package}
    }
    assert not wrong, sorted(wrong)


def test_the_check_sees_a_wrong_import(tmp_path):
    wrong = tmp_path / "x.py"
    wrong.write_text("from viewer.params import page_args\nimport jobs.session\nimport json\n")
    assert _our_imports(wrong) == {"viewer", "jobs"}
