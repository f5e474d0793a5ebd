"""The PROXY protocol header (HAProxy's, v1 text and v2 binary): bytes -> the client's address.

Pure layer: bytes in, a value out; no sockets, no Twisted. It reads only the header that a
proxy sends before anything else on the connection; the bytes after it belong to the
connection's own protocol (TLS or HTTP). Errors are values (``Invalid`` with a reason for
the log), never exceptions, and every address and port is checked, so a bad header can
only close its connection. TLVs of v2 (TLS details, unique ids) are skipped, not trusted.
Spec: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX_BYTES = 107  # spec §2.1: the longest v1 line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_BYTES = 16

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A complete header. ``source`` None: the proxy speaks for itself (v2 LOCAL, a health
    check; v1 UNKNOWN; an unspecified or unix family), so the connection's own addresses
    stand."""

    length: int  # bytes the header took; the connection's protocol starts after them
    version: int
    source: Address | None = None
    destination: Address | None = None


@dataclass(frozen=True, slots=True)
class Invalid:
    """Not a PROXY header, or a broken one: the connection must be closed."""

    reason: str


def parse(data: bytes) -> ProxyHeader | Invalid | None:
    """The header at the start of ``data``, Invalid, or None while more bytes are needed."""
    if not data:
        return None
    if data[0] == V1_PREFIX[0]:
        return _parse_v1(data)
    if data[0] == V2_SIGNATURE[0]:
        return _parse_v2(data)
    return Invalid("no PROXY header")


def _port(text: bytes) -> int | None:
    # Spec §2.1: ports are decimal, 0-65535.
    if not 0 < len(text) <= 5 or not text.isdigit():
        return None
    port = int(text)
    return port if port <= 65535 else None


def _parse_v1(data: bytes) -> ProxyHeader | Invalid | None:
    if not data.startswith(V1_PREFIX[: len(data)]):
        return Invalid("no PROXY header")
    end = data.find(b"\r\n", 0, V1_MAX_BYTES)
    if end < 0:
        if len(data) >= V1_MAX_BYTES:
            return Invalid(f"v1 header without CRLF in its first {V1_MAX_BYTES} bytes")
        return None
    length = end + 2
    fields = data[:end].split(b" ")
    family = fields[1] if len(fields) > 1 else b""
    if family == b"UNKNOWN":
        # Spec §2.1: the receiver ignores the rest of the line and uses the real addresses.
        return ProxyHeader(length, 1)
    if family not in (b"TCP4", b"TCP6") or len(fields) != 6:
        return Invalid(f"v1 header is not PROXY TCP4|TCP6 SRC DST SPORT DPORT: {data[:end]!r}")
    kind = ipaddress.IPv4Address if family == b"TCP4" else ipaddress.IPv6Address
    try:
        source_ip = kind(fields[2].decode("ascii"))
        destination_ip = kind(fields[3].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return Invalid(f"v1 header has a bad {family.decode()} address: {data[:end]!r}")
    source_port, destination_port = _port(fields[4]), _port(fields[5])
    if source_port is None or destination_port is None:
        return Invalid(f"v1 header has a bad port: {data[:end]!r}")
    return ProxyHeader(
        length, 1, (str(source_ip), source_port), (str(destination_ip), destination_port)
    )


_INET = struct.Struct("!4s4sHH")
_INET6 = struct.Struct("!16s16sHH")


def _parse_v2(data: bytes) -> ProxyHeader | Invalid | None:
    signature = data[: len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(signature):
        return Invalid("no PROXY header")
    if len(data) < V2_FIXED_BYTES:
        return None
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2:
        return Invalid(f"v2 header of version {version}")
    if command > 1:
        return Invalid(f"v2 header with unknown command {command}")
    length = V2_FIXED_BYTES + int.from_bytes(data[14:16], "big")
    if len(data) < length:
        return None
    if command == 0:
        # LOCAL (spec §2.2): the proxy's own connection (a health check); the rest is skipped.
        return ProxyHeader(length, 2)
    family, transport = data[13] >> 4, data[13] & 0x0F
    if family == 0:
        return ProxyHeader(length, 2)  # UNSPEC: the receiver uses the real addresses
    if transport != 1:
        return Invalid(f"v2 header for transport {transport}, not a stream")
    body = data[V2_FIXED_BYTES:length]
    kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]
    if family == 1:
        layout, kind = _INET, ipaddress.IPv4Address
    elif family == 2:
        layout, kind = _INET6, ipaddress.IPv6Address
    elif family == 3:
        return ProxyHeader(length, 2)  # AF_UNIX: paths are no REMOTE_ADDR; the socket's stands
    else:
        return Invalid(f"v2 header with unknown address family {family}")
    if len(body) < layout.size:
        return Invalid(f"v2 header too short for its addresses ({len(body)} bytes)")
    source, destination, source_port, destination_port = layout.unpack_from(body)
    return ProxyHeader(
        length,
        2,
        (str(kind(source)), source_port),
        (str(kind(destination)), destination_port),
    )


def format_v1(source: Address, destination: Address) -> bytes:
    """A v1 header (for tests and tools): TCP4 or TCP6 chosen by the addresses."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return (f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n").encode(
        "ascii"
    )


def format_v2(source: Address | None, destination: Address | None, tlvs: bytes = b"") -> bytes:
    """A v2 header (for tests and tools): PROXY over TCP, or LOCAL when source is None."""
    if source is None or destination is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + len(tlvs).to_bytes(2, "big") + tlvs
    v6 = ":" in source[0]
    kind = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    layout = _INET6 if v6 else _INET
    body = layout.pack(
        kind(source[0]).packed, kind(destination[0]).packed, source[1], destination[1]
    )
    body += tlvs
    return V2_SIGNATURE + bytes([0x21, 0x21 if v6 else 0x11]) + len(body).to_bytes(2, "big") + body
