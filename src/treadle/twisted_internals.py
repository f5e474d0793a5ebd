"""Every private Twisted internal treadle relies on, checked once, with the public path as fallback.

Reactor layer: imports Twisted only. Three speed-ups reach past Twisted's public API; each
is used only when the installed Twisted has what it needs (checked when this module is
imported, at start-up), and otherwise treadle takes the public path and logs ONE warning
saying what it lost, instead of failing later inside the reactor loop:

- Direct sends (``write_now``): write to a TCP socket at once when Twisted's buffer is
  empty, and raise the per-syscall send limit. Uses ``FileDescriptor.dataBuffer``,
  ``offset``, ``_tempDataBuffer``, ``_tempDataLen``, ``writeSomeData`` and ``SEND_LIMIT``.
  Fallback: ``transport.write`` (one more loop turn per response).
- Unsent-byte counts (``buffered_bytes``) for --send-timeout: the same buffer fields.
  Fallback: None ("cannot tell"); a stalled client is then left to the TCP stack.
- The lean reactor loop (reactor.py): ``_poller``, ``_selectables``, ``_doReadOrWrite``,
  ``_newTimedCalls``, ``threadCallQueue`` of EPollReactor. Fallback: Twisted's stock reactor.
- Adopting an inherited unix socket (``unix_port_from_fd``): ``unix.Port._fromListeningDescriptor``
  and ``_shouldShutdown`` (cleared, so a worker that stops does not shut down the socket the
  others share). Fallback: the public ``reactor.adoptStreamPort`` (the socket file is then
  removed, and the socket shut down, when the port stops: a reload loses the listener).

Nothing else in treadle may touch an underscore attribute of a Twisted object.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from typing import Any

from twisted.internet import abstract, tcp, unix

log = logging.getLogger("treadle")

# What each feature reads or writes on a Twisted object.
BUFFER_FIELDS = ("dataBuffer", "offset", "_tempDataBuffer", "_tempDataLen")
SEND_FIELDS = (*BUFFER_FIELDS, "writeSomeData", "SEND_LIMIT", "connected", "disconnecting")
REACTOR_FIELDS = ("_poller", "_selectables", "_doReadOrWrite", "_newTimedCalls", "threadCallQueue")
UNIX_ADOPT_FIELDS = ("_fromListeningDescriptor", "_shouldShutdown")

_warned: set[tuple[str, ...]] = set()


def missing(obj: Any, names: Iterable[str]) -> list[str]:
    """The names in ``names`` that ``obj`` lacks (or holds as None)."""
    return [name for name in names if getattr(obj, name, None) is None]


def warn_once(feature: str, fallback: str, lacking: list[str]) -> None:
    """Log one warning per feature and process: what is missing and what runs instead."""
    key = (feature, *lacking)
    if key in _warned:
        return
    _warned.add(key)
    import twisted

    log.warning(
        "Twisted %s lacks %s: %s (%s)",
        getattr(twisted, "__version__", "?"),
        ", ".join(lacking),
        fallback,
        feature,
    )


def _probe(connection_class: Any) -> Any:
    """A bare connection of ``connection_class``, with no socket, as FileDescriptor.__init__
    leaves it (that is where the buffer fields are made)."""
    probe = connection_class.__new__(connection_class)
    # A non-empty object stands in for the reactor so it does not import the global one.
    abstract.FileDescriptor.__init__(probe, reactor=object())  # type: ignore[arg-type]
    return probe


def connection_lacks(connection_class: type) -> list[str]:
    """What a connection class lacks of SEND_FIELDS (checked once per class)."""
    lacking = _connection_lacks.get(connection_class)
    if lacking is None:
        try:
            lacking = missing(_probe(connection_class), SEND_FIELDS)
        except (TypeError, AttributeError) as error:  # a changed constructor
            lacking = [f"FileDescriptor.__init__ ({error})"]
        _connection_lacks[connection_class] = lacking
    return lacking


# What each feature is, and what runs without it (the warning's words).
_DIRECT_SENDS = ("direct sends", "responses go through transport.write")
_UNSENT_COUNTS = ("unsent-byte counts", "--send-timeout cannot see Twisted's buffer")
_UNIX_ADOPTION = (
    "adopting unix sockets",
    "using reactor.adoptStreamPort, which removes the socket file and shuts the shared "
    "socket down when a worker stops",
)

_connection_lacks: dict[type, list[str]] = {}
# Checked at import (start-up) for the connections treadle's listeners make.
connection_lacks(tcp.Server)
connection_lacks(unix.Server)


def warn_missing(connection_classes: tuple[type, ...] = (tcp.Server, unix.Server)) -> None:
    """At start-up: one warning for each speed-up the installed Twisted cannot give."""
    for connection_class in connection_classes:
        lacking = connection_lacks(connection_class)
        if lacking:
            warn_once(*_DIRECT_SENDS, lacking)
            warn_once(*_UNSENT_COUNTS, lacking)
    lacking = missing(unix.Port, UNIX_ADOPT_FIELDS)
    if lacking:
        warn_once(*_UNIX_ADOPTION, lacking)


def direct_send(transport: Any, send_limit_bytes: int) -> bool:
    """Reactor thread, at connectionMade: may ``write_now`` be used on this transport?

    Only plain TCP/UNIX connections qualify (TLS rewrites bytes on the way). For those it
    also raises Twisted's per-syscall send limit to ``send_limit_bytes``.
    """
    if not isinstance(transport, tcp.Connection) or getattr(transport, "TLS", False):
        return False
    lacking = connection_lacks(type(transport))
    if lacking:
        warn_once(*_DIRECT_SENDS, lacking)
        return False
    transport.SEND_LIMIT = send_limit_bytes
    return True


def write_now(transport: Any, data: bytes) -> None:
    """Reactor thread: write ``data``, trying the socket at once when nothing is queued.

    Twisted's write() only buffers and registers for writability: two epoll_ctl calls and
    a loop turn per response. When the transport's buffer is empty we send directly and
    hand Twisted only what the socket did not take. Only for a transport that
    ``direct_send`` accepted.
    """
    if (
        not transport.dataBuffer
        and not transport._tempDataBuffer
        and transport.connected
        and not transport.disconnecting
    ):
        sent = transport.writeSomeData(data)
        if type(sent) is int:
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)


def buffered_bytes(transport: Any) -> tuple[Any, int] | None:
    """The socket transport under ``transport`` (TLS wraps one) and the bytes Twisted holds
    for it that the kernel has not taken; None if that cannot be told."""
    while transport is not None and not isinstance(transport, abstract.FileDescriptor):
        transport = getattr(transport, "transport", None)
    if transport is None:
        return None
    lacking = connection_lacks(type(transport))
    if lacking:
        warn_once(*_UNSENT_COUNTS, lacking)
        return None
    unsent = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    return transport, unsent


def lean_reactor_lacks(reactor: Any) -> list[str]:
    """What a constructed EPollReactor lacks of what the lean loop (reactor.py) uses."""
    return missing(reactor, REACTOR_FIELDS)


def unix_port_from_fd(port_class: Any, reactor: Any, fd: int, factory: Any) -> tuple[Any, bool]:
    """A unix port (of ``port_class``, a unix.Port) on inherited listening socket ``fd``.

    Returns ``(port, started)``: with Twisted's private constructor the port is not yet
    listening (the caller sets its mode and backlog, then calls startListening); with the
    public fallback it is already listening, as a plain unix.Port.
    """
    lacking = missing(port_class, UNIX_ADOPT_FIELDS)
    if not lacking:
        port = port_class._fromListeningDescriptor(reactor, fd, factory)
        # The socket is shared with the supervisor and the other workers: a stopping port
        # must only close its own descriptor. unix.Port would also shutdown() it, which
        # stops the listening socket in every process (clients then get ECONNREFUSED, a
        # 502 behind nginx); tcp.Port skips that for adopted sockets, unix.Port does not.
        port._shouldShutdown = False
        return port, False
    warn_once(*_UNIX_ADOPTION, lacking)
    return reactor.adoptStreamPort(fd, socket.AF_UNIX, factory), True
