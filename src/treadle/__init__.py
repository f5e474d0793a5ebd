"""treadle: a production WSGI server on Twisted.

Public API only: serve(), wait(), call(), Config and the exceptions users catch.
Importing treadle starts nothing (no reactor, no threads).
"""

from __future__ import annotations

from typing import Any

from treadle.config import Config
from treadle.errors import RequestCancelled, WaitTimeout
from treadle.version import __version__

__all__ = ["Config", "RequestCancelled", "WaitTimeout", "__version__", "call", "serve", "wait"]


def serve(app: Any, **settings: Any) -> int:
    """Serve ``app`` with the given settings until SIGTERM/SIGINT; returns the exit status."""
    from treadle import logs, server

    config = Config.from_settings(settings)
    logs.configure(config)
    return server.run(app, config)


def wait(x: Any, timeout: float | None = None) -> Any:
    """From an app thread: run x (Deferred, coroutine, callable) on the reactor and wait for it."""
    from treadle.blocking import wait as _wait

    return _wait(x, timeout)


def call(f: Any, *args: Any, **kwargs: Any) -> Any:
    """From an app thread: run f in the reactor thread and return its (awaited) result."""
    from treadle.blocking import call as _call

    return _call(f, *args, **kwargs)
