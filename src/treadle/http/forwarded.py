"""Proxy headers: who the client is and which scheme it used, as told by trusted proxies.

Pure layer: header bytes and addresses in, an address and a scheme out; no I/O, no
Twisted, no threads. ``--forwarded-allow-ips`` (gunicorn's name and meaning) lists the
peers whose ``X-Forwarded-For``/``X-Forwarded-Proto`` (or, with ``--forwarded-headers
forwarded``, RFC 7239 ``Forwarded``) are believed. The client is the right-most address in
the chain that is not itself a trusted proxy: every entry to its right was appended by a
proxy we trust, everything to its left was written by the client and proves nothing. The
headers themselves always reach the app untouched. It must not log, raise on bad input
(a malformed header is a client's word, ignored) or touch a connection.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from treadle.errors import ConfigError

Peer = tuple[str, int] | None  # (host, port) as the connection gives it; None: a unix socket
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

X_FORWARDED = "x-forwarded"
FORWARDED = "forwarded"
CHOICES = (X_FORWARDED, FORWARDED)

# A node in a header: its address (normalised text) and port (0: not given), or None when
# it is not an IP address ("unknown", an RFC 7239 obfuscated "_name", garbage).
Node = tuple[str, int] | None

# Client-chosen text fills these, so they are bounded: past the limit a value is parsed
# on every request instead of being remembered.
_CACHE_MAX = 1024
_NODES: dict[str, Node] = {}

_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            # A dual-stack socket shows an IPv4 client as ::ffff:a.b.c.d; it is a.b.c.d.
            return address.ipv4_mapped
    return address


def _port(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    port = int(text)
    return port if port <= 65535 else None


def parse_node(text: str) -> Node:
    """An address as proxies write it -> (address, port or 0), or None.

    Takes ``192.0.2.1``, ``192.0.2.1:4711``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:4711`` (RFC 7239 §6 nodes, and what X-Forwarded-For carries, some
    balancers adding a port). An RFC 7239 obfuscated port (``:_abc``) leaves the port
    unknown (0). "unknown", ``_hidden`` and anything else that is not an IP give None.
    """
    cached = _NODES.get(text)
    if cached is not None or text in _NODES:
        return cached
    node = _parse_node(text)
    if len(_NODES) < _CACHE_MAX:
        _NODES[text] = node
    return node


def _parse_node(text: str) -> Node:
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if rest[0] != ":":
                return None
            port_text = rest[1:]
        if ":" not in host:
            return None  # brackets are for IPv6 only
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    address = _address(host)
    if address is None:
        return None
    port = 0
    if port_text:
        if port_text.startswith("_"):
            port = 0  # RFC 7239 §6.3 obfuscated port: there is one, but it is not told
        else:
            parsed = _port(port_text)
            if parsed is None:
                return None
            port = parsed
    return (str(address), port)


@dataclass(frozen=True, slots=True)
class Trusted:
    """The peers whose proxy headers are believed (``--forwarded-allow-ips``)."""

    everyone: bool = False
    addresses: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def trusts(self, host: str) -> bool:
        """Is ``host`` (normalised address text) a trusted proxy?"""
        if self.everyone or host in self.addresses:
            return True
        if not self.networks:
            return False
        address = _address(host)
        return address is not None and any(address in network for network in self.networks)

    def trusts_peer(self, peer: Peer) -> bool:
        """A connection's peer. A unix socket is trusted, as gunicorn does: only local
        processes allowed by the socket file's mode reach it (nginx in front, typically)."""
        if peer is None:
            return True
        if self.everyone or peer[0] in self.addresses:
            return True
        node = parse_node(peer[0])
        return node is not None and self.trusts(node[0])


def parse_allow_ips(text: str) -> Trusted | None:
    """``--forwarded-allow-ips``: comma-separated IPs and CIDR networks, or ``*``.

    None when empty (the feature is off). A bad entry is a ConfigError naming it.
    """
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        return None
    if "*" in entries:
        return Trusted(everyone=True)
    addresses: set[str] = set()
    networks = []
    for entry in entries:
        if "/" in entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigError(
                    f"--forwarded-allow-ips: {entry!r} is not an IP network (e.g. 10.0.0.0/8)"
                ) from None
            continue
        address = _address(entry.strip("[]"))
        if address is None:
            raise ConfigError(
                f"--forwarded-allow-ips: {entry!r} is not an IP address (names are not "
                "looked up; use addresses, CIDR networks or *)"
            )
        addresses.add(str(address))
    return Trusted(addresses=frozenset(addresses), networks=tuple(networks))


