"""Sans-IO HTTP/1.1 for the server side: request bytes -> events (responses: h1_response.py).

Pure layer over httptools (llhttp, strict mode): no sockets, no Twisted, no threads.
Every framing decision cites RFC 9112/9110; the parser raises ProtocolError(status)
and nothing else, so the caller answers with ``h1_response.error_response`` and closes.
"""

from __future__ import annotations

import re
from itertools import chain

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from treadle.config import Limits
from treadle.errors import ProtocolError
from treadle.http.chunked import ChunkedDecoder
from treadle.http.events import Data, EndOfMessage, Event, RequestHead

# Between requests, in a head, in a body llhttp reads (Content-Length), in a body we
# read (chunked; or an Upgrade request's), after a request that closes.
_IDLE, _HEAD, _BODY, _OWN_BODY, _CLOSED = range(5)
_BLANK = re.compile(rb"[\r\n]*")
_CR_LF = frozenset(b"\r\n")
_HEAD_END = b"\r\n\r\n"
# RFC 9110 §9.1: a method is a token. Methods llhttp does not know (WebDAV, QUERY,
# -BLARGH) reach the app; ones with lowercase letters are refused as gunicorn, waitress
# and nginx refuse them (methods are case-sensitive and all registered ones are upper).
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Z]+")
_TOKEN_RUN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
_MAX_METHOD_BYTES = 64
_STAND_IN = b"GET"  # what llhttp is shown in place of a method it does not know
_REQUEST_LINE = re.compile(rb"[^ ]+ [^ ]+ HTTP/([0-9])\.([0-9])")  # RFC 9112 §3
_HOST = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%:\[\]]*")  # RFC 3986 host [":" port]
_good_hosts: set[bytes] = set()  # Host values that passed _HOST; a site sees a few
_ABSOLUTE = re.compile(rb"(?i:https?)://([^/?#]*)(.*)", re.S)
_VERSIONS = {"1.1", "1.0"}


