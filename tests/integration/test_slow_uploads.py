"""Slow uploads never hold an app thread, with or without ``Expect: 100-continue``.

Integration tier: the real server with 4 threads, 32 clients trickling bodies on their
own connections, and the throughput of quick requests on other connections measured
with and without them.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from tests.integration.wire import connect, read_response

PHASE_S = 0.5
PAIRS = 6
ROUNDS = 3
QUICK_CLIENTS = 4
TRICKLERS = 32
KEPT = 0.5  # the share of their throughput quick requests must keep


def quick_requests_per_second(port: int) -> float:
    """Keep-alive GETs from ``QUICK_CLIENTS`` connections for ``PHASE_S``; answered per second."""
    counts = [0] * QUICK_CLIENTS
    end = time.monotonic() + PHASE_S

    def client(index: int) -> None:
        with connect(port) as sock:
            while time.monotonic() < end:
                sock.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(sock).status == 200
                counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(QUICK_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PHASE_S + 20)
    return sum(counts) / PHASE_S


class Tricklers:
    """Clients that send a head, then one body byte each every 50 ms until stopped.

    One thread drives every socket, so the test's own load stays small beside the
    quick clients it measures.
    """

    def __init__(self, port: int, head: bytes, *, wait_for_continue: bool) -> None:
        self.socks = [connect(port) for _ in range(TRICKLERS)]
        self.no_continue = 0  # clients not told to go on within 10 s
        for sock in self.socks:
            sock.sendall(head)
        if wait_for_continue:
            for sock in self.socks:
                try:
                    interim = sock.recv(1024)
                except TimeoutError:
                    interim = b""
                if interim != b"HTTP/1.1 100 Continue\r\n\r\n":
                    self.no_continue += 1
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.trickle)
        self.thread.start()

    def trickle(self) -> None:
        while not self.stop.wait(0.05):
            for sock in self.socks:
                sock.sendall(b"t")

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(20)
        for sock in self.socks:
            sock.close()


@pytest.mark.parametrize("expect_continue", [True, False])
def test_slow_uploads_leave_quick_requests_their_throughput(serve, expect_continue) -> None:
    server = serve("tests.apps.echo:app", "--threads", "4")
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
    if expect_continue:
        head += b"Expect: 100-continue\r\n"
    head += b"\r\n"
    quick_requests_per_second(server.port)  # warm up
    # Short phases without and with the slow uploads alternate, so the machine's changing
    # load falls on both sides alike, and the median of the pairs' ratios ignores a pair
    # another process disturbed. On a loaded machine a round can still fall short by
    # chance, so the best of three rounds counts, against half the throughput: before the
    # fix, every round was near 0 (the uploads cost the server about 1% of a core); 0.9
    # failed now and then on a 2-core machine running other suites.
    rounds = []
    for _ in range(ROUNDS):
        ratios = []
        for _ in range(PAIRS):
            without = quick_requests_per_second(server.port)
            tricklers = Tricklers(server.port, head, wait_for_continue=expect_continue)
            try:
                assert tricklers.no_continue == 0, f"{tricklers.no_continue} uploads got no 100"
                during = quick_requests_per_second(server.port)
            finally:
                tricklers.finish()
            ratios.append(during / max(without, 1.0))
        rounds.append(statistics.median(ratios))
        if rounds[-1] >= KEPT:
            break
    assert max(rounds) >= KEPT, (
        f"quick requests kept {max(rounds):.2f} of their throughput while {TRICKLERS} "
        f"uploads trickle (rounds: {', '.join(f'{r:.2f}' for r in rounds)})"
    )