def _split_list(value: str) -> list[str]:
    """A comma-separated header value -> its stripped, non-empty members."""
    if "," not in value:
        value = value.strip(" \t")
        return [value] if value else []  # one proxy: the usual case
    members = [member.strip(" \t") for member in value.split(",")]
    return [member for member in members if member]


def _choose(nodes: list[Node], trusted: Trusted) -> int:
    """Index of the client in ``nodes`` (nearest hop last): the right-most entry that is
    not a trusted proxy. When every entry is trusted, the left-most (the client is one of
    our own proxies). -1 when the chain is empty."""
    for index in range(len(nodes) - 1, -1, -1):
        node = nodes[index]
        if node is None or not trusted.trusts(node[0]):
            return index
    return 0 if nodes else -1


def _located(nodes: list[Node], index: int, peer: Peer) -> Peer:
    """The peer the chain names at ``index``. A hop that is not an address ("unknown",
    an obfuscated name) cannot be REMOTE_ADDR: the trusted hop that named it stands in
    (the entry to its right, or the connection's peer)."""
    for position in range(index, len(nodes)):
        node = nodes[position]
        if node is not None:
            return node
    return peer


def from_x_forwarded(
    forwarded_for: str | None,
    forwarded_proto: str | None,
    peer: Peer,
    scheme: str,
    trusted: Trusted,
) -> tuple[Peer, str]:
    """(peer, scheme) from ``X-Forwarded-For`` and ``X-Forwarded-Proto`` (the values of
    repeated lines already joined with commas, RFC 9110 §5.3)."""
    chosen_from_right = 0
    if forwarded_for is not None:
        if "," not in forwarded_for:
            # One proxy, the usual case: its entry is the client, trusted or not.
            node = parse_node(forwarded_for.strip(" \t"))
            if node is not None:
                peer = node
        else:
            nodes = [parse_node(member) for member in _split_list(forwarded_for)]
            index = _choose(nodes, trusted)
            if index >= 0:
                peer = _located(nodes, index, peer)
                chosen_from_right = len(nodes) - 1 - index
    if forwarded_proto is not None:
        if "," not in forwarded_proto:
            return peer, _SCHEMES.get(forwarded_proto.strip(" \t").lower(), scheme)
        protos = _split_list(forwarded_proto)
        if protos:
            # Proxies that append give one entry per hop, aligned with X-Forwarded-For;
            # most set one value for the whole chain, which then stands for the client's.
            proto = protos[-1 - chosen_from_right] if chosen_from_right < len(protos) else protos[0]
            scheme = _SCHEMES.get(proto.lower(), scheme)
    return peer, scheme


# -- RFC 7239 Forwarded ---------------------------------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")


