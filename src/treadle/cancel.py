"""Cancellation tokens and the per-thread "current request".

Thread-bridge layer: threading only, no Twisted, no sockets. The reactor sets a
request's token when the client goes away or a timeout fires; app code reads it as
``environ['treadle.cancelled']`` and ``treadle.wait`` reacts to it. Callbacks run in
the thread that calls ``set()`` (the reactor thread, in practice): keep them short.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class CancelToken:
    """A one-shot flag with a reason, waitable from any thread.

    ``is_set()``/``wait()`` follow ``threading.Event``; ``add_callback`` runs ``fn(reason)``
    once when the token is set (at once if it already is). Called from any thread.
    """

    __slots__ = ("_event", "_callbacks", "_lock", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Callable[[str], Any]] = []
        self._lock = threading.Lock()
        self.reason = ""

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def set(self, reason: str = "cancelled") -> bool:
        """Set the token; True if this call set it (False if it was already set)."""
        with self._lock:
            if self._event.is_set():
                return False
            self.reason = reason
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(reason)
        return True

    def add_callback(self, callback: Callable[[str], Any]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback(self.reason)

    def remove_callback(self, callback: Callable[[str], Any]) -> None:
        with self._lock:
            try:
                self._callbacks.remove(callback)
            except ValueError:
                return

    def __bool__(self) -> bool:
        return self._event.is_set()

    def __repr__(self) -> str:
        return f"<CancelToken set={self.is_set()} reason={self.reason!r}>"


class _Current(threading.local):
    request: Any = None


_current = _Current()


def current_request() -> Any:
    """The RequestContext the calling app thread is serving, or None. Called in any thread."""
    return _current.request


def set_current_request(request: Any) -> None:
    """Called in an app thread by the container, around the app call."""
    _current.request = request
