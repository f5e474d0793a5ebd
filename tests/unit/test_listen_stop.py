"""listen.stop_listening: connections the kernel queued are accepted, not reset, at a stop.

Real sockets on 127.0.0.1 with Twisted's tcp.Port over a MemoryReactorClock: the port is
never read by a running reactor, so the clients below sit in the kernel's accept queue,
request sent, exactly as a balancer's connections do when a host gets SIGTERM.
"""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Iterator

import pytest
from twisted.internet import protocol, tcp
from twisted.internet.testing import MemoryReactorClock

from treadle import listen

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class Recorder(protocol.Protocol):
    def connectionMade(self) -> None:
        self.factory.made.append(self)


class RecordingFactory(protocol.Factory):
    protocol = Recorder

    def __init__(self) -> None:
        self.made: list[Recorder] = []


Queued = tuple[tcp.Port, RecordingFactory, MemoryReactorClock, list[socket.socket]]


def listening() -> tuple[tcp.Port, RecordingFactory, MemoryReactorClock]:
    """A real listening socket on 127.0.0.1 that no reactor reads."""
    clock = MemoryReactorClock()
    factory = RecordingFactory()
    port = tcp.Port(0, factory, backlog=16, interface="127.0.0.1", reactor=clock)
    port.startListening()
    return port, factory, clock


@pytest.fixture
def queued() -> Iterator[Queued]:
    port, factory, clock = listening()
    clients = []
    for _ in range(3):
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        client.sendall(REQUEST)
        clients.append(client)
    yield port, factory, clock, clients
    for client in clients:
        client.close()
    for made in factory.made:
        made.transport.socket.close()
    if port.connected:
        port.stopListening()
        clock.advance(0)


def reset(client: socket.socket) -> bool:
    client.settimeout(0.2)
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False  # still open: nothing came, nothing ended


def test_a_stop_accepts_what_the_kernel_queued(queued: Queued) -> None:
    port, factory, clock, clients = queued
    listen.stop_listening(port)
    assert len(factory.made) == 3
    assert not port.connected  # closed at once, not on the next reactor turn
    assert [reset(client) for client in clients] == [False, False, False]
    # The accepted connections hold the requests the clients sent.
    assert [made.transport.socket.recv(100) for made in factory.made] == [REQUEST] * 3


@pytest.fixture
def high_descriptors() -> Iterator[None]:
    """The next sockets get descriptors past 1023, as in a busy worker."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fillers = []
    try:
        while not fillers or fillers[-1] < 1100:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_listening_descriptor_past_1023_is_no_problem(high_descriptors: None) -> None:
    """select() cannot watch such a descriptor: the first version failed here in CI."""
    port, factory, _ = listening()
    assert port.fileno() > 1023
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    try:
        listen.stop_listening(port)
        assert len(factory.made) == 1
        factory.made[0].transport.socket.close()
    finally:
        client.close()


def test_without_it_the_queued_connections_are_reset(queued: Queued) -> None:
    """The failure stop_listening prevents, shown on this kernel."""
    port, factory, clock, clients = queued
    port.stopListening()
    clock.advance(0)
    assert factory.made == []
    assert [reset(client) for client in clients] == [True, True, True]
