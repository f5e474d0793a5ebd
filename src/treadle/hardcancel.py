"""The last resort for requests that ignore cancellation: raise RequestCancelled in their thread.

Thread-bridge layer: ctypes and threading only. Off unless --hard-cancel-after is
set. PyThreadState_SetAsyncExc makes the thread raise at its next Python bytecode,
so it cannot interrupt a C call (a blocking socket read, a long regex): it lands
when that call returns. It is retried a few times, then given up with a warning.

An exception aimed at a thread lands wherever that thread is when it next runs
Python code, so each app thread has a gate (a lock): the reactor decides and raises
holding it, and the app thread, when the app's code returns, marks the request as no
longer running, then takes the gate and makes an exception that has not landed yet
land there. No hard cancel can then reach the container's clean-up (the app's
close()) or the thread's next request.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterable

from treadle.errors import RequestCancelled
from treadle.timing import RequestRecord

log = logging.getLogger("treadle")

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_REQUEST_CANCELLED = ctypes.py_object(RequestCancelled)


def raise_in_thread(thread_ident: ctypes.c_ulong, exc: ctypes.py_object) -> bool:
    """Ask thread ``thread_ident`` to raise ``exc``; True if exactly one thread was hit.

    Called in the reactor thread with that thread's gate held.
    """
    hit = _set_async_exc(thread_ident, exc)
    if hit > 1:  # CPython's documented recovery: undo it everywhere
        _set_async_exc(thread_ident, None)
        return False
    return bool(hit == 1)


class _Landed(BaseException):
    """The marker a gate raises in its own thread to take a pending hard cancel's place."""


_LANDED = ctypes.py_object(_Landed)
_TAKE_TURNS = range(100)  # bytecode back-edges, where a pending exception lands


class ThreadGate:
    """One app thread's gate: a hard cancel is raised only while the gate says so."""

    __slots__ = ("_lock", "_ident", "_raised", "ident")

    def __init__(self) -> None:
        """Called in the app thread it belongs to."""
        self._lock = threading.Lock()
        self.ident = threading.get_ident()
        self._ident = ctypes.c_ulong(self.ident)  # made once: leave() makes no such call
        self._raised = False  # the reactor raised here since the last leave()

    def enter(self, record: RequestRecord) -> None:
        """Called in the app thread just before the app's code runs for ``record``."""
        record.thread_ident = self.ident

    def leave(self, record: RequestRecord) -> None:
        """Called in the app thread as soon as the app's code has returned or raised.

        Once this returns, no hard cancel for ``record`` can land in this thread. One
        raised just before may land inside this call: the caller catches it and calls
        again (it has to: it may land before the first line runs).
        """
        record.thread_ident = 0  # the reactor raises no more for this request...
        with self._lock:  # ...once a raise it has begun (holding the gate) is done.
            raised, self._raised = self._raised, False
        if not raised:
            return
        # A raise may still be pending. It is not withdrawn (CPython 3.11 then leaves every
        # thread's eval breaker set for good, and a traced thread hangs): a marker takes
        # its place and lands here, at once, in one of the loop's back-edges.
        try:
            _set_async_exc(self._ident, _LANDED)
            for _turn in _TAKE_TURNS:
                pass
        except _Landed:
            return
        # Not landed: another thread took the signal (CPython 3.12). Withdraw it.
        _set_async_exc(self._ident, None)

    def raise_if_running(self, record: RequestRecord) -> bool:
        """Called in the reactor thread: raise RequestCancelled in this thread, but only
        while it runs ``record``'s app code. True if raised."""
        with self._lock:
            if record.thread_ident != self.ident:
                return False
            self._raised = raise_in_thread(self._ident, _REQUEST_CANCELLED)
            return self._raised


_gates: dict[int, ThreadGate] = {}
_local = threading.local()


def gate() -> ThreadGate:
    """The calling app thread's gate, made on first use. Called in an app thread."""
    try:
        return _local.gate  # type: ignore[no-any-return]
    except AttributeError:
        made = _local.gate = ThreadGate()
        _gates[made.ident] = made
        return made


class HardCanceller:
    """Checked on every timer-wheel tick by the reactor thread."""

    def __init__(self, after_s: float, *, attempts: int = 3, retry_s: float = 1.0) -> None:
        self.after_s = after_s
        self.attempts = attempts
        self.retry_s = retry_s
        self._tries: dict[RequestRecord, int] = {}

    def check(self, running: Iterable[RequestRecord], now: float) -> None:
        """Called in the reactor thread; ``now`` is time.perf_counter()."""
        seen = set()
        for record in list(running):
            if not record.cancelled_at:
                continue
            seen.add(record)
            overdue = now - record.cancelled_at - self.after_s
            tries = self._tries.get(record, 0)
            if overdue < tries * self.retry_s:
                continue
            if tries >= self.attempts:
                if tries == self.attempts:
                    log.error(
                        "request %d %s %s ignores cancellation after %d hard cancels "
                        "(stuck in a C call, or in its close()?); its thread stays busy",
                        record.request_id,
                        record.method,
                        record.path,
                        tries,
                    )
                    self._tries[record] = tries + 1
                continue
            thread_gate = _gates.get(record.thread_ident)
            if thread_gate is None:
                continue  # not in the app's code (queued, or its close() runs)
            self._tries[record] = tries + 1
            hit = thread_gate.raise_if_running(record)
            log.warning(
                "hard cancel %d/%d of request %d %s %s in %s (%s)",
                tries + 1,
                self.attempts,
                record.request_id,
                record.method,
                record.path,
                record.thread,
                "raised" if hit else "its app code had returned",
            )
        for record in list(self._tries):
            if record not in seen:
                del self._tries[record]
