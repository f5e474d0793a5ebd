"""Development auto-reload: a parent holds the listening sockets and restarts a child on change.

Composition layer, used by ``treadle serve --reload`` and Django's ``manage.py server``. The
parent binds each --bind once, watches the project's files (watchfiles) and runs the real
server as a child that adopts the sockets (``fd:N`` binds), so a browser never sees "connection
refused" across a restart; while the app fails to load, the parent answers with the error
(reload_worker.py). The parent never imports the app and never runs a reactor.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from treadle.config import Config
from treadle.reload_worker import ReloadArbiter
from treadle.supervisor.child import adopt, is_child
from treadle.supervisor.sockets import Held, hold, release

__all__ = ["ChangeFilter", "adopt", "hold", "is_child", "print_cause", "run_with_reload"]

log = logging.getLogger("treadle")

IGNORED_DIRS = frozenset(
    {
        "__pycache__", ".git", ".hg", ".svn", "node_modules", "staticfiles", "media", "venv",
        "site-packages", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache",
        ".hypothesis", ".idea",
    }
)  # fmt: skip
SOURCE_SUFFIXES = (".py", ".html", ".txt")
# Editor temp files: vim swap/backup and its 4913 probe, emacs lock/autosave, JetBrains safe-write.
EDITOR_TEMP = re.compile(r"~$|^\.#|^#.*#$|\.sw[a-p]$|^4913$|\.___jb_\w+___$|^flycheck_")
DATABASES = re.compile(r"\.sqlite3(-journal|-wal|-shm)?$")


# The child side (is_child, adopt) is every supervised child's: see supervisor/child.py.


def print_cause(error: BaseException) -> None:
    """In a child: the full traceback behind a one-line load error (e.g. a SyntaxError)."""
    cause = error.__cause__ or error.__context__
    if cause is None:
        return
    report = traceback.TracebackException.from_exception(cause)
    # Drop importlib's and treadle's own frames: the developer's code is what broke.
    here = str(Path(__file__).parent)
    report.stack = traceback.StackSummary.from_list(
        [
            frame
            for frame in report.stack
            if not frame.filename.startswith(("<frozen", here, os.path.dirname(importlib.__file__)))
        ]
    )
    print("".join(report.format()), end="", file=sys.stderr)


# -- the parent side: what to watch --------------------------------------------------


def watch_dirs_for(target: str) -> list[Path]:
    """The project root (cwd) and the directory of the target's top-level package."""
    dirs = [Path.cwd()]
    module = target.partition(":")[0] if ":" in target else target.rpartition(".")[0]
    try:
        spec = importlib.util.find_spec(module.split(".")[0]) if module else None
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        if spec.submodule_search_locations:
            dirs.extend(Path(location) for location in spec.submodule_search_locations)
        elif spec.origin and spec.has_location:
            dirs.append(Path(spec.origin).parent)
    # A target installed in the environment is not the project: do not watch site-packages.
    installed = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    return [d for d in dirs if d == dirs[0] or not installed & {d.resolve(), *d.resolve().parents}]


def _roots(dirs: Iterable[Path]) -> list[Path]:
    """Existing directories, resolved, without any that another one already contains."""
    found = sorted(
        {Path(d).resolve() for d in dirs if Path(d).is_dir()}, key=lambda p: len(p.parts)
    )
    roots: list[Path] = []
    for path in found:
        if not any(path.is_relative_to(root) for root in roots):
            roots.append(path)
    return roots


