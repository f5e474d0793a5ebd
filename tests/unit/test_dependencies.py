"""What pyproject.toml declares is what the code imports, and CI's lowest pins are its floors."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "treadle"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0])


def top_level_imports() -> dict[str, set[str]]:
    """Top-level module imported by src/treadle -> the modules that import it."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def third_party_imports() -> dict[str, set[str]]:
    return {
        name: users
        for name, users in top_level_imports().items()
        if name not in sys.stdlib_module_names and name != "treadle"
    }


def distributions_of(module: str) -> set[str]:
    return {normalize(dist) for dist in packages_distributions().get(module, [])}


def test_lowest_constraints_are_the_declared_floors() -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lowest_constraints.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    committed = (ROOT / "tests" / "constraints-lowest.txt").read_text()
    assert committed == generated, "run: python scripts/lowest_constraints.py --write"


def test_every_imported_library_is_declared() -> None:
    project = PYPROJECT["project"]
    declared = {requirement_name(r) for r in project["dependencies"]}
    for group in project["optional-dependencies"].values():
        declared |= {requirement_name(r) for r in group}
    undeclared = {
        module: sorted(users)
        for module, users in third_party_imports().items()
        if not distributions_of(module) & declared
    }
    assert not undeclared


def test_every_required_dependency_is_imported() -> None:
    # A required dependency nobody imports costs every user an install (h2, prometheus-client).
    imported: set[str] = set()
    for module in third_party_imports():
        imported |= distributions_of(module)
    unused = [
        r for r in PYPROJECT["project"]["dependencies"] if requirement_name(r) not in imported
    ]
    assert not unused


def test_tls_is_an_extra_that_dev_installs() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {requirement_name(r) for r in extras["tls"]} >= {"pyopenssl", "service-identity"}
    assert "treadle[tls]" in extras["dev"]
    assert not {"pyopenssl", "service-identity"} & {
        requirement_name(r) for r in PYPROJECT["project"]["dependencies"]
    }
