"""Cancellation tokens and the per-thread "current request".

Thread-bridge layer: threading only, no Twisted, no sockets. The reactor sets a
request's token when the client goes away or a timeout fires; app code reads it as
``environ['treadle.cancelled']`` and ``treadle.wait`` reacts to it. Callbacks run in
the thread that calls ``set()`` (the reactor thread, in practice): keep them short.
A token is created per request, so it allocates nothing until someone waits on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("treadle")

# One lock for every token's rare transitions (set, add_callback, first wait):
# a per-token lock would cost an allocation on every request.
_lock = threading.Lock()


class CancelToken:
    """A one-shot flag with a reason, waitable from any thread.

    ``is_set()``/``wait()`` follow ``threading.Event``; ``add_callback`` runs ``fn(reason)``
    once when the token is set (at once if it already is). Called from any thread.
    """

    __slots__ = ("_set", "_event", "_callbacks", "reason")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[str], Any]] | None = None
        self.reason = ""

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        with _lock:
            if self._set:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def set(self, reason: str = "cancelled") -> bool:
        """Set the token; True if this call set it (False if it was already set)."""
        with _lock:
            if self._set:
                return False
            self.reason = reason
            self._set = True
            event, callbacks, self._callbacks = self._event, self._callbacks, None
        if event is not None:
            event.set()
        for callback in callbacks or ():
            _run(callback, reason)
        return True

    def add_callback(self, callback: Callable[[str], Any]) -> None:
        with _lock:
            if not self._set:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        _run(callback, self.reason)

    def remove_callback(self, callback: Callable[[str], Any]) -> None:
        with _lock:
            if self._callbacks and callback in self._callbacks:
                self._callbacks.remove(callback)

    def __bool__(self) -> bool:
        return self._set

    def __repr__(self) -> str:
        return f"<CancelToken set={self._set} reason={self.reason!r}>"


def _run(callback: Callable[[str], Any], reason: str) -> None:
    """Run one callback; one that raises is logged and the others still run.

    The reactor sets tokens while it tears a connection down: an app's callback that
    raises must not cut that short (no access log line, a graceful stop left waiting).
    """
    try:
        callback(reason)
    except Exception:
        log.exception("a cancel callback (%r) raised; ignored", callback)


class _Current(threading.local):
    request: Any = None


_current = _Current()


def current_request() -> Any:
    """The RequestRecord the calling app thread is serving, or None. Called in any thread."""
    return _current.request


def set_current_request(request: Any) -> None:
    """Called in an app thread by the container, around the app call."""
    _current.request = request
