"""Turns --bind values into listening ports: Twisted endpoint strings, plus shorthands.

Reactor layer: Twisted endpoints only. ``HOST:PORT``, ``[::1]:PORT`` and a bare
``PORT`` become tcp/tcp6 endpoint strings; anything with a known endpoint prefix
(tcp:, tcp6:, unix:, systemd:, ...) is passed to serverFromString as is, except
``ssl:``, whose context tls.py builds (ALPN, TLS 1.2 minimum, start-up file checks);
``fd:N:family=INET|INET6|UNIX`` adopts a listening socket inherited from a parent
(dev reload, supervisor), and ``sslfd:N:family=...:privateKey=...:certKey=...`` adopts
one and wraps TLS around it (an ``ssl:`` bind held by a parent). It never binds a socket
itself: the endpoints do.
"""

from __future__ import annotations

import os
import re
import select
import socket
import stat
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, fdesc, tcp, unix
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.python.failure import Failure

from treadle import twisted_internals
from treadle.config import TLS
from treadle.errors import ConfigError

_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]/]*)):(?P<port>\d+)$")
_ENDPOINT = re.compile(r"^[a-z][a-z0-9]*:")
_ADOPTED = re.compile(
    r"^fd:(?P<fd>\d+)(?::family=(?P<family>[A-Z0-9]+))?(?::backlog=(?P<backlog>\d+))?$"
)
FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}


def normalize(bind: str) -> str:
    """A --bind value -> a Twisted endpoint string."""
    bind = bind.strip()
    if bind.isdigit():
        return f"tcp:{bind}:interface=127.0.0.1"
    match = _HOST_PORT.match(bind)
    if match:
        port = match["port"]
        if match["v6"] is not None:
            return f"tcp6:{port}:interface=" + match["v6"].replace(":", "\\:")
        host = match["host"] or "0.0.0.0"
        if host == "localhost":
            host = "127.0.0.1"
        return f"tcp:{port}:interface={host}"
    if _ENDPOINT.match(bind):
        return bind
    raise ConfigError(f"cannot understand --bind {bind!r}: use HOST:PORT or an endpoint string")


def adopted_bind(fd: int, family: int, backlog: int | None = None) -> str:
    """The bind string a child uses to listen on inherited ``fd`` (see ``endpoint``)."""
    names = {int(number): name for name, number in FAMILIES.items()}
    return f"fd:{fd}:family={names[family]}" + ("" if backlog is None else f":backlog={backlog}")


def _escaped(value: str) -> str:
    """Twisted's endpoint-string escapes (the inverse of ``split_description``)."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def adopted_tls_bind(
    fd: int, family: int, params: dict[str, str], backlog: int | None = None
) -> str:
    """The bind string a child uses to serve TLS on inherited ``fd``; ``params`` are the
    ``ssl:`` bind's certificate parameters (privateKey, certKey, ...)."""
    plain = adopted_bind(fd, family, backlog)
    extra = "".join(f":{name}={_escaped(value)}" for name, value in params.items())
    return "ssl" + plain + extra


class _SharedUNIXPort(unix.Port):
    """A UNIX port on an inherited socket: stopping it must not unlink the path,
    because the parent still holds the socket for the next child."""

    def connectionLost(self, reason: Any) -> None:
        tcp.Port.connectionLost(self, reason)  # skips unix.Port's os.unlink(path)


class AdoptedEndpoint:
    """Listens on an inherited, already listening socket (``fd:N:family=...``)."""

    def __init__(self, reactor: Any, fd: int, family: int, backlog: int = 2048) -> None:
        self.reactor = reactor
        self.fd = fd
        self.family = family
        self.backlog = backlog

    def listen(self, factory: Any) -> defer.Deferred[Any]:
        if self.family != socket.AF_UNIX:
            return AdoptedStreamServerEndpoint(self.reactor, self.fd, self.family).listen(factory)
        try:
            fdesc.setNonBlocking(self.fd)
            with socket.socket(fileno=os.dup(self.fd)) as adopted:
                path = adopted.getsockname()
            mode = None
            if path and path[:1] not in (b"\0", "\0"):  # not a Linux abstract-namespace socket
                mode = stat.S_IMODE(os.stat(path).st_mode)
            port, started = twisted_internals.unix_port_from_fd(
                _SharedUNIXPort, self.reactor, self.fd, factory
            )
            if not started:
                # startListening chmods the path to port.mode: keep the mode the parent set.
                if mode is not None:
                    port.mode = mode
                port.backlog = self.backlog  # unix.Port calls listen() again, even when adopted
                port.startListening()
            elif mode is not None:
                os.chmod(path, mode)  # the public path chmodded it to 0o666
            os.close(self.fd)
        except (OSError, CannotListenError):
            return defer.fail()
        return defer.succeed(port)


