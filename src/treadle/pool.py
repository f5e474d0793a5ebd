"""The bounded thread pool that runs WSGI requests.

Thread-bridge layer: threading and queue only, no Twisted, no sockets. The reactor
submits jobs (``submit`` returns False when the queue is full, so the caller can
answer 503 without touching a thread); app threads run them. A job whose request
was cancelled while it waited is dropped when dequeued: the app never runs.
Threads start in ``start()``, never at construction (they must not exist before
twistd forks, Twisted #4347).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Protocol

from treadle.errors import RequestCancelled
from treadle.timing import RequestRecord

log = logging.getLogger("treadle.pool")

_STOP = None


class Job(Protocol):
    record: RequestRecord

    def run(self) -> None:
        """Called in an app thread. Must not raise."""

    def drop(self) -> None:
        """Called in an app thread instead of run() when the request was cancelled while queued."""


class ThreadPool:
    """A fixed number of threads and a bounded queue of waiting jobs."""

    def __init__(self, threads: int, max_queue: int, name: str = "treadle") -> None:
        self.size = threads
        self.max_queue = max_queue
        self.name = name
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = 0
        self.dropped = 0  # jobs cancelled while queued

    @property
    def started(self) -> bool:
        return bool(self._threads)

    @property
    def idle(self) -> int:
        """Threads waiting for work right now (approximate for observers)."""
        return self._idle

    @property
    def queued(self) -> int:
        """Jobs submitted that no thread has taken yet."""
        return self._queue.qsize()

    def start(self) -> None:
        """Called once, in the main/reactor thread, when the service starts."""
        if self._threads:
            return
        for index in range(self.size):
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-worker-{index}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def submit(self, job: Job) -> bool:
        """Called in the reactor thread. False when the queue is full: answer 503."""
        # Jobs that idle threads are about to take do not count as waiting.
        if self._queue.qsize() >= self.max_queue + self._idle:
            return False
        self._queue.put(job)
        return True

    def stop(self, timeout_s: float | None = None) -> None:
        """Called in the main thread at shutdown: let queued jobs finish, then join."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads = []

    def _work(self) -> None:
        """The loop of one app thread."""
        lock = self._lock
        get = self._queue.get
        while True:
            try:
                with lock:
                    self._idle += 1
                try:
                    job = get()
                finally:
                    with lock:
                        self._idle -= 1
                if job is _STOP:
                    return
                if job.record.cancel.is_set():
                    self.dropped += 1
                    job.drop()
                else:
                    job.run()
            except RequestCancelled:
                # A hard cancel that landed after its job had already finished:
                # the thread stays in the pool.
                continue
            except BaseException:
                # Job.run() catches the app's errors itself; reaching here is a bug in
                # treadle. Log it and keep the thread so the pool never shrinks.
                log.exception("internal error in a pool thread; the thread carries on")
