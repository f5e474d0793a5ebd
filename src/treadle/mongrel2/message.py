"""Mongrel2's handler protocol: request messages -> values, responses -> messages.

Pure layer: bytes in, values out; no sockets, no ZeroMQ, no Twisted. Mongrel2 (1.8 to
1.13, src/request.c and src/handler_parser.rl) sends ``UUID ID PATH SIZE:HEADERS,SIZE:BODY,``
with the headers as a tnetstring dict (``}``) or JSON (``,``); client header names arrive
lower-cased and Mongrel2's own (METHOD, VERSION, URI, PATH, QUERY, PATTERN, URL_SCHEME,
REMOTE_ADDR) in capitals, so a client cannot forge those. A handler answers
``UUID SIZE:ID ID ...,`` + space + the raw bytes for the client; an empty body closes the
client's connection. Anything that does not parse raises MessageError.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from treadle.http.events import RequestHead
from treadle.mongrel2 import tnetstring

# Mongrel2's limits.handler_targets default (src/handler.c): more ids in one message and
# Mongrel2 drops the whole message.
MAX_IDS_PER_MESSAGE = 128
UPLOAD_START = b"x-mongrel2-upload-start"
UPLOAD_DONE = b"x-mongrel2-upload-done"

_SENDER = re.compile(rb"[A-Za-z0-9-]+")  # handler_parser.rl: UUID = (alpha | digit | '-')+
_CONN_ID = re.compile(rb"[0-9]{1,10}")  # a uint32 in Mongrel2
_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}
# Mongrel2's own keys carry capitals; client names do not (bytes.lower() is ASCII only).
_NOTICES = (UPLOAD_START, UPLOAD_DONE)


class MessageError(ValueError):
    """A message from Mongrel2 that cannot be used (logged and dropped)."""


@dataclass(slots=True)
class Request:
    """One HTTP request from Mongrel2, headers in arrival order (lists expanded)."""

    sender: bytes
    conn_id: bytes
    path: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    # name -> first value, made on the first get() (a request is looked up a dozen times)
    index: dict[bytes, bytes] = field(default_factory=dict, compare=False, repr=False)

    def header_index(self) -> dict[bytes, bytes]:
        """Header name (exact case) -> its first value; made once, on the first call."""
        index = self.index
        if not index and self.headers:
            for key, value in self.headers:
                if key not in index:
                    index[key] = value
        return index

    def get(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (exact case), or None."""
        return self.header_index().get(name)

    @property
    def upload_start(self) -> bytes | None:
        return self.get(UPLOAD_START)

    @property
    def upload_done(self) -> bytes | None:
        return self.get(UPLOAD_DONE)


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The client of connection ``conn_id`` went away."""

    sender: bytes
    conn_id: bytes


@dataclass(frozen=True, slots=True)
class Control:
    """A JSON message that is not a request (credits, or one of a JSON socket)."""

    sender: bytes
    conn_id: bytes
    kind: str


@dataclass(frozen=True, slots=True)
class Origin:
    """What Mongrel2 says about a request beyond its head: for the environ."""

    scheme: str  # wsgi.url_scheme, from URL_SCHEME
    peer: tuple[str, int] | None  # REMOTE_ADDR (port unknown: 0)
    script_name: str  # the route's prefix (PATTERN up to its first "("), or ""


Message = Request | Disconnect | Control


def _netstring(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(payload, tag, rest) of ``SIZE:payload<tag>...``."""
    colon = data.find(b":", 0, tnetstring.MAX_LENGTH_DIGITS + 1)
    digits = data[:colon]
    if colon <= 0 or not digits.isdigit():
        raise MessageError("a netstring length is missing")
    end = colon + 1 + int(digits)
    if end >= len(data):
        raise MessageError("a netstring is shorter than its length says")
    return data[colon + 1 : end], data[end : end + 1], data[end + 1 :]