class H1Parser:
    """Turn the bytes of one connection into RequestHead, Data*, EndOfMessage, ...

    Called on the reactor thread only. ``receive_data(b"")`` signals EOF. If an error
    follows events produced by the same call, the events are returned, the error is
    kept in ``error`` and the next call raises it: check ``error`` after handling them.

    We find each request's boundaries ourselves (the head ends at the first CRLFCRLF, as
    field lines hold no CR or LF; the body by its framing) and show llhttp one head, or
    one Content-Length body, at a time. So we always know where a request starts: a
    method llhttp does not know is swapped for a stand-in it does, a chunked body is
    decoded by http/chunked.py, and no error is taken for a neighbour's.
    """

    __slots__ = (
        "_parser", "_events", "_state", "_url", "_headers", "_head", "_head_len", "_tail",
        "_blank", "_method", "_scanning", "_substituted", "_left", "_own", "_keep_alive",
        "_pending", "_error", "_limits", "_max_line", "_max_count", "_max_header_bytes",
        "_max_body", "_head_limit",
    )  # fmt: skip

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._max_line = limits.max_request_line_bytes
        self._max_count = limits.max_header_count
        self._max_header_bytes = limits.max_header_bytes
        self._max_body = limits.max_body_bytes
        # A head (or blank lines before it) longer than this is refused before it ends,
        # even while httptools buffers it internally (one long field value, say).
        self._head_limit = limits.max_request_line_bytes + limits.max_header_bytes
        self._events: list[Event] = []
        self._state = _IDLE
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: list[bytes] = []  # this head's bytes so far, kept to re-read on an error
        self._head_len = self._blank = self._left = 0
        self._tail = b""  # the head's last bytes, to see a CRLFCRLF split across calls
        self._method: bytes | None = None  # the real method while llhttp sees _STAND_IN
        self._scanning = self._substituted = False
        self._own: ChunkedDecoder | None = None  # None in an Upgrade body: _left counts it
        self._keep_alive = True
        self._pending: ProtocolError | None = None
        self._error: ProtocolError | None = None
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
        state = self._state
        if not data:
            if state in (_IDLE, _CLOSED):
                return events
            raise self._die(ProtocolError("connection closed in the middle of a request"))
        if state == _CLOSED:
            # RFC 9112 §9.6: after a request that closes, no further request is processed.
            return events
        try:
            self._consume(data)
        except ProtocolError as error:
            self._die(error)
            if events:
                return events
            raise
        return events

    def _consume(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _IDLE:
                if data[pos] in _CR_LF:
                    # RFC 9112 §2.2: empty lines before a request line are ignored (bounded).
                    blank = _BLANK.match(data, pos).end()  # type: ignore[union-attr]
                    self._blank += blank - pos
                    if self._blank > self._head_limit:
                        raise ProtocolError("too many empty lines before a request")
                    pos = blank
                    if pos == end:
                        return
                self._state = _HEAD
                self._head.clear()
                self._head_len = self._blank = 0
                self._tail = b""
                self._scanning = self._substituted = False
                pos = self._read_head(data, pos)
            elif state == _HEAD:
                pos = self._read_head(data, pos)
            elif state == _BODY:
                take = min(self._left, end - pos)
                if not take:  # llhttp did not end a request that has no body left
                    raise ProtocolError("malformed request")
                self._llhttp(data[pos : pos + take] if pos or take < end else data)
                self._left -= take
                pos += take
            elif state == _OWN_BODY:
                pos = self._read_own_body(data, pos)
            else:  # _CLOSED: RFC 9112 §9.6, the rest is ignored
                return

    def _read_head(self, data: bytes, pos: int) -> int:
        """Feed llhttp this head's bytes in ``data[pos:]``, never a byte past its end."""
        tail = self._tail
        ended = False
        if tail:
            seam = (tail + data[pos : pos + 3]).find(_HEAD_END)
            if seam >= 0:
                stop = pos + seam + 4 - len(tail)
                ended = True
        if not ended:
            stop = data.find(_HEAD_END, pos)
            if stop < 0:
                stop = len(data)
            else:
                stop += 4
                ended = True
        room = self._head_limit + 1 - self._head_len
        if stop - pos > room:  # llhttp sees no more than the limit allows, however cut
            stop = pos + room
            ended = False
        piece = data[pos:stop] if pos or stop < len(data) else data
        self._head.append(piece)
        self._head_len += len(piece)
        if not ended:
            self._tail = piece[-3:] if len(piece) >= 3 else (tail + piece)[-3:]
        if self._scanning:
            self._rescue(None)
        else:
            self._feed_head(piece)
        if self._state == _HEAD:
            if ended and not self._scanning:
                # llhttp saw our whole head yet did not end it (it waits for the rest of
                # HTTP/2's preface, say): it reads it otherwise.
                _check_version(b"".join(self._head))
                raise ProtocolError("malformed request head")
            if self._head_len > self._head_limit:
                raise ProtocolError("request head too long", 431)
        return stop

    def _feed_head(self, piece: bytes) -> None:
        try:
            self._parser.feed_data(piece)
        except HttpParserUpgrade:
            # llhttp pauses after an Upgrade request's head (we only feed it that much);
            # httptools resumes it. We never switch protocols: the request is served as an
            # ordinary one (RFC 9110 §7.8 lets a server ignore Upgrade).
            pass
        except HttpParserError as exc:
            if self._pending is not None:
                raise self._pending from None
            self._rescue(exc)

    def _rescue(self, exc: HttpParserError | None) -> None:
        """llhttp refused this head: decide by our own reading of its request line.

        A method that is no token (or has lowercase letters) is 400, a line over the limit
        414, a well-formed line with another version 505. A method llhttp does not know is
        shown to it as _STAND_IN (once per head); anything else is 400.
        """
        head = b"".join(self._head)
        method_end = _TOKEN_RUN.match(head).end()  # type: ignore[union-attr]
        method = head[:method_end]
        if method_end == len(head) and method_end <= _MAX_METHOD_BYTES:
            self._scanning = True  # the method may go on: wait for the rest of it
            return
        if (
            head[method_end : method_end + 1] != b" "
            or method_end > _MAX_METHOD_BYTES
            or _METHOD.fullmatch(method) is None
        ):
            raise ProtocolError("invalid method")
        # Each check below is decided on bytes every cut of the reads has in hand at that
        # point, so the answer does not depend on the segmentation.
        line_end = head.find(b"\r\n")
        if (len(head) if line_end < 0 else line_end + 2) > self._max_line:
            raise ProtocolError("request line too long", 414)  # RFC 9112 §3
        if line_end < 0:  # a version llhttp refused may still be well formed: wait for it
            self._scanning = True
            return
        _check_version(head)
        if self._substituted:
            raise ProtocolError(f"malformed request: {exc}")
        self._substituted = True
        self._scanning = False
        self._method = method
        self._parser = HttpRequestParser(self)
        self._feed_head(_STAND_IN + head[method_end:])

    def _read_own_body(self, data: bytes, pos: int) -> int:
        decoder = self._own
        if decoder is None:  # an Upgrade request's Content-Length body
            take = min(self._left, len(data) - pos)
            self._events.append(Data(data[pos : pos + take] if pos or take < len(data) else data))
            self._left -= take
            pos += take
            if self._left:
                return pos
            trailers: list[tuple[bytes, bytes]] = []
        else:
            pos = decoder.feed(data, pos, self._events)
            if not decoder.done:
                return pos
            trailers = decoder.trailers
        # llhttp stopped at the head (chunked) or skipped the body (Upgrade): a fresh one
        # starts at the next request.
        self._own = None
        self._parser = HttpRequestParser(self)
        self._message_done(trailers)
        return pos

    def _message_done(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self._events.append(EndOfMessage(trailers))
        self._state = _IDLE if self._keep_alive else _CLOSED

    def _llhttp(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except HttpParserError as exc:
            if self._pending is not None:
                raise self._pending from None
            raise ProtocolError(f"malformed request: {exc}") from None

    def _die(self, error: ProtocolError) -> ProtocolError:
        self._error = error
        return error

    def _reject(self, message: str, status: int = 400) -> ProtocolError:
        self._pending = error = ProtocolError(message, status)
        return error

    # httptools callbacks (called from inside feed_data) ----------------------------

    def on_message_begin(self) -> None:
        if self._state != _HEAD:  # llhttp ended a request where we did not: refuse it
            raise self._reject("malformed request")
        self._url = b""
        self._headers = []

    def on_url(self, part: bytes) -> None:
        url = self._url + part
        if len(url) + 16 > self._max_line:
            method = self._method or self._parser.get_method()
            if len(method) + len(url) + 12 > self._max_line:  # 2 SP, HTTP/1.1, CRLF
                raise self._reject("request line too long", 414)
        self._url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Limits are checked once per block (_check_fields); meanwhile _head_limit bounds
        # what an unfinished block can hold.
        self._headers.append((name, value.rstrip(b" \t")))  # llhttp strips only leading OWS

    def _check_fields(self, fields: list[tuple[bytes, bytes]]) -> None:
        if len(fields) > self._max_count:
            raise self._reject("too many header fields", 431)
        # Each field line is name ": " value CRLF.
        if sum(map(len, chain.from_iterable(fields))) + 4 * len(fields) > self._max_header_bytes:
            raise self._reject("header fields too large", 431)

    def on_headers_complete(self) -> None:
        if self._state != _HEAD:
            raise self._reject("malformed request")
        head = self._make_head()
        self._events.append(head)
        self._method = None
        if head.chunked:
            self._state = _OWN_BODY
            self._own = ChunkedDecoder(self._limits)
        elif head.content_length and self._parser.should_upgrade():
            self._state = _OWN_BODY  # llhttp skips an Upgrade request's body: we read it
            self._left = head.content_length
        elif head.content_length:
            self._state = _BODY
            self._left = head.content_length
        else:
            self._state = _BODY  # no body: on_message_complete follows at once

    def on_body(self, data: bytes) -> None:
        self._events.append(Data(data))

    def on_message_complete(self) -> None:
        if self._state == _BODY:
            self._message_done([])
        # else: an Upgrade request with a body, which llhttp skipped; _read_own_body ends it

    def _make_head(self) -> RequestHead:
        parser = self._parser
        version = parser.get_http_version()
        if version not in _VERSIONS:
            raise self._reject(f"HTTP/{version} is not supported", 505)
        method = self._method or parser.get_method()
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
        self._keep_alive = keep_alive = parser.should_keep_alive()  # RFC 9112 §9.3
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


def _check_version(head: bytes) -> int:
    """Raise 505 if the head's request line is well formed but not HTTP/1.x; return where
    the line ends (-1 while it has not)."""
    line_end = head.find(b"\r\n")
    if line_end >= 0:
        line = _REQUEST_LINE.fullmatch(head, 0, line_end)
        if line is not None and line[1] + b"." + line[2] not in (b"1.0", b"1.1"):
            # RFC 9110 §15.6.6: 505 for a version we do not serve (HTTP/2's preface
            # "PRI * HTTP/2.0" included).
            raise ProtocolError("HTTP version not supported", 505)
    return line_end
