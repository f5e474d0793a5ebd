"""HTTP/2 heads: a request's decoded header list -> RequestHead; a WSGI response -> fields.

Pure layer: no I/O, no h2 state. The request side applies the same limits as HTTP/1.1
(431, 414) and refuses CONNECT (501); the response side checks what the app gave and drops
what HTTP/2 forbids, as http/h1_response.py does for HTTP/1.1. It must not frame anything
but a GOAWAY (whose bytes the session writes itself at a drain).
"""

from __future__ import annotations

import re

from treadle.config import Limits
from treadle.errors import ProtocolError
from treadle.http.events import RequestHead

# Connection-specific header fields are malformed in HTTP/2 (RFC 9113 §8.2.2).
_HOP_BY_HOP = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"]
)
_STATUS = re.compile(r"([2-5][0-9][0-9])(?: [\t\x20-\x7e\x80-\xff]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")  # RFC 9110 §5.1, lower case (§8.2.1)
_BAD_VALUE = re.compile(rb"[\r\n\x00]")


def goaway_frame(last_stream_id: int, code: int) -> bytes:
    """A GOAWAY frame (RFC 9113 §6.8): length 8, type 7, no flags, stream 0."""
    return (
        b"\x00\x00\x08\x07\x00\x00\x00\x00\x00"
        + (last_stream_id & 0x7FFFFFFF).to_bytes(4, "big")
        + int(code).to_bytes(4, "big")
    )


def request_head(headers: list[tuple[bytes, bytes]], limits: Limits) -> RequestHead:
    """A request's decoded header list -> RequestHead; ProtocolError(431/414/501) to refuse.

    h2 has already checked the pseudo-header rules (RFC 9113 §8.3) and refused the
    connection-specific fields (§8.2.2).
    """
    method = path = authority = None
    fields: list[tuple[bytes, bytes]] = []
    size = 0
    for name, value in headers:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            continue
        size += len(name) + len(value) + 4  # as the HTTP/1.1 field line would count
        fields.append((name, value))
    if len(fields) > limits.max_header_count:
        raise ProtocolError("Request Header Fields Too Large: too many fields", 431)
    if size > limits.max_header_bytes:
        raise ProtocolError("Request Header Fields Too Large", 431)
    if method is None or method == b"CONNECT" or path is None:
        # RFC 9113 §8.5: CONNECT makes a tunnel, which a WSGI app cannot serve.
        raise ProtocolError("Not Implemented: CONNECT", 501)
    if len(path) > limits.max_request_line_bytes:
        raise ProtocolError("URI Too Long", 414)
    target = path
    raw_path, _, query = path.partition(b"?")
    content_length: int | None = None
    for name, value in fields:
        if name == b"content-length":
            content_length = int(value)  # h2 checked it is a number matching the body
        elif name == b"host" and authority is None:
            authority = value  # RFC 9113 §8.3.1: Host stands in when :authority is absent
    return RequestHead(
        method=method,
        target=target,
        path=raw_path,
        query=query,
        http_version="2",
        headers=fields,
        keep_alive=True,
        content_length=content_length,
        authority=authority,
    )


def response_head(
    status: str, headers: list[tuple[str, str]], date: bytes
) -> tuple[int, list[tuple[bytes, bytes]], int | None]:
    """A WSGI status and header list -> (code, HTTP/2 fields, Content-Length or None).

    ValueError for what HTTP/2 cannot carry or would misframe: a 1xx or malformed status,
    a bad name or value. Names are lower-cased (RFC 9113 §8.2.1) and connection-specific
    fields dropped (§8.2.2).
    """
    match = _STATUS.fullmatch(status) if type(status) is str else None
    if match is None:
        raise ValueError(f"invalid status line {status!r}")
    out: list[tuple[bytes, bytes]] = []
    length: int | None = None
    has_date = has_server = False
    for name, value in headers:
        if type(name) is not str or type(value) is not str:
            raise ValueError(f"invalid header {name!r}")
        raw_name = name.lower().encode("latin-1")
        raw_value = value.strip(" \t").encode("latin-1")
        if _TOKEN.fullmatch(raw_name) is None:
            raise ValueError(f"invalid header name {name!r}")
        if _BAD_VALUE.search(raw_value) is not None:
            raise ValueError(f"invalid value for header {name}: {value!r}")
        if raw_name in _HOP_BY_HOP:
            continue
        if raw_name == b"content-length":
            if not raw_value.isdigit() or (length is not None and int(raw_value) != length):
                raise ValueError(f"invalid Content-Length {value!r}")
            if length is not None:
                continue
            length = int(raw_value)
        elif raw_name == b"date":
            has_date = True
        elif raw_name == b"server":
            has_server = True
        out.append((raw_name, raw_value))
    if not has_server:
        out.append((b"server", b"treadle"))
    if not has_date:
        out.append((b"date", date))
    return int(match.group(1)), out, length