def _as_bytes(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if type(value) is str:
        try:
            return value.encode("latin-1")  # the JSON was read as latin-1: byte for byte
        except UnicodeEncodeError:
            return value.encode("utf-8")  # a \\u escape past U+00FF
    raise MessageError(f"a header value is a {type(value).__name__}, not a string")


def _tnet_string(data: bytes, start: int, limit: int) -> tuple[bytes, int, int]:
    """(payload, tag byte, end) of the tnetstring at ``start``: one flat step, no recursion."""
    colon = data.find(b":", start, min(start + 10, limit))
    digits = data[start:colon]
    if colon <= start or not digits.isdigit():
        raise MessageError("headers: a tnetstring length is missing")
    begin = colon + 1
    end = begin + int(digits)
    if end >= limit:
        raise MessageError("headers: a tnetstring is shorter than its length says")
    return data[begin:end], data[end], end + 1


def _tnet_headers(payload: bytes) -> list[tuple[bytes, bytes]]:
    """A tnetstring dict of header names to strings or lists of strings, in order.

    The general parser (tnetstring.py) costs a call per item; headers are parsed for every
    request, so this walks them in one loop. Other value types are refused.
    """
    headers: list[tuple[bytes, bytes]] = []
    position, limit = 0, len(payload)
    while position < limit:
        name, tag, position = _tnet_string(payload, position, limit)
        if tag != 44 or position >= limit:  # ","
            raise MessageError("headers: a name that is not a string, or no value")
        value, tag, position = _tnet_string(payload, position, limit)
        if tag == 44:
            headers.append((name, value))
        elif tag == 93:  # "]": a repeated header
            inner, inner_limit = 0, len(value)
            while inner < inner_limit:
                item, item_tag, inner = _tnet_string(value, inner, inner_limit)
                if item_tag != 44:
                    raise MessageError("headers: a list item that is not a string")
                headers.append((name, item))
        else:
            raise MessageError(f"headers: a value of type {bytes([tag])!r}")
    return headers


def _headers(payload: bytes, tag: bytes) -> list[tuple[bytes, bytes]]:
    if tag == b"}":
        return _tnet_headers(payload)
    elif tag == b",":
        try:
            # latin-1: every byte is one character, so raw bytes in values survive.
            raw = json.loads(payload.decode("latin-1"))
        except ValueError as error:
            raise MessageError(f"headers: bad JSON: {error}") from None
        if type(raw) is not dict:
            raise MessageError("headers: JSON is not an object")
    else:
        raise MessageError(f"headers: unknown encoding {tag!r}")
    try:
        # The common case in one comprehension: every value a string of bytes < 256.
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in raw.items()]
    except (AttributeError, UnicodeEncodeError):
        # A list (a repeated header), a \u escape past U+00FF, or not a string.
        return _json_headers(raw)


