"""The pid file: claimed before binding, written once listening, removed at exit.

Composition layer, used by ``treadle serve`` (the one process, or the supervisor) in the
main thread. Plain file calls, no reactor. It never removes a file that names another
process: a second server started by mistake must not erase the first one's pid file.
"""

from __future__ import annotations

import contextlib
import logging
import os

from treadle.errors import ConfigError

log = logging.getLogger("treadle")


def process_running(pid: int) -> bool:
    """True if a process ``pid`` exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, and someone else's
    return True


def _read(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as file:
            return int(file.read().strip() or "0") or None
    except (OSError, ValueError):
        return None


def check(path: str) -> None:
    """Before binding: refuse to start while ``path`` names another running process."""
    pid = _read(path)
    if pid is not None and pid != os.getpid() and process_running(pid):
        raise ConfigError(f"--pid-file {path} names process {pid}, which is running")


def write(path: str) -> None:
    """Once listening: our pid, replaced atomically so a reader never sees half a file."""
    check(path)
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w", encoding="ascii") as file:
        file.write(f"{os.getpid()}\n")
    os.replace(partial, path)


def remove(path: str) -> None:
    """At exit: remove the file if it still names us."""
    if _read(path) != os.getpid():
        return
    try:
        os.unlink(path)
    except OSError as error:  # e.g. in a root-owned directory after --user
        log.warning("could not remove --pid-file %s: %s", path, error)
    with contextlib.suppress(OSError):
        os.unlink(f"{path}.{os.getpid()}.tmp")
