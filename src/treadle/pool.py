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
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from treadle.timing import RequestRecord

log = logging.getLogger("treadle.pool")

_STOP: Any = object()  # tells a thread to exit


class Job(Protocol):
    record: RequestRecord

    def run(self) -> None:
        """Called in an app thread. Must not raise."""

    def drop(self) -> None:
        """Called in an app thread instead of run() when the request was cancelled while queued."""


class _Sleeper:
    """One app thread's wake-up call: an eventfd (a pipe where there is none) it blocks on.

    Not a lock, for the GIL's sake. ``os.write`` and ``os.read`` let go of the GIL around
    the system call, so the woken thread can take the GIL at once and run. Releasing a
    lock keeps holding it: the woken thread preempts the reactor only to block on the
    GIL, which costs two more context switches per request (measured: 6.3 against 3.3
    per request at one connection).
    """

    __slots__ = ("_read", "_write")

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            self._read = self._write = os.eventfd(0, os.EFD_CLOEXEC)
        else:
            self._read, self._write = os.pipe()

    def wake(self) -> None:
        """Called in any thread, at most once per sleep (the pool pops a sleeper to wake it)."""
        os.write(self._write, _ONE)

    def sleep(self) -> None:
        """Called in the owning app thread: block until woken."""
        os.read(self._read, 8)

    def close(self) -> None:
        """Called in the owning app thread as it exits."""
        os.close(self._read)
        if self._write != self._read:
            os.close(self._write)


_ONE = (1).to_bytes(8, sys.byteorder)  # an eventfd counts 8-byte integers; a pipe takes any
# os.sched_yield releases the GIL around the call and gives the core to a thread waiting
# for it; time.sleep(0) releases the GIL where there is no sched_yield.
yield_gil: Callable[[], None] = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))


class ThreadPool:
    """A fixed number of threads and a bounded queue of waiting jobs.

    Waking a sleeping thread costs two context switches on a busy core, so the pool
    keeps at most one wake-up in flight: a woken thread that finds more work waiting
    wakes the next one, and a thread that finishes a job takes the next job without
    sleeping. Idle threads are woken most-recently-idle first (warm caches).
    """

    def __init__(
        self,
        threads: int,
        max_queue: int,
        name: str = "treadle",
        schedule: Callable[[Callable[[], None]], Any] = lambda wake: wake(),
    ) -> None:
        self.size = threads
        # schedule(fn) runs fn in the submitting thread once its current batch of
        # events is done (the server passes the reactor's call_after_events, or
        # callLater(0, ...)). Jobs submitted in one reactor turn then cost one wake-up
        # instead of one each. The default wakes at once, on every submit.
        self._schedule = schedule
        self._wake_scheduled = False
        self.max_queue = max_queue
        self.name = name
        self._jobs: deque[Any] = deque()
        self._sleepers: list[_Sleeper] = []
        self._waking = 0  # threads woken that have not taken a job yet
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.dropped = 0  # jobs cancelled while queued

    @property
    def idle(self) -> int:
        """Threads asleep waiting for work right now."""
        return len(self._sleepers)

    @property
    def all_idle(self) -> bool:
        """True when every thread sleeps and no job waits (read by the reactor, racily)."""
        return len(self._sleepers) == len(self._threads) and not self._jobs

    @property
    def queued(self) -> int:
        """Jobs submitted that no thread has taken yet."""
        return len(self._jobs)

    def start(self) -> None:
        """Called once, in the main/reactor thread, when the service starts."""
        if self._threads:
            return
        for index in range(self.size):
            # Its wake-up descriptor is made here, not by the thread: every descriptor the
            # pool holds exists once the server says it listens (a count taken then is whole).
            thread = threading.Thread(
                target=self._work,
                args=(_Sleeper(),),
                name=f"{self.name}-worker-{index}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def submit(self, job: Job) -> bool:
        """Called in the reactor thread. False when the queue is full: answer 503."""
        jobs = self._jobs
        # Jobs that sleeping threads are about to take do not count as waiting.
        if len(jobs) >= self.max_queue + len(self._sleepers) + self._waking:
            return False
        # No lock on the hot path: deque.append is atomic, and the wake-up scheduled
        # below runs (under the lock) after every append of this turn, so a thread
        # that went to sleep just before is found and woken.
        jobs.append(job)
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self._schedule(self._scheduled_wake)
        return True

    def _scheduled_wake(self) -> None:
        """Called in the submitting (reactor) thread after a turn's submissions."""
        with self._lock:
            self._wake_scheduled = False
            sleeper = self._wake_one() if self._jobs else None
        if sleeper is not None:
            sleeper.wake()

    def _wake_one(self) -> _Sleeper | None:
        """With self._lock held: a sleeper to release, unless a wake-up is already on its way."""
        if self._waking or not self._sleepers:
            return None
        self._waking += 1
        return self._sleepers.pop()

    def stop(self, timeout_s: float | None = None) -> None:
        """Called in the main thread at shutdown: let queued jobs finish, then join."""
        with self._lock:
            self._jobs.extend([_STOP] * len(self._threads))
            sleepers, self._sleepers = self._sleepers, []
            self._waking += len(sleepers)
        for sleeper in sleepers:
            sleeper.wake()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads = []

    def _work(self, me: _Sleeper) -> None:
        """One app thread, from start to stop."""
        try:
            self._loop(me)
        finally:
            me.close()

    def _loop(self, me: _Sleeper) -> None:
        """The loop of one app thread: take a job, run it, sleep when there is none."""
        lock = self._lock
        jobs = self._jobs
        popleft = jobs.popleft
        perf_counter = time.perf_counter
        # A job that ran longer than the GIL's switch interval met other threads wanting it.
        yield_after = sys.getswitchinterval()
        while True:
            try:
                try:
                    job = popleft()  # atomic: no lock while work is waiting
                except IndexError:
                    job = None
                if job is None:
                    with lock:
                        try:
                            job = popleft()
                        except IndexError:
                            self._sleepers.append(me)
                    if job is None:
                        me.sleep()
                        with lock:
                            self._waking -= 1
                        continue
                if jobs and self._sleepers and not self._waking:
                    # More waiting than this thread can take: pass a wake-up on.
                    with lock:
                        other = self._wake_one()
                    if other is not None:
                        other.wake()
                if job is _STOP:
                    return
                if job.record.cancel.is_set():
                    self.dropped += 1
                    job.drop()
                else:
                    began = perf_counter()
                    job.run()
                    if jobs and perf_counter() - began > yield_after:
                        # Let go of the GIL before the next job, as a thread that sleeps
                        # or does I/O would. App threads do no I/O (the reactor does), so
                        # under a queue of CPU-bound requests the GIL otherwise changes
                        # hands only when forced, to whichever thread wins, and one
                        # thread can starve mid-request for seconds (a Django page, 64
                        # connections, 8 threads: p99 0.4-1.8 s, max 5 s; with this,
                        # p99 60 ms). Short jobs skip it: a yield per hello request
                        # costs two thirds of the throughput on a busy core.
                        yield_gil()
            except BaseException:
                # Job.run() catches the app's errors itself; reaching here is a bug in
                # treadle. Log it and keep the thread so the pool never shrinks.
                log.exception("internal error in a pool thread; the thread carries on")
