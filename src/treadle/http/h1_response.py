"""Sans-IO HTTP/1.1 responses: a WSGI status and header list -> the head's bytes and framing.

Pure layer: no sockets, no Twisted, no threads. It decides Content-Length or chunked,
keep-alive or close, and refuses heads that would desynchronise the client (a 1xx final
status, bad names or values), citing RFC 9112/9110 at each decision. The request side is
http/h1.py.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from http import HTTPStatus

from treadle.http.events import RequestHead

LAST_CHUNK = b"0\r\n\r\n"
# The answer when the app fails before its head is out, or gives an invalid head.
INTERNAL_ERROR = ("500 Internal Server Error", b"Internal Server Error\n")
ERROR_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# RFC 9112 §4. A WSGI app gives the final response only: 1xx would be taken by the client
# as interim and the real answer never come (RFC 9110 §15.2), so it is refused (a 500).
_STATUS = re.compile(r"[2-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.1 field-name
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_DROP = {"transfer-encoding", "keep-alive", "upgrade"}  # hop-by-hop, PEP 3333 forbids them
_status_lines: dict[str, str] = {}  # validated status -> "HTTP/1.1 ...\r\n" (few distinct)
_good_names: set[str] = set()  # validated header names; apps reuse a handful


@dataclass(slots=True)
class ResponsePlan:
    status: int  # the status code, as sent in the head
    head: bytes  # status line + headers + blank line, ready to write
    chunked: bool  # body must be chunk-encoded
    body_allowed: bool  # False for HEAD, 204, 304: the caller discards body bytes
    keep_alive: bool  # connection stays open after this response
    content_length: int | None  # the Content-Length sent, if any


def plan_response(
    request: RequestHead,
    status: str,
    headers: list[tuple[str, str]],
    *,
    body_length: int | None,
    date: bytes,
    closing: bool = False,
) -> ResponsePlan:
    """Frame a WSGI response (RFC 9112 §6.3); ValueError if status or headers are invalid.

    ``body_length`` is the whole body's size when the caller already holds it all.
    ``closing`` says the server will close anyway (shutdown, error).
    """
    line = _status_lines.get(status)
    if line is None:
        if type(status) is not str or _STATUS.fullmatch(status) is None:
            raise ValueError(f"invalid status line {status!r}")
        line = f"HTTP/1.1 {status}\r\n"
        if len(_status_lines) < 512:
            _status_lines[line[9:-2]] = line
    code = int(status[:3])
    lines = [line]
    app_length: str | None = None
    app_close = has_date = has_server = False
    for name, value in headers:
        if name not in _good_names:
            if type(name) is not str or _TOKEN.fullmatch(name) is None:
                raise ValueError(f"invalid header name {name!r}")
            if len(_good_names) < 1024:
                _good_names.add(name)
        if type(value) is not str or _BAD_VALUE.search(value) is not None:
            raise ValueError(f"invalid value for header {name}: {value!r}")
        # RFC 9110 §5.5: the field value excludes leading and trailing whitespace
        # (Django's SimpleCookie output starts with a space: "Set-Cookie:  csrftoken=").
        value = value.strip(" \t")
        lower = name.lower()
        if lower == "content-length":
            if not value.isdigit() or (app_length is not None and value != app_length):
                raise ValueError(f"invalid Content-Length {value!r}")
            app_length = value
            continue  # written back below, once, where the framing allows it
        elif lower == "connection":
            app_close = "close" in [t.strip() for t in value.lower().split(",")]
            continue  # Connection is ours to write
        elif lower in _DROP:
            continue
        elif lower == "date":
            has_date = True
        elif lower == "server":
            has_server = True
        lines.append(f"{name}: {value}\r\n")
    keep_alive = request.keep_alive and not closing and not app_close
    chunked = False
    length: int | None = None
    if request.method == b"HEAD" or code == 204 or code == 304:
        # RFC 9112 §6.3 rule 1: no body. RFC 9110 §8.6: never a Content-Length on 204;
        # on HEAD/304 the app's value describes the GET response and is kept.
        body_allowed = False
        if app_length is not None and code != 204:
            length = int(app_length)
        elif request.method == b"HEAD" and body_length and code != 204:
            length = body_length  # the app produced the GET body: say how long it is
    else:
        body_allowed = True
        if app_length is not None:
            length = int(app_length)
        elif body_length is not None:
            length = body_length
        elif request.http_version == "1.1":
            chunked = True
            lines.append("Transfer-Encoding: chunked\r\n")
        else:
            keep_alive = False  # RFC 9112 §6.3 rule 8: close-delimited for 1.0 clients
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    if not has_server:
        lines.append("Server: treadle\r\n")
    if keep_alive:
        if request.http_version == "1.0":
            lines.append("Connection: keep-alive\r\n")
    elif request.http_version == "1.1":
        lines.append("Connection: close\r\n")
    head = "".join(lines).encode("latin-1")  # UnicodeEncodeError is a ValueError
    head = head + b"\r\n" if has_date else head + b"Date: " + date + b"\r\n\r\n"
    return ResponsePlan(code, head, chunked, body_allowed, keep_alive, length)


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1); b"" for empty data, which would end it."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def error_response(status: int, message: str, *, date: bytes) -> bytes:
    """A complete short text/plain response that closes the connection."""
    body = (message + "\n").encode("utf-8")
    reason = HTTPStatus(status).phrase
    return (
        (
            f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n"
            "Server: treadle\r\n"
        ).encode("latin-1")
        + b"Date: "
        + date
        + b"\r\n\r\n"
        + body
    )


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds: float) -> bytes:
    """IMF-fixdate (RFC 9110 §5.6.7), e.g. b"Sun, 06 Nov 1994 08:49:37 GMT"."""
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    ).encode("ascii")