def split_description(description: str) -> tuple[str, list[str], dict[str, str]]:
    """``KIND:ARG:KEY=VALUE...`` -> (kind, args, params), with Twisted's backslash escapes."""
    parts: list[tuple[str | None, str]] = []
    key: str | None = None
    current: list[str] = []
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            parts.append((key, "".join(current)))
            key, current = None, []
        elif char == "=" and key is None:
            key, current = "".join(current), []
        else:
            current.append(char)
    parts.append((key, "".join(current)))
    kind = parts[0][1]
    args = [value for name, value in parts[1:] if name is None]
    params = {name: value for name, value in parts[1:] if name is not None}
    return kind, args, params


def scheme(bind: str, tls: TLS | None = None) -> str:
    """The URL scheme a bind serves: https for ssl: and sslfd:, and for tcp binds under
    --certfile/--cert-dir; else http (each connection still decides for itself in
    http/protocol.py)."""
    description = normalize(bind)
    if description.startswith(("ssl:", "sslfd:")):
        return "https"
    return "https" if tls is not None and tls.enabled and serves_tcp(description) else "http"


def serves_tcp(description: str) -> bool:
    """Is this endpoint string a TCP listener (tcp, tcp6, an inherited INET socket, a
    systemd INET socket)? --certfile turns exactly these into TLS; unix sockets stay
    plain HTTP (a proxy on the same host speaks to them)."""
    kind, _, params = split_description(description)
    if kind in ("tcp", "tcp6"):
        return True
    if kind == "fd":
        return params.get("family", "INET") in ("INET", "INET6")
    if kind == "systemd":
        return params.get("domain", "INET") in ("INET", "INET6")
    return False


def with_backlog(description: str, backlog: int) -> str:
    """Add backlog=N to tcp/tcp6/unix/ssl endpoint strings that do not choose their own."""
    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "unix", "ssl") and "backlog=" not in description:
        return f"{description}:backlog={backlog}"
    return description


def endpoint(reactor: Any, bind: str, backlog: int = 2048, tls: TLS | None = None) -> Any:
    """The endpoint of one --bind; ``tls`` (--certfile, --cert-dir, --client-*) applies to
    ssl: binds, and wraps TLS around tcp binds when it names certificates."""
    description = with_backlog(normalize(bind), backlog)
    plain = _endpoint(reactor, description, backlog, tls)
    if tls is not None and tls.enabled and serves_tcp(description):
        return _tls_module().settings_endpoint(plain, tls)
    return plain


def _endpoint(reactor: Any, description: str, backlog: int, tls: TLS | None) -> Any:
    adopted = _ADOPTED.match(description)
    if adopted:
        family = FAMILIES.get(adopted["family"] or "INET")
        if family is None:
            raise ConfigError(f"bad endpoint {description!r}: family is INET, INET6 or UNIX")
        chosen = int(adopted["backlog"]) if adopted["backlog"] else backlog
        return AdoptedEndpoint(reactor, int(adopted["fd"]), family, chosen)
    if description.startswith("ssl:"):
        return _ssl_endpoint(reactor, description, tls)
    if description.startswith("sslfd:"):
        return _adopted_tls_endpoint(reactor, description, backlog, tls)
    try:
        return serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"bad endpoint {description!r}: {error}") from None


def _tls_module() -> Any:
    try:
        from treadle import tls
    except ImportError as error:
        raise ConfigError(
            f"TLS needs pyOpenSSL ({error.name} is missing): pip install 'treadle[tls]'"
        ) from None
    return tls


