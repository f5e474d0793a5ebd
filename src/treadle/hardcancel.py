"""The last resort for requests that ignore cancellation: raise RequestCancelled in their thread.

Thread-bridge layer: ctypes and threading only. Off unless --hard-cancel-after is
set. PyThreadState_SetAsyncExc makes the thread raise at its next Python bytecode,
so it cannot interrupt a C call (a blocking socket read, a long regex): it lands
when that call returns. It is retried a few times, then given up with a warning.
The pool's loop catches a late arrival, so the thread always returns to the pool.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterable

from treadle.errors import RequestCancelled
from treadle.timing import RequestRecord

log = logging.getLogger("treadle")


def raise_in_thread(thread_ident: int, exc_type: type[BaseException]) -> bool:
    """Ask thread ``thread_ident`` to raise ``exc_type``; True if exactly one thread was hit."""
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    hit = set_async_exc(ctypes.c_ulong(thread_ident), ctypes.py_object(exc_type))
    if hit > 1:  # CPython's documented recovery: undo it everywhere
        set_async_exc(ctypes.c_ulong(thread_ident), None)
        return False
    return bool(hit == 1)


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
                        "(stuck in a C call?); its thread stays busy",
                        record.request_id,
                        record.method,
                        record.path,
                        tries,
                    )
                    self._tries[record] = tries + 1
                continue
            ident = record.thread_ident
            if not ident:
                continue
            self._tries[record] = tries + 1
            hit = raise_in_thread(ident, RequestCancelled)
            log.warning(
                "hard cancel %d/%d of request %d %s %s in %s (%s)",
                tries + 1,
                self.attempts,
                record.request_id,
                record.method,
                record.path,
                record.thread,
                "raised" if hit else "thread not found",
            )
        for record in list(self._tries):
            if record not in seen:
                del self._tries[record]
