"""One slow request and many fast ones through Mongrel2 to two one-thread handlers.

Integration tier, against the real Mongrel2 (see test_mongrel2.py). Mongrel2 PUSHes
requests round-robin, so without a broker a fast request can be handed to the handler
whose only thread is busy with the slow one and wait behind it; with `treadle
mongrel2-broker`, each request goes to a handler with a free thread and the fast ones are
not delayed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import Running, treadle_command
from tests.integration.test_mongrel2 import (
    HANDLING,
    Mongrel2,
    free_ports,
    get,
    mongrel2,  # noqa: F401 - the module's Mongrel2 fixture
    pytestmark,  # noqa: F401 - the same skips and time limit
    wait_until,
)

SLOW_S = 4.0
FAST = 8


@pytest.fixture
def processes() -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def start(*args: str, ready: str) -> Running:
        child = Running(treadle_command(*args))
        running.append(child)
        child.wait_for_line(ready, timeout=30)
        return child

    yield start
    for child in running:
        child.kill()


def fast_latencies(server: Mongrel2, handlers: list[Running]) -> list[float]:
    """Start one slow request, then time FAST fast ones, one after another."""
    slow: list[object] = []
    thread = threading.Thread(target=lambda: slow.append(get(server, f"/app/slow?s={SLOW_S}")))
    thread.start()
    wait_until(
        lambda: any("slow app start /slow" in h.output for h in handlers), 20, "slow request"
    )
    latencies = []
    # One kept-alive connection: closing one per request would put Mongrel2's disconnect
    # notices between the requests in the round-robin, and hide the effect.
    conn = server.connection()
    try:
        for n in range(FAST):
            started = time.monotonic()
            conn.request("GET", f"/app/fast{n}?s=0")
            response = conn.getresponse()
            body = response.read()
            latencies.append(time.monotonic() - started)
            assert (response.status, body) == (200, b"done after 0.00\n")
    finally:
        conn.close()
    thread.join(SLOW_S + 20)
    assert slow and slow[0][0] == 200  # type: ignore[index]
    return latencies


def test_without_broker_a_slow_request_delays_fast_ones(
    mongrel2: Mongrel2,  # noqa: F811
    processes: Callable[..., Running],
) -> None:
    handlers = [
        processes(
            "mongrel2",
            "tests.apps.slow:app",
            mongrel2.send_spec,
            mongrel2.recv_spec,
            "--threads",
            "1",
            ready=HANDLING,
        )
        for _ in range(2)
    ]
    latencies = fast_latencies(mongrel2, handlers)
    # Round-robin hands one of them to the busy handler: it waits for the slow one.
    assert max(latencies) > SLOW_S / 2, latencies


def test_with_the_broker_fast_requests_are_not_delayed(
    mongrel2: Mongrel2,  # noqa: F811
    processes: Callable[..., Running],
) -> None:
    (port,) = free_ports(1)
    backend = f"tcp://127.0.0.1:{port}"
    broker = processes("mongrel2-broker", mongrel2.send_spec, backend, ready="Brokering")
    handlers = [
        processes(
            "mongrel2",
            "tests.apps.slow:app",
            mongrel2.send_spec,
            mongrel2.recv_spec,
            "--threads",
            "1",
            "--broker",
            backend,
            ready=HANDLING,
        )
        for _ in range(2)
    ]
    wait_until(lambda: broker.output.count("joined") == 2, 20, "both handlers at the broker")
    latencies = fast_latencies(mongrel2, handlers)
    # p99 of the fast ones (here: the slowest of them) is far below the slow request.
    assert max(latencies) < SLOW_S / 4, latencies