class ChangeFilter:
    """Which changed paths restart the child: sources, templates and --reload-include globs."""

    def __init__(
        self, roots: Sequence[Path], include: Sequence[str] = (), ignore: Iterable[Path] = ()
    ) -> None:
        self.roots = list(roots)
        self.include = tuple(include)
        self.ignore = {str(path) for path in ignore}  # our own log files: no feedback loop

    def relative(self, path: str) -> Path:
        full = Path(path)
        for root in self.roots:
            if full.is_relative_to(root):
                return full.relative_to(root)
        return full

    def __call__(self, change: Any, path: str) -> bool:
        if path in self.ignore:
            return False
        relative = self.relative(path)
        *dirs, name = relative.parts or ("",)
        if any(part in IGNORED_DIRS or part.startswith(".venv") for part in dirs):
            return False
        if EDITOR_TEMP.search(name) or DATABASES.search(name):
            return False
        if name.endswith(SOURCE_SUFFIXES):
            return True
        text = relative.as_posix()
        return any(fnmatch(text, glob) or fnmatch(name, glob) for glob in self.include)


def _forget_bytecode(paths: Iterable[str]) -> None:
    """Drop the .pyc of changed sources: a pyc is validated by mtime in whole seconds and
    size, so an edit of the same length within a second would otherwise be ignored."""
    for path in paths:
        if not path.endswith(".py"):
            continue
        for optimization in ("", 1, 2):
            with contextlib.suppress(OSError, ValueError):
                os.unlink(importlib.util.cache_from_source(path, optimization=optimization))


def _shown(paths: Sequence[str]) -> str:
    cwd = Path.cwd()
    names = [str(Path(p).relative_to(cwd)) if Path(p).is_relative_to(cwd) else p for p in paths]
    more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
    return names[0] + more


def run_with_reload(
    child_argv: list[str],
    config: Config,
    *,
    watch_dirs: Sequence[Path] | None = None,
    listen_on: bool = True,
) -> int:
    """Hold the sockets, run ``child_argv`` and restart it on change until SIGTERM/SIGINT.

    Main thread of the parent: the supervisor's loop (ReloadArbiter), with the file watcher
    in a thread of its own. Returns 0 after a signal, 1 when a socket cannot be bound.
    ``listen_on=False``: no socket is held (``treadle mongrel2``: the child connects).
    """
    held: list[Held] = []
    binds: list[str] = []
    try:
        for bind in config.listen.bind if listen_on else ():
            # ssl: too: the child wraps TLS around the adopted socket, as a worker does.
            kept = hold(bind, config.listen.backlog, with_tls=True)
            if kept is None:
                log.info("reload keeps no socket for %s: each worker binds it itself", bind)
                binds.append(bind)
            else:
                held.append(kept)
                binds.append(kept.child_bind)
    except OSError as error:
        log.error("reload: cannot listen: %s", error)
        release(held)
        return 1
    roots = _roots(watch_dirs if watch_dirs is not None else [Path.cwd()])
    arbiter = ReloadArbiter(child_argv, config, held, binds=binds, roots=roots)
    logs = (config.logging.log_file, config.logging.access_log)
    own_files = [Path(name).resolve() for name in logs if name and name != "-"]
    changes_filter = ChangeFilter(roots, config.reload.reload_include, own_files)
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch,
        args=(roots, changes_filter, stop, arbiter),
        name="reload-watch",
        daemon=True,
    )
    log.info(
        "reload: holding %s; watching %s",
        " ".join(h.address for h in held) or "no sockets",
        " ".join(map(str, roots)),
    )
    watcher.start()
    try:
        return arbiter.run()
    finally:
        stop.set()  # the watcher sees it within one step (50 ms)
        watcher.join(5.0)
        arbiter.close_page()
        release(held)


def _watch(
    roots: Sequence[Path], changes_filter: ChangeFilter, stop: threading.Event, arbiter: Any
) -> None:
    """The watcher thread: each batch of changes restarts the worker (through the loop)."""
    import watchfiles  # here, not at the top: children import this module too

    for changes in watchfiles.watch(*roots, watch_filter=changes_filter, stop_event=stop):
        if stop.is_set():
            return
        paths = sorted({path for _, path in changes})
        log.info("reloading: %s", _shown(paths))
        _forget_bytecode(paths)
        arbiter.post("restart")
