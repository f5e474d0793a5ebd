"""Twisted internals: used when the installed Twisted has them, else the public path and one
warning. A Twisted that renamed a field is played by a subclass whose field reads as None."""

from __future__ import annotations

import logging
import os
import socket
import stat

import pytest
from twisted.internet import protocol, tcp, unix
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from treadle import listen, twisted_internals

epollreactor = pytest.importorskip("twisted.internet.epollreactor")


def renamed(name: str) -> property:
    """A field a future Twisted no longer has: writes are dropped, reads give None."""
    return property(lambda self: None, lambda self, value: None, doc=f"{name} was renamed")


class Keeper(protocol.Protocol):
    def __init__(self, made: list) -> None:
        self.made = made

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.made.append(self.transport)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def close_reactor(reactor) -> None:
    for selectable in reactor.removeAll():
        selectable.connectionLost(Failure(ConnectionDone()))
    reactor.waker.connectionLost(None)
    reactor._poller.close()


@pytest.fixture
def reactor():
    reactor = epollreactor.EPollReactor()
    yield reactor
    close_reactor(reactor)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_installed_twisted_has_every_internal_treadle_uses() -> None:
    # The floor and the newest Twisted both run this: a release that renames a field fails
    # here, by name, before anyone sees the warning in production.
    assert twisted_internals.connection_lacks(tcp.Server) == []
    assert twisted_internals.connection_lacks(unix.Server) == []
    assert twisted_internals.missing(unix.Port, twisted_internals.UNIX_ADOPT_FIELDS) == []
    reactor = epollreactor.EPollReactor()
    try:
        assert twisted_internals.lean_reactor_lacks(reactor) == []
    finally:
        close_reactor(reactor)


def test_direct_send_writes_to_the_socket_without_a_loop_turn(reactor, caplog) -> None:
    made: list = []
    server_side, client = socket.socketpair()
    with server_side, client:
        factory = protocol.Factory.forProtocol(lambda: Keeper(made))
        reactor.adoptStreamConnection(server_side.fileno(), socket.AF_UNIX, factory)
        (transport,) = made
        assert twisted_internals.direct_send(transport, 4 * 1024 * 1024)
        assert transport.SEND_LIMIT == 4 * 1024 * 1024
        twisted_internals.write_now(transport, b"x" * 1000)
        client.settimeout(5)
        # No reactor iteration happened: the bytes are already in the client's socket.
        assert client.recv(2000) == b"x" * 1000
        assert twisted_internals.buffered_bytes(transport) == (transport, 0)
    assert warnings_of(caplog) == []


def test_a_connection_lacking_a_buffer_field_takes_the_public_path_with_one_warning(
    caplog,
) -> None:
    class RenamedBuffer(tcp.Server):
        _tempDataBuffer = renamed("_tempDataBuffer")

    connections = [RenamedBuffer.__new__(RenamedBuffer) for _ in range(3)]
    assert [twisted_internals.direct_send(c, 1 << 22) for c in connections] == [False] * 3
    assert all("SEND_LIMIT" not in vars(c) for c in connections)  # limit left alone
    (warning,) = warnings_of(caplog)
    assert "_tempDataBuffer" in warning
    assert "transport.write" in warning
    assert twisted_internals.buffered_bytes(connections[0]) is None


def test_a_tls_transport_is_never_sent_to_directly(reactor, caplog) -> None:
    class TLSConnection(tcp.Server):
        TLS = True

    assert not twisted_internals.direct_send(TLSConnection.__new__(TLSConnection), 1 << 22)
    assert warnings_of(caplog) == []


def test_lean_reactor_on_a_complete_twisted(caplog) -> None:
    from treadle.reactor import build

    reactor = build(epollreactor.EPollReactor)
    try:
        assert hasattr(reactor, "add_drain")
    finally:
        close_reactor(reactor)
    assert warnings_of(caplog) == []


def test_a_reactor_lacking_an_internal_is_the_stock_one_with_one_warning(caplog) -> None:
    from treadle.reactor import build

    class RenamedDispatch(epollreactor.EPollReactor):
        _doReadOrWrite = None

    before = open_fds()
    reactors = [build(RenamedDispatch) for _ in range(2)]
    try:
        assert [type(r) for r in reactors] == [RenamedDispatch] * 2
        assert not any(hasattr(r, "add_drain") for r in reactors)
    finally:
        for reactor in reactors:
            close_reactor(reactor)
    assert open_fds() == before  # the lean reactor that was built and dropped closed its fds
    (warning,) = warnings_of(caplog)
    assert "_doReadOrWrite" in warning
    assert "stock reactor" in warning


def stop(reactor, port) -> None:
    """Stop listening and run the reactor until the port has closed its socket."""
    stopped: list = []
    port.stopListening().addBoth(stopped.append)
    for _ in range(200):
        if stopped:
            return
        reactor.iterate(0.01)
    raise AssertionError("the port did not stop")


def listening_unix_socket(path: str, mode: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, mode)
    sock.listen(8)
    return sock


def test_adopted_unix_socket_keeps_its_mode_and_its_file(reactor, tmp_path, caplog) -> None:
    # Twisted 23.10 has no unix.Port._bindPath: this failed there with AttributeError.
    path = str(tmp_path / "app.sock")
    with listening_unix_socket(path, 0o640) as parent:
        endpoint = listen.AdoptedEndpoint(reactor, os.dup(parent.fileno()), socket.AF_UNIX)
        ports: list = []
        endpoint.listen(protocol.Factory.forProtocol(protocol.Protocol)).addCallback(ports.append)
        (port,) = ports
        assert port.getHost().name in (path, path.encode())
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        stop(reactor, port)
        assert os.path.exists(path)  # the parent still serves it to the next worker
    assert warnings_of(caplog) == []


def test_unix_adoption_without_the_private_constructor_uses_the_public_one(
    reactor, tmp_path, caplog
) -> None:
    class NoPrivateConstructor(unix.Port):
        _fromListeningDescriptor = None

    path = str(tmp_path / "app.sock")
    with listening_unix_socket(path, 0o600) as parent:
        factory = protocol.Factory.forProtocol(protocol.Protocol)
        port, started = twisted_internals.unix_port_from_fd(
            NoPrivateConstructor, reactor, parent.fileno(), factory
        )
        assert started  # reactor.adoptStreamPort returns a listening port
        assert port.getHost().name in (path, path.encode())
        stop(reactor, port)
    (warning,) = warnings_of(caplog)
    assert "_fromListeningDescriptor" in warning
    assert "adoptStreamPort" in warning


def test_a_missing_speed_up_is_reported_once_at_start_up(caplog) -> None:
    class RenamedSend(tcp.Server):
        writeSomeData = None  # noqa: N815 - Twisted's name

    twisted_internals.warn_missing((tcp.Server, unix.Server))
    assert warnings_of(caplog) == []  # the installed Twisted has everything
    twisted_internals.warn_missing((RenamedSend,))
    twisted_internals.warn_missing((RenamedSend,))
    warnings = warnings_of(caplog)
    assert len(warnings) == 2  # direct sends, unsent-byte counts: each once
    assert all("writeSomeData" in w for w in warnings)
    # The first connection later takes the public path without saying it again.
    assert not twisted_internals.direct_send(RenamedSend.__new__(RenamedSend), 1 << 22)
    assert len(warnings_of(caplog)) == 2