def _ssl_endpoint(reactor: Any, description: str, settings: TLS | None = None) -> Any:
    _, args, params = split_description(description)
    return _tls_module().ssl_endpoint(reactor, args, params, settings)


def _adopted_tls_endpoint(
    reactor: Any, description: str, backlog: int, settings: TLS | None = None
) -> Any:
    """``sslfd:N:family=...:privateKey=...``: tls.py's endpoint over an inherited socket."""
    _, args, params = split_description(description)
    family = FAMILIES.get(params.pop("family", "INET"))
    if len(args) != 1 or not args[0].isdigit() or family is None:
        raise ConfigError(f"bad endpoint {description!r}: sslfd:FD:family=INET|INET6:...")
    chosen = int(params.pop("backlog", backlog))
    # tls.py checks the certificate parameters and files; the port it would bind is ours.
    tls_endpoint = _ssl_endpoint(
        reactor,
        "ssl:0:" + ":".join(f"{name}={_escaped(value)}" for name, value in params.items()),
        settings,
    )
    tls_endpoint.tcp = AdoptedEndpoint(reactor, int(args[0]), family, chosen)
    return tls_endpoint


class WrappedEndpoint:
    """An endpoint whose listening factory is wrapped first (``wrap(factory)``)."""

    def __init__(self, endpoint: Any, wrap: Callable[[Any], Any]) -> None:
        self.endpoint = endpoint
        self.wrap = wrap

    def listen(self, factory: Any) -> Any:
        return self.endpoint.listen(self.wrap(factory))


def wrapped_beneath_tls(endpoint: Any, wrap: Callable[[Any], Any]) -> Any:
    """``endpoint`` with ``wrap`` around its factory, under TLS when it has TLS.

    For the PROXY protocol (proxied.py): the proxy sends its header in clear before the
    client's TLS bytes, so the header reader sits between TCP and TLS. tls.py's endpoints
    keep their TCP endpoint in ``.tcp`` and wrap TLS around whatever it accepts.
    """
    tcp = getattr(endpoint, "tcp", None)
    if tcp is not None:
        endpoint.tcp = WrappedEndpoint(tcp, wrap)
        return endpoint
    return WrappedEndpoint(endpoint, wrap)


def check_certificates(binds: tuple[str, ...], tls: TLS) -> None:
    """Read every certificate file these binds would serve TLS with, listening on nothing:
    the supervisor's check before it starts workers. ConfigError on the first bad file."""
    for bind in binds:
        description = normalize(bind)
        kind, args, params = split_description(description)
        if kind == "ssl":
            _tls_module().ssl_endpoint(None, args, params, tls)
        elif tls.enabled and serves_tcp(description):
            _tls_module().settings_endpoint(None, tls)


def describe(port: Any, scheme: str = "http") -> str:
    """What a listening port serves, for the log line scripts wait on."""
    address = port.getHost()
    if isinstance(address, IPv6Address):
        return f"{scheme}://[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{scheme}://{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name.decode() if isinstance(address.name, bytes) else address.name
        return f"unix:{name}"
    return str(address)


def stop_listening(port: Any, rounds: int = 16) -> defer.Deferred[Any]:
    """Stop listening on ``port`` without resetting the connections the kernel has queued.

    Closing a listening socket resets every connection still in its accept queue. Their
    clients may already have sent a request on it: a balancer then fails that request
    (HAProxy closes its own client's connection without an answer) instead of seeing a
    refused connection and trying another host. So what is queued is accepted first, and
    the server's drain gives each the first-request grace. The socket then closes at once,
    not on the next reactor turn as ``stopListening`` does: under load that turn can take
    milliseconds, and a handshake completed in it would be reset.
    """
    if not (isinstance(port, tcp.Port) and port.connected):
        return defer.maybeDeferred(port.stopListening)
    port.stopReading()
    queue = select.poll()  # not select.select: it fails on descriptors past 1023
    queue.register(port.fileno(), select.POLLIN)
    for _ in range(rounds):  # each doRead accepts up to Twisted's batch size
        if not queue.poll(0):
            break
        port.doRead()
    # IFileDescriptor.connectionLost closes the socket now, as the reactor would.
    return defer.maybeDeferred(port.connectionLost, Failure(ConnectionDone()))
