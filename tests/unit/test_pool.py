"""The thread pool with real threads: bounded queue, dropped cancelled jobs, no lost wake-ups."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from treadle.pool import ThreadPool
from treadle.timing import RequestRecord

DEADLINE_S = 10.0


class Job:
    def __init__(self, done: list, gate: threading.Event | None = None) -> None:
        self.record = RequestRecord("GET", "/", time.perf_counter())
        self.done = done
        self.gate = gate
        self.started = threading.Event()

    def run(self) -> None:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(DEADLINE_S)
        self.done.append(("ran", self))

    def drop(self) -> None:
        self.done.append(("dropped", self))


class Turns:
    """Stands in for the reactor: scheduled wake-ups run when the test calls turn()."""

    def __init__(self) -> None:
        self.pending: list = []

    def schedule(self, wake) -> None:
        self.pending.append(wake)

    def turn(self) -> None:
        pending, self.pending = self.pending, []
        for wake in pending:
            wake()


@pytest.fixture
def started():
    """``started(threads, max_queue)`` -> (pool, turns): a running pool, stopped afterwards."""
    pools: list[ThreadPool] = []

    def start(threads: int, max_queue: int) -> tuple[ThreadPool, Turns]:
        turns = Turns()
        pool = ThreadPool(threads, max_queue, name=f"t-{len(pools)}", schedule=turns.schedule)
        pool.start()
        pools.append(pool)
        return pool, turns

    yield start
    for pool in pools:
        pool.stop(5)


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)  # polling a condition with a deadline


def test_threads_start_only_in_start() -> None:
    pool = ThreadPool(3, 10, name="t-start")
    assert not [t for t in threading.enumerate() if t.name.startswith("t-start")]
    pool.start()
    assert len([t for t in threading.enumerate() if t.name.startswith("t-start")]) == 3
    pool.stop(5)
    assert not [t for t in threading.enumerate() if t.name.startswith("t-start")]


def test_a_full_queue_refuses_at_once(started) -> None:
    pool, turns = started(1, 1)
    done: list = []
    gate = threading.Event()
    busy = Job(done, gate)
    assert pool.submit(busy)
    turns.turn()
    assert busy.started.wait(DEADLINE_S)
    assert pool.submit(Job(done))  # waits in the queue
    assert not pool.submit(Job(done)), "thread busy and queue full: refuse"
    gate.set()
    turns.turn()
    wait_until(lambda: len(done) == 2, "both accepted jobs run")


def test_a_cancelled_job_is_dropped_when_dequeued(started) -> None:
    pool, turns = started(1, 10)
    done: list = []
    gate = threading.Event()
    pool.submit(Job(done, gate))
    turns.turn()
    cancelled = Job(done)
    pool.submit(cancelled)
    cancelled.record.cancel_now("client went away")
    gate.set()
    wait_until(lambda: len(done) == 2, "the queue drains")
    assert ("dropped", cancelled) in done
    assert pool.dropped == 1


def test_many_jobs_from_many_turns_all_run(started) -> None:
    pool, turns = started(4, 10_000)
    done: list = []
    for batch in range(200):
        for _ in range(batch % 7):
            assert pool.submit(Job(done))
        turns.turn()
    expected = sum(batch % 7 for batch in range(200))
    wait_until(lambda: len(done) == expected, f"all {expected} jobs run (no lost wake-up)")


def test_blocking_jobs_run_in_parallel(started) -> None:
    pool, turns = started(4, 100)
    done: list = []
    gate = threading.Event()
    jobs = [Job(done, gate) for _ in range(4)]
    for job in jobs:
        pool.submit(job)
    turns.turn()
    # One wake-up per turn, passed on by each woken thread: all four start together.
    for job in jobs:
        assert job.started.wait(DEADLINE_S)
    gate.set()
    wait_until(lambda: len(done) == 4, "all finish")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_stopped_threads_give_their_wake_up_descriptors_back() -> None:
    before = open_fds()
    for round_ in range(3):
        pool = ThreadPool(8, 10, name=f"t-fds-{round_}")
        pool.start()
        job = Job([])
        assert pool.submit(job)
        assert job.started.wait(DEADLINE_S)
        pool.stop(5)
    assert open_fds() == before


def test_a_thread_lets_go_of_the_gil_after_a_long_job_when_more_wait(started, monkeypatch) -> None:
    """App threads do no I/O, so between queued jobs they would keep the GIL; after a job
    that ran past the switch interval (so other threads wanted the GIL) they let go of it,
    else one thread can starve mid-request. Short jobs go on without the system call."""
    done: list = []
    yields: list[int] = []
    # Called in the pool thread: how many jobs had finished when it let go of the GIL.
    monkeypatch.setattr("treadle.pool.yield_gil", lambda: yields.append(len(done)))
    pool, turns = started(1, 50)
    gate = threading.Event()
    long_job = Job(done, gate)  # runs until the gate opens: longer than the interval
    assert pool.submit(long_job)
    turns.turn()
    assert long_job.started.wait(DEADLINE_S)
    short_jobs = [Job(done) for _ in range(20)]
    for job in short_jobs:
        assert pool.submit(job)
    threading.Event().wait(2 * sys.getswitchinterval())  # the input: a job this long
    gate.set()
    wait_until(lambda: len(done) == 21, "every job runs")
    assert yields == [1], "once, after the long job, with the short ones waiting"
