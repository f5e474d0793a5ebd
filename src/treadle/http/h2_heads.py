"""HTTP/2 heads: a request's decoded header list -> RequestHead; a WSGI response -> fields.

Pure layer: no I/O, no h2 state. The request side checks what RFC 9113 calls malformed
(h2's own inbound checks are off: this one pass replaces six generator passes), applies
the same limits as HTTP/1.1 (431, 414) and refuses CONNECT (501); the response side checks
what the app gave and drops what HTTP/2 forbids, as http/h1_response.py does for HTTP/1.1.
It must not frame anything but a GOAWAY (whose bytes the session writes itself at a drain).
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
# A field value (RFC 9113 §8.2.1): no NUL, CR or LF; no SP or HTAB at either end.
_VALUE = re.compile(rb"(?:[^\x00\r\n\t ](?:[^\x00\r\n]*[^\x00\r\n\t ])?)?")


def goaway_frame(last_stream_id: int, code: int) -> bytes:
    """A GOAWAY frame (RFC 9113 §6.8): length 8, type 7, no flags, stream 0."""
    return (
        b"\x00\x00\x08\x07\x00\x00\x00\x00\x00"
        + (last_stream_id & 0x7FFFFFFF).to_bytes(4, "big")
        + int(code).to_bytes(4, "big")
    )


class Malformed(Exception):
    """A request HTTP/2 calls malformed (RFC 9113 §8.1.1): a stream error, PROTOCOL_ERROR."""


def field_error(name: bytes, value: bytes) -> str | None:
    """What RFC 9113 §8.2 forbids in a regular field line, or None.

    Names must be lower-case tokens (RFC 9110 §5.1: stricter than §8.2.1 alone, as our
    HTTP/1.1 parser is); values hold no NUL, CR or LF and no white space at either end.
    """
    if _TOKEN.fullmatch(name) is None:
        return f"bad field name {name!r}"
    if _VALUE.fullmatch(value) is None:
        return f"bad value for {name.decode('latin-1')}"
    if name in _HOP_BY_HOP:
        return f"connection-specific field {name.decode('latin-1')}"  # §8.2.2
    if name == b"te" and value.lower() != b"trailers":
        return "TE other than trailers"
    return None


def check_trailers(headers: list[tuple[bytes, bytes]]) -> None:
    """Malformed for a trailer section HTTP/2 forbids (no pseudo-header fields, §8.1)."""
    for name, value in headers:
        error = "pseudo-header field in trailers" if name[:1] == b":" else field_error(name, value)
        if error is not None:
            raise Malformed(error)


def request_head(headers: list[tuple[bytes, bytes]], limits: Limits) -> RequestHead:
    """A request's decoded header list -> RequestHead, in one pass.

    Malformed (RFC 9113 §8.1.1) for what HTTP/2 forbids: pseudo-header fields unknown,
    repeated or after a regular one, or missing (§8.3.1); field lines as ``field_error``
    says; more than one Host, or Host unlike :authority; a Content-Length that is no
    number. ProtocolError(431/414/501) to answer a well-formed request we refuse. Cookie
    lines are joined with "; " (§8.2.3), as one field line.
    """
    method = path = scheme = authority = host = protocol = None
    regular = False
    fields: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    content_length: int | None = None
    size = 0
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                raise Malformed(f"pseudo-header field {name!r} after a regular one")
            if _VALUE.fullmatch(value) is None:
                raise Malformed(f"bad value for {name!r}")
            if name == b":method" and method is None:
                method = value
            elif name == b":path" and path is None:
                path = value
            elif name == b":scheme" and scheme is None:
                scheme = value
            elif name == b":authority" and authority is None:
                authority = value
            elif name == b":protocol" and protocol is None:
                protocol = value
            else:
                raise Malformed(f"unknown or repeated pseudo-header field {name!r}")
            continue
        regular = True
        error = field_error(name, value)
        if error is not None:
            raise Malformed(error)
        size += len(name) + len(value) + 4  # as the HTTP/1.1 field line would count
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"host":
            if host is not None:
                raise Malformed("more than one Host")
            host = value
        elif name == b"content-length":
            if not value.isdigit() or (content_length is not None and int(value) != content_length):
                raise Malformed("bad Content-Length")
            if content_length is not None:
                continue
            content_length = int(value)
        fields.append((name, value))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    if method is None:
        raise Malformed("no :method")
    if authority is None:
        if host is None:
            raise Malformed("neither :authority nor Host")
        authority = host  # RFC 9113 §8.3.1: Host stands in when :authority is absent
    elif host is not None and host != authority:
        raise Malformed("Host unlike :authority")
    if method == b"CONNECT":
        if protocol is None and (scheme is not None or path is not None):
            raise Malformed("CONNECT with :scheme or :path")
        if protocol is not None and (scheme is None or not path):
            raise Malformed("extended CONNECT without :scheme or :path")  # RFC 8441 §4
        # RFC 9113 §8.5: CONNECT makes a tunnel, which a WSGI app cannot serve.
        raise ProtocolError("Not Implemented: CONNECT", 501)
    if protocol is not None or scheme is None or not path:
        raise Malformed(":protocol, or no :scheme or :path")
    if len(fields) > limits.max_header_count:
        raise ProtocolError("Request Header Fields Too Large: too many fields", 431)
    if size > limits.max_header_bytes:
        raise ProtocolError("Request Header Fields Too Large", 431)
    if len(path) > limits.max_request_line_bytes:
        raise ProtocolError("URI Too Long", 414)
    raw_path, _, query = path.partition(b"?")
    return RequestHead(
        method=method,
        target=path,
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
        if _VALUE.fullmatch(raw_value) is None:  # stripped above: only NUL, CR, LF left
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