def _split_unquoted(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside quoted strings (RFC 9110 §5.6.4)."""
    if '"' not in text:
        return text.split(separator)
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _pair(text: str) -> tuple[str, str] | None:
    """``name=value`` (RFC 7239 §4: value = token / quoted-string) -> (lower name, value)."""
    name, sep, value = text.partition("=")
    if not sep or _TOKEN.fullmatch(name) is None:
        return None
    if _TOKEN.fullmatch(value) is not None:
        return name.lower(), value
    quoted = _QUOTED.fullmatch(value)
    if quoted is None:
        return None
    return name.lower(), _QUOTED_PAIR.sub(r"\1", quoted.group(1))


def parse_forwarded(value: str) -> list[dict[str, str] | None]:
    """A ``Forwarded`` value -> one dict per element (hop), nearest hop last; a malformed
    element is None. Names are lower-cased; a name given twice in one element makes it
    malformed (RFC 7239 §4). Empty list members are skipped (RFC 9110 §5.6.1).

    Elements are split at every comma, even inside quotes: otherwise a client that writes
    an unterminated quote (``for="``) would swallow the elements its proxies append, and
    REMOTE_ADDR would become the proxy's own address. No for=, by= or proto= value can
    hold a comma, so only an exotic extension parameter loses its element (to None).
    """
    elements: list[dict[str, str] | None] = []
    for member in value.split(","):
        member = member.strip(" \t")
        if not member:
            continue
        pairs: dict[str, str] = {}
        for text in _split_unquoted(member, ";"):
            text = text.strip(" \t")
            if not text:
                continue
            pair = _pair(text)
            if pair is None or pair[0] in pairs:
                break
            pairs[pair[0]] = pair[1]
        else:
            elements.append(pairs)
            continue
        elements.append(None)
    return elements


def from_forwarded(value: str, peer: Peer, scheme: str, trusted: Trusted) -> tuple[Peer, str]:
    """(peer, scheme) from an RFC 7239 ``Forwarded`` value (repeated lines joined)."""
    elements = parse_forwarded(value)
    nodes: list[Node] = []
    for element in elements:
        text = None if element is None else element.get("for")
        nodes.append(None if text is None else parse_node(text))
    index = _choose(nodes, trusted)
    if index < 0:
        return peer, scheme
    peer = _located(nodes, index, peer)
    element = elements[index]
    proto = None if element is None else element.get("proto")
    if proto is not None:
        scheme = _SCHEMES.get(proto.lower(), scheme)
    return peer, scheme


# -- applying them to a request -------------------------------------------------------

_NAMES = {
    X_FORWARDED: {b"x-forwarded-for": "for", b"x-forwarded-proto": "proto"},
    FORWARDED: {b"forwarded": "forwarded"},
}


def _joined(
    headers: Iterable[tuple[bytes, bytes]], wanted: dict[bytes, str], lengths: frozenset[int]
) -> dict[str, str]:
    """The wanted headers' values by key, repeated field lines joined (RFC 9110 §5.3)."""
    found: dict[str, str] = {}
    for name, value in headers:
        if len(name) in lengths:  # most names are skipped without lower-casing them
            key = wanted.get(name.lower())
            if key is not None:
                text = value.decode("latin-1")
                found[key] = f"{found[key]},{text}" if key in found else text
    return found


class ProxyHeaders:
    """Sets an exchange's ``peer`` and ``scheme`` from the proxy headers its peer may send."""

    def __init__(self, trusted: Trusted, headers: str = X_FORWARDED) -> None:
        if headers not in _NAMES:
            raise ConfigError(f"--forwarded-headers must be one of {', '.join(CHOICES)}")
        self.trusted = trusted
        self.kind = headers
        self.wanted = _NAMES[headers]
        self.lengths = frozenset(len(name) for name in self.wanted)

    def resolve(
        self, headers: Iterable[tuple[bytes, bytes]], peer: Peer, scheme: str
    ) -> tuple[Peer, str]:
        """(peer, scheme) for a request with ``headers`` that came from ``peer``."""
        if not self.trusted.trusts_peer(peer):
            return peer, scheme
        found = _joined(headers, self.wanted, self.lengths)
        if not found:
            return peer, scheme
        return self.resolve_found(found, peer, scheme)

    def resolve_found(self, found: dict[str, str], peer: Peer, scheme: str) -> tuple[Peer, str]:
        """``resolve`` once the trusted peer's proxy headers are collected."""
        if self.kind == FORWARDED:
            return from_forwarded(found["forwarded"], peer, scheme, self.trusted)
        return from_x_forwarded(found.get("for"), found.get("proto"), peer, scheme, self.trusted)

    def wrap(self, dispatch: Callable[[Any], None]) -> Callable[[Any], None]:
        """``dispatch`` preceded by setting the exchange's peer and scheme (``resolve``,
        inlined: calls are what costs here), in the reactor thread before routing, so the
        access log and the environ see the same client. Built only when the setting is on:
        a server without trusted proxies pays nothing per request; with it on, a request
        without proxy headers costs one call, a set lookup and a length test per header."""
        trusted = self.trusted
        everyone, addresses = trusted.everyone, trusted.addresses
        wanted, lengths = self.wanted, self.lengths
        resolve_found = self.resolve_found

        def dispatch_forwarded(exchange: Any) -> None:
            peer = exchange.peer
            if (
                peer is None
                or everyone
                or peer[0] in addresses
                or trusted.trusts_peer(peer)  # networks, dual-stack spellings
            ):
                found: dict[str, str] | None = None
                for name, value in exchange.head.headers:
                    if len(name) in lengths:
                        key = wanted.get(name.lower())
                        if key is not None:
                            if found is None:
                                found = {}
                            text = value.decode("latin-1")
                            found[key] = f"{found[key]},{text}" if key in found else text
                if found is not None:
                    exchange.peer, exchange.scheme = resolve_found(found, peer, exchange.scheme)
            dispatch(exchange)

        return dispatch_forwarded


def from_settings(allow_ips: str, headers: str = X_FORWARDED) -> ProxyHeaders | None:
    """The configured ProxyHeaders, or None when ``--forwarded-allow-ips`` is empty."""
    trusted = parse_allow_ips(allow_ips)
    return None if trusted is None else ProxyHeaders(trusted, headers)
