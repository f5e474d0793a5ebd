"""Turns --bind values into listening ports: Twisted endpoint strings, plus shorthands.

Reactor layer: Twisted endpoints only. ``HOST:PORT``, ``[::1]:PORT`` and a bare
``PORT`` become tcp/tcp6 endpoint strings; anything with a known endpoint prefix
(tcp:, tcp6:, unix:, ssl:, systemd:, ...) is passed to serverFromString as is.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import serverFromString

from treadle.errors import ConfigError

_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]/]*)):(?P<port>\d+)$")
_ENDPOINT = re.compile(r"^[a-z][a-z0-9]*:")


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


def endpoint(reactor: Any, bind: str) -> Any:
    description = normalize(bind)
    try:
        return serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"bad endpoint {description!r}: {error}") from None


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
