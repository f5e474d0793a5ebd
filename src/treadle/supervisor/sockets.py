"""Listening sockets a parent process binds once and hands to its children by descriptor.

Composition layer, used by the supervisor and the dev reloader in the parent: plain
``socket`` calls, no reactor. A held socket outlives every child, so a restart never
refuses a connection; a child adopts it with an ``fd:N:family=...`` bind (listen.py), or
``sslfd:N:...`` for an ``ssl:`` bind, whose TLS the child wraps around the adopted socket.
The supervisor may hold several SO_REUSEPORT sockets on one TCP address, one per worker
slot (``hold_again``). It never accepts a connection itself.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from treadle import listen


@dataclass
class Held:
    """A listening socket the parent keeps open across restarts."""

    sock: socket.socket
    address: str
    unix_path: str | None = None
    backlog: int | None = None  # chosen by the bind itself (backlog=N), else the setting's
    reuse_port: bool = False  # bound with SO_REUSEPORT: more sockets may join its address
    tls: dict[str, str] | None = None  # an ssl: bind's certificate parameters

    @property
    def child_bind(self) -> str:
        fd = self.sock.fileno()
        if self.tls is not None:
            return listen.adopted_tls_bind(fd, self.sock.family, self.tls, self.backlog)
        return listen.adopted_bind(fd, self.sock.family, self.backlog)


def _listen_tcp(
    family: int, address: tuple[str, int], backlog: int, *, reuse_port: bool
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted does
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def hold(
    bind: str,
    default_backlog: int = 2048,
    default_mode: int = 0o666,
    *,
    reuse_port: bool = False,
    with_tls: bool = False,
) -> Held | None:
    """Bind and listen for a tcp/tcp6/unix bind (ssl: too, ``with_tls``), or take a
    systemd: socket; None for kinds only the child can open.

    A unix socket gets the bind's mode=, else ``default_mode`` (Twisted's 0666, or less
    under --umask). With ``reuse_port``, TCP sockets (ssl: included) get SO_REUSEPORT, so
    ``hold_again`` can add sockets on the same address."""
    kind, args, kwargs = listen.split_description(listen.normalize(bind))
    chosen = int(kwargs["backlog"]) if "backlog" in kwargs else None
    backlog = default_backlog if chosen is None else chosen
    if kind in ("tcp", "tcp6") or (kind == "ssl" and with_tls):
        # Twisted's ssl: endpoint, and so tls.py's, listens on IPv4 only.
        family = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
        port = int(kwargs.get("port", args[0] if args else 0))
        interface = kwargs.get("interface", "::" if kind == "tcp6" else "")
        tls = None
        if kind == "ssl":
            tls = {k: v for k, v in kwargs.items() if k not in ("port", "interface", "backlog")}
        sock = _listen_tcp(family, (interface, port), backlog, reuse_port=reuse_port)
        host, real_port = sock.getsockname()[:2]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        scheme = "https" if tls is not None else "http"
        return Held(
            sock,
            f"{scheme}://{shown}:{real_port}",
            backlog=chosen,
            reuse_port=reuse_port,
            tls=tls,
        )
    if kind == "unix":
        path = kwargs.get("address", args[0] if args else "")
        _remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, int(kwargs["mode"], 8) if "mode" in kwargs else default_mode)
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        return Held(sock, f"unix:{path}", unix_path=path, backlog=chosen)
    if kind == "systemd":
        return _activated(int(kwargs.get("index", "0")), chosen)
    return None


def hold_again(kept: Held, default_backlog: int = 2048, address: Any = None) -> Held:
    """Another SO_REUSEPORT socket on ``kept``'s address (or ``address``, when ``kept`` is
    closed already), for another worker slot.

    The kernel spreads new connections over the sockets of one address (a hash of each
    connection's addresses and ports), each with its own accept queue."""
    if not kept.reuse_port:
        return kept  # one socket that every worker shares (unix:, systemd:)
    backlog = default_backlog if kept.backlog is None else kept.backlog
    where = kept.sock.getsockname() if address is None else address
    sock = _listen_tcp(kept.sock.family, where, backlog, reuse_port=True)
    return Held(sock, kept.address, backlog=kept.backlog, reuse_port=True, tls=kept.tls)


def _activated(index: int, backlog: int | None) -> Held:
    """A socket systemd passed us (sd_listen_fds(3): LISTEN_PID, LISTEN_FDS, from fd 3)."""
    # Twisted's systemd endpoint parser consumes LISTEN_PID/LISTEN_FDS when the bind is
    # checked at start-up, so when they are gone the descriptor itself is checked.
    if os.environ.get("LISTEN_PID", str(os.getpid())) != str(os.getpid()):
        raise OSError("systemd: bind, but systemd passed its sockets to another process")
    count = int(os.environ.get("LISTEN_FDS", index + 1))
    if not 0 <= index < count:
        raise OSError(f"systemd: index={index}, but systemd passed {count} sockets")
    try:
        sock = socket.socket(fileno=3 + index)  # family and type read from the descriptor
    except OSError:
        raise OSError(f"systemd: index={index}: no socket was passed on fd {3 + index}") from None
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise OSError(f"systemd: index={index}: fd {3 + index} is not a listening socket")
    if sock.family == socket.AF_UNIX:
        return Held(sock, f"unix:{sock.getsockname()}", backlog=backlog)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
    return Held(sock, f"http://{shown}:{port}", backlog=backlog)


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a dead server is removed; one with a live server is an error."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except OSError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            return
        except OSError:
            return
    raise OSError(f"{path} is in use by another server")


def release(held: Iterable[Held]) -> None:
    """Close the sockets and remove the unix socket files (the last holder is leaving)."""
    for kept in held:
        kept.sock.close()
        if kept.unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(kept.unix_path)
