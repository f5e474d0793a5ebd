"""Round-trip cost of treadle.wait against blockingCallFromThread and crochet's wait_for.

Runs the global reactor in a thread (as treadle does), then from one worker thread times N
round trips of each method, in interleaved rounds, and writes the medians to docs/bench-wait.md.
Usage: python bench/bench_wait.py [--n 1000] [--rounds 21] [--threads 8] [--out docs/bench-wait.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
import timeit
from _thread import allocate_lock
from collections.abc import Callable
from pathlib import Path

import crochet

# treadle runs the reactor itself, so crochet must not: no_setup() before the reactor starts.
# (crochet.setup() after that would try to run the already-running reactor in a second thread.)
crochet.no_setup()

import twisted  # noqa: E402
from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.threads import blockingCallFromThread  # noqa: E402

from treadle import blocking  # noqa: E402


@crochet.wait_for(timeout=10.0)
def _crochet_succeed() -> defer.Deferred[int]:
    return defer.succeed(1)


def _treadle() -> object:
    return blocking.wait(defer.succeed(1))


def _treadle_round_trip() -> object:
    # A callable runs in the reactor thread: a real round trip, like blockingCallFromThread.
    return blocking.wait(_succeed_one)


def _succeed_one() -> defer.Deferred[int]:
    return defer.succeed(1)


def _twisted() -> object:
    return blockingCallFromThread(reactor, defer.succeed, 1)


def _crochet() -> object:
    return _crochet_succeed()


def _floor() -> object:
    # The least any reactor round trip can cost: one callFromThread, one lock hand-off.
    lock = allocate_lock()
    lock.acquire()
    reactor.callFromThread(lock.release)
    lock.acquire()
    return 1


TREADLE = "treadle.wait(defer.succeed(1))"
METHODS: dict[str, Callable[[], object]] = {
    TREADLE: _treadle,
    "treadle.wait(callable returning defer.succeed(1)): round trip": _treadle_round_trip,
    "blockingCallFromThread(reactor, defer.succeed, 1)": _twisted,
    "crochet @wait_for(timeout=10)": _crochet,
    "floor: callFromThread(lock.release)": _floor,
}
BASELINE = "blockingCallFromThread(reactor, defer.succeed, 1)"


def _time_calls(method: Callable[[], object], n: int, threads: int) -> tuple[float, float]:
    """Wall and process-CPU microseconds per round trip, ``n`` calls over ``threads`` threads."""
    per_thread = n // threads
    barrier = threading.Barrier(threads + 1)

    def loop() -> None:
        barrier.wait()
        for _ in range(per_thread):
            if method() != 1:
                raise AssertionError("wrong result")
        barrier.wait()

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    wall, cpu = time.perf_counter(), time.process_time()
    barrier.wait()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for worker in workers:
        worker.join()
    total = per_thread * threads
    return wall / total * 1e6, cpu / total * 1e6


def _run(n: int, rounds: int, threads: int) -> dict[str, dict[str, list[float]]]:
    """Interleaved rounds: each round runs every method once, in a rotated order."""
    names = list(METHODS)
    samples: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in names}
    for warm in names:  # warm up caches, crochet's registry, the waker
        _time_calls(METHODS[warm], 200, 1)
    for round_no in range(rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            wall, cpu = _time_calls(METHODS[name], n, threads)
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
    return samples


def _table(samples: dict[str, dict[str, list[float]]]) -> list[str]:
    base = samples[BASELINE]
    base_wall, base_min = statistics.median(base["wall"]), min(base["wall"])
    base_cpu = statistics.median(base["cpu"])
    lines = [
        "| method | median µs | ratio | best µs | ratio (best) | CPU µs (median) | ratio (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in samples.items():
        wall, best = statistics.median(runs["wall"]), min(runs["wall"])
        cpu = statistics.median(runs["cpu"])
        lines.append(
            f"| `{name}` | {wall:.1f} | {wall / base_wall:.2f} | {best:.1f} "
            f"| {best / base_min:.2f} | {cpu:.1f} | {cpu / base_cpu:.2f} |"
        )
    return lines


class _InlineReactor:
    """Runs callFromThread at once, in the calling thread: what is left is Python overhead."""

    def callFromThread(self, f: Callable[..., object], *args: object, **kwargs: object) -> None:
        f(*args, **kwargs)


def _overhead() -> tuple[list[str], float]:
    """Per-call Python cost with the thread hand-offs taken out (best of 7)."""
    inline = _InlineReactor()
    # install() records its thread as the reactor thread: use another one, so that this
    # thread counts as an app thread.
    installer = threading.Thread(target=blocking.install, args=(inline,))
    installer.start()
    installer.join()
    try:
        costs = {
            TREADLE: lambda: blocking.wait(defer.succeed(1)),
            BASELINE: lambda: blockingCallFromThread(inline, defer.succeed, 1),
        }
        best = {
            name: min(timeit.repeat(stmt, number=20000, repeat=7)) / 20000 * 1e6
            for name, stmt in costs.items()
        }
    finally:
        blocking.uninstall()
    lines = ["| method | µs per call | ratio |", "|---|---:|---:|"]
    for name, cost in best.items():
        lines.append(f"| `{name}` | {cost:.2f} | {cost / best[BASELINE]:.2f} |")
    return lines, best[TREADLE] / best[BASELINE]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="round trips per method per round")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--threads", type=int, default=8, help="app threads in the second run")
    parser.add_argument("--out", default=str(Path(__file__).parent.parent / "docs/bench-wait.md"))
    args = parser.parse_args()

    load_before = f"{os.getloadavg()[0]:.2f}"
    running = threading.Event()
    reactor.callWhenRunning(running.set)
    reactor_thread = threading.Thread(
        target=reactor.run, kwargs={"installSignalHandlers": False}, name="reactor", daemon=True
    )
    reactor_thread.start()
    if not running.wait(10):
        sys.exit("reactor did not start")
    blockingCallFromThread(reactor, blocking.install, reactor)
    try:
        single = _run(args.n, args.rounds, 1)
        many = _run(args.n, args.rounds, args.threads)
    finally:
        blockingCallFromThread(reactor, blocking.uninstall)
        reactor.callFromThread(reactor.stop)
        reactor_thread.join(10)
    overhead, overhead_ratio = _overhead()

    def ratio(samples: dict[str, dict[str, list[float]]], pick: Callable[..., float]) -> float:
        return pick(samples[TREADLE]["wall"]) / pick(samples[BASELINE]["wall"])

    median = statistics.median
    summary = (
        f"treadle.wait / blockingCallFromThread: one thread **{ratio(single, median):.2f}**"
        f" (best rounds {ratio(single, min):.2f}); {args.threads} threads "
        f"**{ratio(many, median):.2f}** (best {ratio(many, min):.2f}); "
        f"Python overhead **{overhead_ratio:.2f}**."
    )
    text = [
        "# treadle.wait round-trip benchmark",
        "",
        "Generated by `bench/bench_wait.py`; do not edit by hand. Each app thread calls the method",
        "in a loop; the reactor (the global one, run in a thread as treadle runs it) does nothing",
        "else. µs per round trip: wall time (median and best round), and process CPU time",
        "(all threads) per call. Best-of-rounds is the figure least disturbed by other load.",
        f"Medians over {args.rounds} interleaved rounds of {args.n} round trips per method.",
        "",
        f"- Python {platform.python_version()}, Twisted {twisted.__version__}, "
        f"crochet {crochet.__version__}, reactor `{type(reactor).__name__}`",
        f"- {platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before {load_before}, "
        f"after {os.getloadavg()[0]:.2f} (other work on the machine widens the spread)",
        "",
        "## One app thread (latency of a round trip)",
        "",
        *_table(single),
        "",
        f"## {args.threads} app threads at once (throughput: wall µs per completed round trip)",
        "",
        *_table(many),
        "",
        "## Python overhead alone (reactor stand-in that runs the call inline, no wake-ups)",
        "",
        *overhead,
        "",
        summary,
        "",
        "The floor row is the cheapest possible reactor round trip (wake the reactor through",
        "its waker pipe, release a lock from it). At one thread the wall time is two thread",
        "wake-ups, which every method pays; treadle's saving is in the Python work around",
        "them, which shows once app threads contend for the reactor and the GIL.",
        "",
    ]
    Path(args.out).write_text("\n".join(text), encoding="utf-8")
    print("\n".join(text))


if __name__ == "__main__":
    main()
