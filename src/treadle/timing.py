"""What one request did and how long each part took.

Thread-bridge layer: plain data, written by the reactor (queued, finished, status,
bytes) and by the request's app thread (started, waits, view). stats.py aggregates
finished records; the in-flight list reads live ones. Times are time.perf_counter().
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from treadle.cancel import CancelToken


@dataclass(slots=True, eq=False)
class RequestRecord:
    method: str
    path: str
    queued_at: float
    request_id: int = 0
    cancel: CancelToken = field(default_factory=CancelToken)
    started_at: float = 0.0  # 0.0 until an app thread picks the request up
    finished_at: float = 0.0  # 0.0 while in flight
    wait_count: int = 0  # calls of treadle.wait/call
    wait_s: float = 0.0  # total time blocked in them
    waiting_on: str | None = None  # repr of what a pending treadle.wait waits on
    view: str | None = None  # Django view name, when known
    thread: str | None = None  # name of the app thread running it
    thread_ident: int = 0  # threading.get_ident() of that thread, for a hard cancel
    cancelled_at: float = 0.0  # when cancel() was first called
    status: int = 0
    bytes_sent: int = 0

    def cancel_now(self, reason: str) -> bool:
        """Set the cancel token, remembering when. Any thread; True if this call set it."""
        if self.cancel.is_set():
            return False
        self.cancelled_at = time.perf_counter()
        return self.cancel.set(reason)

    @property
    def queue_s(self) -> float:
        """Time waiting for a thread (until dropped, for a request that never ran)."""
        end = self.started_at or self.finished_at
        return end - self.queued_at if end else 0.0

    @property
    def service_s(self) -> float:
        if not self.started_at:
            return 0.0
        return (self.finished_at or self.started_at) - self.started_at

    @property
    def total_s(self) -> float:
        return (self.finished_at - self.queued_at) if self.finished_at else 0.0
