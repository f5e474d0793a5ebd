"""Sans-IO HTTP/1.1 for the server side: request bytes -> events, response head -> bytes.

Pure layer over httptools (llhttp, strict mode): no sockets, no Twisted, no threads.
Every framing decision cites RFC 9112/9110; the parser raises ProtocolError(status)
and nothing else, so the caller answers with ``error_response`` and closes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from itertools import chain

from httptools import (
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from treadle.config import Limits
from treadle.errors import ProtocolError
from treadle.http.events import Data, EndOfMessage, Event, RequestHead

_IDLE, _HEAD, _BODY, _CLOSED = range(4)
# Bytes kept from the start of a request to tell a malformed method (400) from a
# well-formed one llhttp does not know (501); longer methods are refused.
_LEAD_BYTES = 64
_TOKEN_RUN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
_HOST = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%:\[\]]*")  # RFC 3986 host [":" port]
_good_hosts: set[bytes] = set()  # Host values that passed _HOST; a site sees a few
_ABSOLUTE = re.compile(rb"(?i:https?)://([^/?#]*)(.*)", re.S)
_VERSIONS = {"1.1", "1.0"}


class H1Parser:
    """Turn the bytes of one connection into RequestHead, Data*, EndOfMessage, ...

    Called on the reactor thread only. ``receive_data(b"")`` signals EOF. If an error
    follows events produced by the same call, the events are returned, the error is
    kept in ``error`` and the next call raises it: check ``error`` after handling them.
    """

    __slots__ = (
        "_parser", "_events", "_state", "_url", "_headers", "_body_bytes",
        "_chunked", "_keep_alive", "_completed", "_pending", "_error", "_lead", "_lead_len",
        "_scan", "_stalled", "_upgrade_body", "_synthetic", "_max_line", "_max_count",
        "_max_header_bytes", "_max_body", "_stall_limit",
    )  # fmt: skip

    def __init__(self, limits: Limits) -> None:
        self._max_line = limits.max_request_line_bytes
        self._max_count = limits.max_header_count
        self._max_header_bytes = limits.max_header_bytes
        self._max_body = limits.max_body_bytes
        # Bytes that produce no event (a head, chunk sizes, trailers) are bounded even
        # when httptools buffers them internally (one long field value, say).
        self._stall_limit = limits.max_request_line_bytes + limits.max_header_bytes
        self._events: list[Event] = []
        self._state = _IDLE
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body_bytes = self._stalled = self._lead_len = 0
        self._chunked = self._completed = self._synthetic = False
        self._keep_alive = True
        self._pending: ProtocolError | None = None
        self._error: ProtocolError | None = None
        self._lead: list[bytes] | None = []  # None: where this request began is unknown
        self._scan: bytes | None = None
        self._upgrade_body: bytes | None = None
        self._parser = HttpRequestParser(self)

    @property
    def error(self) -> ProtocolError | None:
        """The error that ended this connection's parsing, if any."""
        return self._error

    def close(self) -> None:
        """The connection is gone: drop httptools' parser, which holds our bound callbacks.

        That is a reference cycle; broken here, the parser and the last events (body
        bytes) are freed by reference counting instead of waiting for the cyclic collector.
        """
        self._parser = None  # type: ignore[assignment]
        self._events = []

    def receive_data(self, data: bytes) -> list[Event]:
        if self._error is not None:
            raise self._error
        events: list[Event] = []
        self._events = events
        if self._scan is not None:
            return self._scan_method(data, not data)
        state = self._state
        if not data:
            if state in (_IDLE, _CLOSED):
                return events
            raise self._die(ProtocolError("connection closed in the middle of a request"))
        if state == _CLOSED:
            # RFC 9112 §9.6: after a request that closes, no further request is processed.
            return events
        lead = self._lead
        if lead is not None and self._lead_len < _LEAD_BYTES:
            lead.append(data)
            self._lead_len += len(data)
        self._completed = False
        try:
            self._feed(data)
        except HttpParserError as exc:
            return self._failed(exc)
        if events:
            self._stalled = 0
        else:
            self._stalled += len(data)
            if self._stalled > self._stall_limit:
                status = 400 if self._state == _IDLE else 431
                raise self._die(ProtocolError("request head or chunk metadata too long", status))
        if self._state == _IDLE:
            self._lead, self._lead_len = [], 0
        elif self._completed:
            self._lead = None
        return events

    def _feed(self, data: bytes) -> None:
        parser = self._parser
        while True:
            try:
                parser.feed_data(data)
                return
            except HttpParserUpgrade as exc:
                # We never switch protocols: an Upgrade request (and its body, which
                # httptools skips) is served as an ordinary request, then parsing goes on.
                data = data[exc.args[0] :]
                if self._upgrade_body is not None:
                    data = self._upgrade_body + data
                    self._upgrade_body = None
                    self._synthetic = True
                if not data or self._state == _CLOSED:
                    return

    def _failed(self, exc: HttpParserError) -> list[Event]:
        events = self._events
        if self._state == _CLOSED:
            return events  # bytes after a closing request are ignored, not an error
        if self._pending is not None:
            error = self._pending
        elif isinstance(exc, HttpParserInvalidMethodError) and str(exc).startswith("Invalid"):
            if self._lead is None or self._completed:
                error = ProtocolError("invalid method")
            else:
                self._scan = b""
                return self._scan_method(b"".join(self._lead), False)
        else:
            error = _translate(exc)
        self._die(error)
        if events:
            return events
        raise error

    def _scan_method(self, data: bytes, eof: bool) -> list[Event]:
        """Wait until an unknown method is complete: a token is 501, anything else 400."""
        buf = self._scan = (self._scan or b"") + data[:_LEAD_BYTES]
        window = buf[:_LEAD_BYTES].lstrip(b"\r\n")
        end = _TOKEN_RUN.match(window).end()  # type: ignore[union-attr]
        if end < len(window):
            if end and window[end] == 0x20:
                method = window[:end].decode("ascii")
                raise self._die(ProtocolError(f"method {method} is not implemented", 501))
            raise self._die(ProtocolError("invalid method"))
        if len(buf) >= _LEAD_BYTES or eof:
            raise self._die(ProtocolError("invalid method"))  # too long, or cut short
        return []

    def _die(self, error: ProtocolError) -> ProtocolError:
        self._error = error
        self._scan = None
        return error

    def _reject(self, message: str, status: int = 400) -> ProtocolError:
        self._pending = error = ProtocolError(message, status)
        return error

    # httptools callbacks (called from inside feed_data) ----------------------------

    def on_message_begin(self) -> None:
        self._state = _HEAD
        self._url = b""
        self._headers = []
        self._body_bytes = 0

    def on_url(self, part: bytes) -> None:
        url = self._url + part
        if len(url) + 16 > self._max_line:
            method = self._parser.get_method()
            if len(method) + len(url) + 12 > self._max_line:  # 2 SP, HTTP/1.1, CRLF
                raise self._reject("request line too long", 414)
        self._url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Limits are checked once per block (_check_fields); meanwhile the stall guard
        # in receive_data bounds what an unfinished block can hold.
        self._headers.append((name, value.rstrip(b" \t")))  # llhttp strips only leading OWS

    def _check_fields(self, fields: list[tuple[bytes, bytes]]) -> None:
        if len(fields) > self._max_count:
            raise self._reject("too many header fields", 431)
        # Each field line is name ": " value CRLF.
        if sum(map(len, chain.from_iterable(fields))) + 4 * len(fields) > self._max_header_bytes:
            raise self._reject("header fields too large", 431)

    def on_headers_complete(self) -> None:
        self._state = _BODY
        if self._synthetic:  # the stand-in head for an Upgrade request's body
            self._synthetic = False
            self._headers = []
            return
        self._events.append(self._make_head())
        self._headers = []  # now collects trailers

    def on_body(self, data: bytes) -> None:
        if self._chunked:
            self._body_bytes += len(data)
            if self._body_bytes > self._max_body:
                raise self._reject("request body too large", 413)
        self._events.append(Data(data))

    def on_message_complete(self) -> None:
        if self._upgrade_body is not None:
            return  # the body follows the Upgrade pause; see _feed
        trailers = self._headers
        if trailers:
            self._check_fields(trailers)
        self._events.append(EndOfMessage(trailers))
        self._state = _IDLE if self._keep_alive else _CLOSED
        self._completed = True

    def _make_head(self) -> RequestHead:
        parser = self._parser
        version = parser.get_http_version()
        if version not in _VERSIONS:
            raise self._reject(f"HTTP/{version} is not supported", 505)
        method = parser.get_method()
        if method == b"CONNECT":
            # RFC 9110 §9.3.6: CONNECT asks for a tunnel; an origin server does not offer
            # one. 501 (not 405, which would need an Allow list, §15.5.6).
            raise self._reject("CONNECT is not implemented", 501)
        headers = self._headers
        self._check_fields(headers)
        host: bytes | None = None
        content_length: bytes | None = None
        transfer_encoding: bytes | None = None
        hosts = 0
        expect = False
        for name, value in headers:
            size = len(name)  # look only at names whose length matches one we need
            if size == 4:
                if name.lower() == b"host":
                    host = value
                    hosts += 1
            elif size == 14:
                if name.lower() == b"content-length":
                    content_length = value
            elif size == 17:
                if name.lower() == b"transfer-encoding":
                    te = transfer_encoding  # RFC 9110 §5.3: repeated fields form one list
                    transfer_encoding = value if te is None else te + b"," + value
            elif size == 6 and name.lower() == b"expect":
                expect = value.lower() == b"100-continue"
        # RFC 9112 §3.2: 400 for a 1.1 request without Host, any request with several,
        # or one whose value is not a valid host.
        if hosts != 1 and (hosts or version == "1.1"):
            raise self._reject("exactly one Host header is required")
        if host and host not in _good_hosts:
            if _HOST.fullmatch(host) is None:
                raise self._reject("invalid Host header")
            if len(_good_hosts) < 256:
                _good_hosts.add(host)
        url = self._url
        authority = None
        if url[:1] == b"/":
            rest = url
        elif url == b"*":
            if method != b"OPTIONS":  # RFC 9112 §3.2.4: asterisk-form is for OPTIONS only
                raise self._reject("asterisk-form target outside OPTIONS")
            rest = url
        else:
            match = _ABSOLUTE.fullmatch(url)  # RFC 9112 §3.2.2: absolute-form
            if match is None or not match[1] or b"@" in match[1]:
                # RFC 9110 §4.2.1/§4.2.4: empty host or userinfo makes the URI invalid.
                raise self._reject("invalid request target")
            authority, rest = match[1], match[2] or b"/"
        if b"#" in rest:
            rest = rest[: rest.index(b"#")]
        path, _, query = rest.partition(b"?")
        chunked = False
        length = None
        if transfer_encoding is not None:
            # llhttp already refused a final coding other than chunked and TE with CL.
            if version == "1.0":  # RFC 9112 §6.1: TE in 1.0 means faulty framing
                raise self._reject("Transfer-Encoding in an HTTP/1.0 request")
            codings = [c for c in transfer_encoding.split(b",") if c.strip()]
            if len(codings) != 1:  # RFC 9112 §6.1: 501 for codings we cannot decode
                raise self._reject("unsupported transfer coding", 501)
            chunked = True
        elif content_length is not None:
            length = int(content_length)  # llhttp checked: digits only, no duplicates
            if length > self._max_body:
                raise self._reject("request body too large", 413)
        self._chunked = chunked
        self._keep_alive = keep_alive = parser.should_keep_alive()  # RFC 9112 §9.3
        if parser.should_upgrade() and (chunked or length):
            framing = b"Content-Length: %d" % (length or 0)
            if chunked:
                framing = b"Transfer-Encoding: chunked"
            self._upgrade_body = b"PUT / HTTP/1.1\r\n" + framing + b"\r\n\r\n"
        return RequestHead(
            method,
            url,
            path or b"/",
            query,
            version,
            headers,
            keep_alive,
            expect and version == "1.1",  # RFC 9110 §10.1.1: ignore it from 1.0 clients
            length,
            chunked,
            authority,
        )


def _translate(exc: HttpParserError) -> ProtocolError:
    reason = str(exc)
    if reason == "Invalid HTTP version" or reason.startswith("Pause on PRI"):
        return ProtocolError("HTTP version not supported", 505)  # well-formed, not 1.x
    if reason == "Invalid method for HTTP/x.x request":
        return ProtocolError("method is not implemented", 501)  # an RTSP-only token
    return ProtocolError(f"malformed request: {reason}")


# Response side: pure functions from a WSGI status and header list to bytes -----------

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
