"""Chunked request bodies (RFC 9112 §7.1): the chunk-ext grammar under hypothesis, limits.

Pure tier: ChunkedDecoder alone, and through H1Parser for whole requests cut anywhere.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treadle.config import Limits
from treadle.errors import ProtocolError
from treadle.http.chunked import ChunkedDecoder
from treadle.http.events import Data, EndOfMessage, Event, RequestHead
from treadle.http.h1 import H1Parser

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
token = st.text(TCHARS, min_size=1, max_size=8).map(str.encode)
bws = st.text(" \t", max_size=3).map(str.encode)
qdtext = st.sampled_from([b"\t", b" ", b"!", b"#", b"[", b"]", b"~", b"a", b"\x80", b"\xff"])
quoted_pair = st.sampled_from([b'\\"', b"\\\\", b"\\ ", b"\\a", b"\\\xe9"])
quoted = st.lists(st.one_of(qdtext, quoted_pair), max_size=6).map(
    lambda parts: b'"' + b"".join(parts) + b'"'
)


@st.composite
def one_ext(draw: st.DrawFn) -> bytes:
    """BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ]"""
    ext = draw(bws) + b";" + draw(bws) + draw(token)
    if draw(st.booleans()):
        ext += draw(bws) + b"=" + draw(bws) + draw(st.one_of(token, quoted))
    return ext


chunk_ext = st.lists(one_ext(), max_size=3).map(b"".join)


def request(body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body


def parse(raw: bytes, cuts: list[int] | None = None) -> list[Event]:
    points = sorted({c % (len(raw) + 1) for c in cuts or []} | {0, len(raw)})
    parser = H1Parser(Limits())
    events: list[Event] = []
    for a, b in pairwise(points):
        events += parser.receive_data(raw[a:b])
    events += parser.receive_data(b"")  # EOF: raises the error kept after earlier events
    return events


def body_of(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data))


@settings(max_examples=300, deadline=None)
@given(chunk_ext, chunk_ext, st.lists(st.integers(0, 400), max_size=6))
def test_every_chunk_ext_the_grammar_allows_is_accepted(
    ext: bytes, last_ext: bytes, cuts: list[int]
) -> None:
    raw = request(b"5" + ext + b"\r\nhello\r\n0" + last_ext + b"\r\n\r\n")
    events = parse(raw, cuts)
    assert isinstance(events[0], RequestHead) and isinstance(events[-1], EndOfMessage)
    assert body_of(events) == b"hello"


@settings(max_examples=300, deadline=None)
@given(
    chunk_ext.filter(bool),
    st.sampled_from(
        [b"=", b";=v", b";a=", b";a= ", b';a="', b";a b", b" a", b";a=b c", b";a=\x7f", b";\x80"]
    ),
    st.lists(st.integers(0, 400), max_size=6),
)
def test_a_chunk_ext_outside_the_grammar_is_400(ext: bytes, bad: bytes, cuts: list[int]) -> None:
    raw = request(b"5" + ext + bad + b"\r\nhello\r\n0\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        parse(raw, cuts)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "line", [b"5 ;ext", b"5; ext=val", b"5 ; a = b", b'5;a="quoted \\" value"', b"5\t;\tx"]
)
def test_whitespace_rfc_9112_allows_before_and_after_the_semicolon(line: bytes) -> None:
    assert body_of(parse(request(line + b"\r\nhello\r\n0\r\n\r\n"))) == b"hello"


@pytest.mark.parametrize("line", [b"5;=v", b"5;a=", b"5 ", b"5 x", b'5;a="', b"5;a=b=c"])
def test_chunk_lines_gunicorn_and_waitress_refuse_are_400(line: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(request(line + b"\r\nhello\r\n0\r\n\r\n"))
    assert info.value.status == 400


def test_the_decoder_stops_at_the_end_of_the_body() -> None:
    decoder = ChunkedDecoder(Limits())
    out: list[Event] = []
    data = b"3\r\nabc\r\n0\r\nX-T: 1 \r\n\r\nGET / HTTP/1.1\r\n"
    end = decoder.feed(data, 0, out)
    assert decoder.done and data[end:] == b"GET / HTTP/1.1\r\n"
    assert body_of(out) == b"abc" and decoder.trailers == [(b"X-T", b"1")]


def test_an_endless_size_line_is_refused_before_it_ends() -> None:
    decoder = ChunkedDecoder(Limits(max_request_line_bytes=100))
    decoder.feed(b"5;a=" + b"b" * 90, 0, [])
    with pytest.raises(ProtocolError) as info:
        decoder.feed(b"b" * 20, 0, [])
    assert info.value.status == 431


# A second reading of RFC 9112 §7.1.1, written as a plain scanner, to check the regex
# against on arbitrary lines.
TCHAR_SET = frozenset(TCHARS.encode())
QDTEXT = frozenset([9, 32, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F), *range(0x80, 0x100)])
QPAIR = frozenset([9, 32, *range(0x21, 0x7F), *range(0x80, 0x100)])


def reference_accepts(line: bytes) -> bool:
    i, n = 0, len(line)

    def skip_bws(i: int) -> int:
        while i < n and line[i] in (0x20, 0x09):
            i += 1
        return i

    def token(i: int) -> int:
        j = i
        while j < n and line[j] in TCHAR_SET:
            j += 1
        return j if j > i else -1

    while i < n and line[i] in b"0123456789abcdefABCDEF":
        i += 1
    if i == 0 or len(line[:i].lstrip(b"0")) > 15:  # past 2**60: refused as too large
        return False
    while i < n:
        i = skip_bws(i)
        if i >= n or line[i] != ord(";"):
            return False
        i = token(skip_bws(i + 1))
        if i < 0:
            return False
        j = skip_bws(i)
        if j < n and line[j] == ord("="):
            j = skip_bws(j + 1)
            if j < n and line[j] == ord('"'):
                j += 1
                while j < n and line[j] != ord('"'):
                    if line[j] == ord("\\"):
                        if j + 1 >= n or line[j + 1] not in QPAIR:
                            return False
                        j += 2
                    elif line[j] in QDTEXT:
                        j += 1
                    else:
                        return False
                if j >= n:
                    return False
                i = j + 1
            else:
                i = token(j)
                if i < 0:
                    return False
    return True


line_bytes = st.lists(
    st.sampled_from(
        [
            b"5",
            b"a",
            b"Z",
            b" ",
            b"\t",
            b";",
            b"=",
            b'"',
            b"\\",
            b"\x00",
            b"\x7f",
            b"\x80",
            b",",
            b"x",
            b"0",
        ]
    ),  # fmt: skip
    max_size=20,
).map(b"".join)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(line_bytes, st.builds(lambda e: b"5" + e, chunk_ext)))
def test_the_size_line_is_accepted_exactly_when_the_rfc_grammar_says(line: bytes) -> None:
    decoder = ChunkedDecoder(Limits(max_body_bytes=2**62))
    try:
        decoder.feed(line + b"\r\n", 0, [])
    except ProtocolError as exc:
        accepted = False
        assert exc.status == 400
    else:
        accepted = True
    assert accepted == reference_accepts(line), line
