"""Decoding a chunked request body (RFC 9112 §7.1): bytes -> Data events, then trailers.

Pure layer: no I/O, no Twisted, no threads. http/h1.py hands it the bytes after a
chunked request's head; it raises ProtocolError(status) and nothing else. Ours rather
than llhttp's because llhttp reads chunk extensions loosely both ways (it takes `5;=v`
and refuses the whitespace §7.1.1 allows before `;`) and cannot be told otherwise.
"""

from __future__ import annotations

import re

from treadle.config import Limits
from treadle.errors import ProtocolError
from treadle.http.events import Data, Event

# RFC 9110 §5.6.2 token, §5.6.4 quoted-string; possessive so a hostile line of blanks
# cannot make the match backtrack.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]++"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*+"'
# RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
_EXT = (
    rb"(?:[ \t]*+;[ \t]*+"
    + _TOKEN
    + rb"(?:[ \t]*+=[ \t]*+(?:"
    + _TOKEN
    + b"|"
    + _QUOTED
    + b"))?)*+"
)
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]++)" + _EXT)  # §7.1: chunk-size [ chunk-ext ]
# RFC 9112 §5 / RFC 9110 §5.5: field-name ":" OWS field-value OWS (no obs-fold).
_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):([\t\x20-\x7e\x80-\xff]*+)")
_MAX_SIZE_DIGITS = 15  # 2**60 bytes: far past any body limit, well inside an int64

_SIZE, _DATA, _DATA_END, _TRAILERS, _DONE = range(5)


class ChunkedDecoder:
    """One chunked body. ``feed`` consumes what it can; ``done`` once the body ended.

    Called on the reactor thread only (through H1Parser).
    """

    __slots__ = (
        "done", "trailers", "_state", "_line", "_left", "_total", "_trailer_bytes",
        "_max_body", "_max_line", "_max_count", "_max_header_bytes",
    )  # fmt: skip

    def __init__(self, limits: Limits) -> None:
        self.done = False
        self.trailers: list[tuple[bytes, bytes]] = []
        self._state = _SIZE
        self._line = b""  # an unfinished size line, trailer line or data CRLF
        self._left = self._total = self._trailer_bytes = 0
        self._max_body = limits.max_body_bytes
        self._max_line = limits.max_request_line_bytes
        self._max_count = limits.max_header_count
        self._max_header_bytes = limits.max_header_bytes

    def feed(self, data: bytes, pos: int, out: list[Event]) -> int:
        """Decode from ``data[pos:]``, appending Data to ``out``; return where the body ended
        (``done`` is then True) or ``len(data)``."""
        end = len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._left, end - pos)
                out.append(Data(data[pos : pos + take] if take < end or pos else data))
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif state == _DATA_END:
                need = 2 - len(self._line)
                self._line += data[pos : pos + need]
                pos += need
                if not b"\r\n".startswith(self._line):
                    raise ProtocolError("chunk data longer than its size, or no CRLF after it")
                if len(self._line) == 2:
                    self._line = b""
                    self._state = _SIZE
            else:
                newline = data.find(b"\n", pos)
                if newline < 0:
                    self._line += data[pos:]
                    self._check_line_length()
                    return end
                line = self._line + data[pos:newline]
                self._line = b""
                pos = newline + 1
                if line[-1:] != b"\r":  # RFC 9112 §2.2: a bare LF is not a line ending here
                    raise ProtocolError("chunked body line not ended by CRLF")
                if state == _SIZE:
                    self._size_line(line[:-1])
                elif self._trailer_line(line[:-1]):
                    return pos
        return pos

    def _check_line_length(self) -> None:
        if self._state == _SIZE and len(self._line) > self._max_line:
            raise ProtocolError("chunk size line too long", 431)
        if (
            self._state == _TRAILERS
            and self._trailer_bytes + len(self._line) > self._max_header_bytes
        ):
            raise ProtocolError("trailer fields too large", 431)

    def _size_line(self, line: bytes) -> None:
        if len(line) > self._max_line:
            raise ProtocolError("chunk size line too long", 431)
        match = _SIZE_LINE.fullmatch(line)
        if match is None:
            raise ProtocolError("invalid chunk size line")
        digits = match[1].lstrip(b"0")
        if len(digits) > _MAX_SIZE_DIGITS:
            raise ProtocolError("chunk size too large")
        size = int(digits or b"0", 16)
        if not size:  # RFC 9112 §7.1: last-chunk, then the trailer section
            self._state = _TRAILERS
            return
        self._total += size
        if self._total > self._max_body:
            raise ProtocolError("request body too large", 413)
        self._left = size
        self._state = _DATA

    def _trailer_line(self, line: bytes) -> bool:
        """Take one trailer field line; True at the blank line that ends the body."""
        if not line:
            self._state = _DONE
            self.done = True
            return True
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > self._max_header_bytes:
            raise ProtocolError("trailer fields too large", 431)
        match = _FIELD_LINE.fullmatch(line)
        if match is None:
            raise ProtocolError("invalid trailer field")
        self.trailers.append((match[1], match[2].strip(b" \t")))
        if len(self.trailers) > self._max_count:
            raise ProtocolError("too many trailer fields", 431)
        return False
