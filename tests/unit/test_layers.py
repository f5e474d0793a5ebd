"""DESIGN.md's layer table, enforced: each module imports only what its layer may."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "treadle"

PURE = {
    "config",
    "errors",
    "http.events",
    "http.h1",
    "http.h2",
    "http.headers",
    "wsgi.environ",
    "mongrel2.tnetstring",
    "mongrel2.message",
}
REACTOR = {
    "http.protocol",
    "http.exchange",
    "dispatch",
    "static",
    "listen",
    "tls",
    "accesslog",
    "deadlines",
    "reactor",
    "mongrel2.transport",
}
BRIDGE = {
    "wsgi.container",
    "wsgi.bridge",
    "wsgi.body",
    "pool",
    "blocking",
    "cancel",
    "timing",
    "stats",
    "hardcancel",
}

FORBIDDEN = {
    "pure": (
        "twisted",
        "threading",
        "socket",
        "queue",
        "treadle.wsgi.body",
        "treadle.wsgi.container",
        "treadle.wsgi.bridge",
        "treadle.pool",
        "treadle.server",
    ),
    "reactor": (
        "threading",
        "treadle.wsgi.container",
        "treadle.wsgi.bridge",
        "treadle.wsgi.body",
        "treadle.pool",
        "treadle.blocking",
        "treadle.server",
        "treadle.cli",
    ),
    "bridge": (
        "socket",
        "twisted.internet.tcp",
        "treadle.http.protocol",
        "treadle.server",
        "treadle.cli",
        "treadle.dispatch",
    ),
}


def module_names() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name] = path
    return found


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(name: str) -> str | None:
    if name in PURE:
        return "pure"
    if name in REACTOR:
        return "reactor"
    if name in BRIDGE:
        return "bridge"
    return None


def test_every_module_respects_its_layer() -> None:
    broken = []
    for name, path in module_names().items():
        layer = layer_of(name)
        if layer is None:
            continue
        for imported in imports_of(path):
            for banned in FORBIDDEN[layer]:
                if imported == banned or imported.startswith(banned + "."):
                    broken.append(f"{name} ({layer}) imports {imported}")
    assert not broken, "\n".join(broken)


def test_nothing_but_entry_points_imports_the_global_reactor() -> None:
    allowed = {"server", "service", "cli", "__main__"}
    offenders = []
    for name, path in module_names().items():
        top = name.split(".")[0]
        if top in allowed or name.startswith("django"):
            continue
        source = path.read_text()
        if "from twisted.internet import reactor" in source:
            offenders.append(name)
    assert not offenders


def test_every_module_opens_with_a_docstring() -> None:
    missing = [
        name
        for name, path in module_names().items()
        if ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert not missing
