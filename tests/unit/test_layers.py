"""The layer table, enforced: each module imports only what its layer allows, transitively.

Every module of src/treadle is in exactly one layer (a new module fails here until it is
placed). A module's imports are read with ``ast`` (imports under ``if TYPE_CHECKING:`` do
not run and are skipped; imports inside functions count). For each module, everything
it reaches through treadle's own modules must be allowed for ITS layer: a reactor module
that imports a bridge module that imports ``threading`` breaks the reactor row even though
it never names ``threading`` itself. docs/design/layers.md is the same table in prose.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "treadle"

# -- the table ---------------------------------------------------------------------------

LAYERS: dict[str, set[str]] = {
    # bytes <-> events and plain data: no sockets, no threads, no Twisted
    "pure": {
        "config",
        "errors",
        "foreign_flags",
        "proxy_header",
        "settings_doc",
        "version",
        "tls_names",
        "http.chunked",
        "http.conditional",
        "http.events",
        "http.forwarded",
        "http.h1",
        "http.h1_response",
        "http.h2",
        "http.h2_floods",
        "http.h2_heads",
        "http.headers",
        "wsgi.environ",
        "mongrel2.tnetstring",
        "mongrel2.message",
    },
    # runs on the reactor thread only: Twisted, never threads, never wsgi/*
    "reactor": {
        "accesslog",
        "deadlines",
        "dispatch",
        "http.connection",
        "http.exchange",
        "http.file_producer",
        "http.protocol",
        "http.h2_protocol",
        "http.h2_exchange",
        "listen",
        "proxied",
        "reactor",
        "static",
        "tls",
        "tls_certs",
        "tls_environ",
        "tls_sni",
        "twisted_internals",
        "mongrel2.transport",
        "mongrel2.zmq_context",
        "mongrel2.channel",
        "mongrel2.client",
    },
    # the one crossing between app threads and the reactor: threads, never sockets
    "bridge": {
        "blocking",
        "cancel",
        "hardcancel",
        "pool",
        "stats",
        "timing",
        "wsgi.body",
        "wsgi.bridge",
        "wsgi.container",
    },
    # wires the rest together; only entry points import it
    "composition": {
        "__init__",
        "__main__",
        "cli",
        "control",
        "logs",
        "reload",
        "reload_failure",
        "reload_worker",
        "server",
        "service",
        "sdnotify",
        "twistd",
        "mongrel2.serve",
        "mongrel2.command",
        "mongrel2.config_db",
        "mongrel2.broker",
    },
}
# Packages whose every module is composition (Django's side, the process tree).
COMPOSITION_PACKAGES = ("django", "supervisor")

# Which layers' modules each layer may import (its own included).
MAY_IMPORT_LAYERS = {
    "pure": {"pure"},
    "reactor": {"pure", "reactor"},
    "bridge": {"pure", "bridge"},
    "composition": {"pure", "reactor", "bridge", "composition"},
}

# Standard-library modules that do I/O or run threads.
_THREADS = {"threading", "_thread", "queue", "concurrent", "multiprocessing", "asyncio"}
_IO = {
    "socket",
    "ssl",
    "select",
    "selectors",
    "signal",
    "subprocess",
    "fcntl",
    "termios",
    "tempfile",
    "shutil",
    "ctypes",
    "mmap",
    "socketserver",
    "http.client",
    "http.server",
    "urllib.request",
}
# Libraries each layer may import, by module prefix. Standard-library modules are allowed
# unless the layer's NOT_STDLIB names them.
THIRD_PARTY = {
    "pure": {"httptools", "h2"},
    "reactor": {"twisted", "zope.interface", "OpenSSL", "cryptography", "zmq"},
    "bridge": {"twisted.internet.threads", "twisted.internet.defer", "twisted.python.failure"},
    "composition": None,  # anything
}
NOT_STDLIB = {
    "pure": _THREADS | _IO,
    # The reactor thread never blocks on a lock or a queue; it may touch sockets and fds.
    "reactor": _THREADS | {"subprocess", "ctypes"},
    # App threads never touch a socket or a transport.
    "bridge": {"socket", "ssl", "select", "selectors", "socketserver", "http.client"},
    "composition": set(),
}
NOT_THIRD_PARTY = {
    # Twisted's thread helpers belong to the bridge, even though the reactor may use Twisted.
    "reactor": {"twisted.internet.threads"},
}

# Known breaks, each with the work that removes it. The test fails when one is no longer
# needed, so this list only shrinks.
KNOWN: dict[tuple[str, str], str] = {}


# -- reading imports -----------------------------------------------------------------------


def module_names() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = module_names()


def layer_of(name: str) -> str | None:
    if name.split(".")[0] in COMPOSITION_PACKAGES:
        return "composition"
    for layer, names in LAYERS.items():
        if name in names:
            return layer
    if name in ("http", "wsgi", "mongrel2"):  # package __init__: docstring only
        return "pure"
    return None


def _runs(node: ast.AST) -> bool:
    """False for ``if TYPE_CHECKING:`` blocks (those imports never run)."""
    test = getattr(node, "test", None)
    return not (
        isinstance(node, ast.If)
        and (
            (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        )
    )


def _walk_running(tree: ast.AST):
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if _runs(child))


def imports_of(name: str) -> tuple[set[str], set[str]]:
    """(treadle modules, other modules) that module ``name`` imports."""
    internal: set[str] = set()
    external: set[str] = set()
    package = name.split(".")[:-1] if MODULES[name].name != "__init__.py" else name.split(".")
    for node in _walk_running(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join(["treadle", *anchor, *([base] if base else [])])
            # ``from treadle.http import h1`` imports the module treadle.http.h1
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "treadle" or target.startswith("treadle."):
                inner = target.removeprefix("treadle").removeprefix(".")
                if inner in MODULES:
                    internal.add(inner)
            else:
                external.add(target)
    internal.discard(name)
    return internal, external


IMPORTS = {name: imports_of(name) for name in MODULES}


def _matches(module: str, prefixes: set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def external_allowed(layer: str, module: str) -> bool:
    top = module.split(".")[0]
    if top == "__future__":
        return True
    if top in sys.stdlib_module_names:
        return not _matches(module, NOT_STDLIB[layer])
    if _matches(module, NOT_THIRD_PARTY.get(layer, set())):
        return False
    # A layer may use what the layers it imports use (a reactor module reaches httptools
    # through http/h1.py).
    allowed: set[str] = set()
    for lower in MAY_IMPORT_LAYERS[layer]:
        if THIRD_PARTY[lower] is None:
            return True
        allowed |= THIRD_PARTY[lower]
    return _matches(module, allowed)


def breaks_of(name: str) -> list[str]:
    """What module ``name`` reaches that its layer does not allow, each with its path."""
    layer = layer_of(name)
    assert layer is not None
    broken = []
    seen = {name}
    queue = [(name, [name])]
    while queue:
        current, path = queue.pop(0)
        internal, external = IMPORTS[current]
        refused = {module for module in external if not external_allowed(layer, module)}
        for module in sorted(refused):
            if module.rpartition(".")[0] not in refused:  # ``from x import y``: name x once
                broken.append(f"{' -> '.join(path)} imports {module}")
        for inner in sorted(internal):
            if (current, inner) in KNOWN:
                continue
            if layer_of(inner) not in MAY_IMPORT_LAYERS[layer]:
                broken.append(f"{' -> '.join(path)} imports {inner} ({layer_of(inner)} layer)")
            elif inner not in seen:
                seen.add(inner)
                queue.append((inner, [*path, inner]))
    return broken


# -- the tests ---------------------------------------------------------------------------


def test_every_module_is_in_one_layer() -> None:
    unplaced = sorted(name for name in MODULES if layer_of(name) is None)
    assert not unplaced, f"add each to LAYERS in {__file__} and docs/design/layers.md"
    listed = [name for names in LAYERS.values() for name in names]
    assert len(listed) == len(set(listed))


def test_every_module_reaches_only_what_its_layer_allows() -> None:
    broken = [line for name in sorted(MODULES) for line in breaks_of(name)]
    assert not broken, "\n".join(broken)


def test_known_breaks_are_still_real() -> None:
    # When the work a KNOWN entry names is done, remove the entry: the list only shrinks.
    for (importer, imported), why in KNOWN.items():
        assert imported in IMPORTS[importer][0], f"{importer} -> {imported} is gone: {why}"
        layer = layer_of(importer)
        assert layer is not None
        assert layer_of(imported) not in MAY_IMPORT_LAYERS[layer]


def test_the_checker_follows_imports_transitively() -> None:
    # The reason for this file: exchange -> timing -> cancel -> threading was missed when
    # only direct imports were compared against a list of forbidden names (the exchange now
    # gets its record type handed in). Plant such breaks and see them found.
    internal, external = IMPORTS["http.h1"]
    exchange_internal = IMPORTS["http.exchange"][0]
    assert "http.h1" in IMPORTS["http.protocol"][0]
    external.add("threading")  # a pure module the reactor imports starts using threads
    exchange_internal.add("timing")  # a reactor module imports a bridge module
    try:
        protocol_breaks = breaks_of("http.protocol")
        exchange_breaks = breaks_of("http.exchange")
    finally:
        external.discard("threading")
        exchange_internal.discard("timing")
    assert "http.protocol -> http.h1 imports threading" in protocol_breaks
    assert "http.exchange imports timing (bridge layer)" in exchange_breaks
    assert breaks_of("http.protocol") == [] and breaks_of("http.exchange") == []
    assert external_allowed("bridge", "threading")
    assert not external_allowed("reactor", "threading")
    assert not external_allowed("reactor", "twisted.internet.threads")
    assert not external_allowed("pure", "twisted.internet.defer")
    assert not external_allowed("bridge", "twisted.internet.tcp")


def test_nothing_but_entry_points_imports_the_global_reactor() -> None:
    offenders = []
    for name in MODULES:
        if layer_of(name) == "composition":
            continue
        _, external = IMPORTS[name]
        if "twisted.internet.reactor" in external:
            offenders.append(name)
    assert not offenders


def test_every_module_opens_with_a_docstring() -> None:
    missing = [
        name
        for name, path in MODULES.items()
        if ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert not missing