def _json_headers(raw: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """Every JSON header value, lists expanded; MessageError for what is not a string."""
    headers: list[tuple[bytes, bytes]] = []
    for key, value in raw.items():
        name = _as_bytes(key)
        if type(value) is list:
            headers.extend((name, _as_bytes(item)) for item in value)
        else:
            headers.append((name, _as_bytes(value)))
    return headers


def parse_message(data: bytes) -> Message:
    """One message from Mongrel2's PUSH socket; MessageError if it is malformed."""
    parts = data.split(b" ", 3)
    if len(parts) != 4:
        raise MessageError("fewer than four space-separated fields")
    sender, conn_id, path, rest = parts
    if _SENDER.fullmatch(sender) is None:
        raise MessageError(f"bad sender {sender[:40]!r}")
    if _CONN_ID.fullmatch(conn_id) is None:
        raise MessageError(f"bad connection id {conn_id[:20]!r}")
    payload, tag, rest = _netstring(rest)
    headers = _headers(payload, tag)
    body, body_tag, rest = _netstring(rest)
    if body_tag != b"," or rest:
        raise MessageError("the body netstring is not terminated by ',' at the end")
    request = Request(sender, conn_id, path, headers, body)
    if request.get(b"METHOD") == b"JSON":
        try:
            kind = json.loads(body.decode("latin-1")).get("type", "")
        except (ValueError, AttributeError):
            kind = ""
        if kind == "disconnect":
            return Disconnect(sender, conn_id)
        return Control(sender, conn_id, str(kind))
    return request


_PEERS: dict[bytes, tuple[str, int] | None] = {}  # address text -> parsed (bounded)
_PEERS_MAX = 4096


def _peer(request: Request) -> tuple[str, int] | None:
    """REMOTE_ADDR (Mongrel2 >= 1.9), else x-forwarded-for as Mongrel2 sets it.

    Mongrel2 replaces any x-forwarded-for the client sent with the socket's address
    (src/connection.c, Request_set(..., replace=1)), so one address is trusted; a list
    did not come from Mongrel2 and is not used.
    """
    for name in (b"REMOTE_ADDR", b"x-forwarded-for"):
        value = request.get(name)
        if value is None:
            continue
        peer = _PEERS.get(value, False)
        if peer is False:
            try:
                peer = (str(ipaddress.ip_address(value.decode("ascii").strip())), 0)
            except (ValueError, UnicodeDecodeError):
                peer = None
            if len(_PEERS) < _PEERS_MAX:
                _PEERS[value] = peer
        if peer is not None:
            return peer  # type: ignore[return-value]
    return None


def _script_name(pattern: bytes | None, path: bytes) -> str:
    """The route's literal prefix (Mongrel2 routes on PATTERN up to its first "(",
    src/routing.c) when the path continues it at a segment boundary; else ""."""
    if not pattern:
        return ""
    prefix = pattern.split(b"(", 1)[0].rstrip(b"/")
    if not prefix or b"%" in prefix or not path.startswith(prefix):
        return ""
    if len(path) > len(prefix) and path[len(prefix) : len(prefix) + 1] != b"/":
        return ""  # "/app" routes "/apple" too: that is not a mount point
    return prefix.decode("latin-1")


def request_head(request: Request) -> tuple[RequestHead, Origin]:
    """The HTTP request (head and origin) a Request carries; MessageError if not HTTP."""
    index = request.header_index()
    get = index.get
    method = get(b"METHOD")
    version = _VERSIONS.get(get(b"VERSION") or b"")
    uri = get(b"URI")
    path = get(b"PATH") or request.path
    if not method or version is None or not uri or not path.startswith(b"/"):
        raise MessageError("not an HTTP/1.x request (METHOD, VERSION, URI or PATH missing)")
    # The client's fields: lower-case names, less the upload notices (they name files on
    # Mongrel2's disk and are for the handler, not the app).
    fields = [
        (name, value)
        for name, value in request.headers
        if name.lower() == name and name not in _NOTICES  # no capital: the client's
    ]
    if b"connection" in index:
        connection = b",".join(v for n, v in fields if n == b"connection").lower()
        tokens = {token.strip() for token in connection.split(b",")}
        # RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
        keep_alive = b"close" not in tokens if version == "1.1" else b"keep-alive" in tokens
    else:
        keep_alive = version == "1.1"
    length = get(b"content-length")
    content_length = int(length) if length is not None and length.isdigit() else None
    head = RequestHead(
        method=method,
        target=uri,
        path=path,
        query=get(b"QUERY") or b"",
        http_version=version,
        headers=fields,
        keep_alive=keep_alive,
        content_length=content_length,
    )
    scheme = "https" if get(b"URL_SCHEME") == b"https" else "http"
    return head, Origin(scheme, _peer(request), _script_name(get(b"PATTERN"), path))


def response_messages(sender: bytes, conn_ids: Sequence[bytes], data: bytes) -> list[bytes]:
    """``data`` for each client in ``conn_ids``: one message per 128 ids.

    An empty ``data`` tells Mongrel2 to close those clients' connections.
    """
    if _SENDER.fullmatch(sender) is None:
        raise ValueError(f"bad sender {sender!r}")
    messages = []
    for start in range(0, len(conn_ids), MAX_IDS_PER_MESSAGE):
        ids = b" ".join(conn_ids[start : start + MAX_IDS_PER_MESSAGE])
        messages.append(b"%s %d:%s, %s" % (sender, len(ids), ids, data))
    return messages


def request_message(
    sender: bytes,
    conn_id: bytes,
    path: bytes,
    headers: dict[bytes, Any],
    body: bytes,
    *,
    json_headers: bool = False,
) -> bytes:
    """A request message as Mongrel2 frames it (for tests and the benchmark's fake server)."""
    if json_headers:
        text = json.dumps(
            {
                k.decode("latin-1"): (
                    [i.decode("latin-1") for i in v] if type(v) is list else v.decode("latin-1")
                )
                for k, v in headers.items()
            }
        ).encode("latin-1")
        encoded = b"%d:%s," % (len(text), text)
    else:
        encoded = tnetstring.dumps(headers)
    return b"%s %s %s %s%d:%s," % (sender, conn_id, path, encoded, len(body), body)
