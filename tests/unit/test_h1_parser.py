"""H1Parser: the request corpus under every split, limits, pipelining, EOF, hypothesis."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treadle.config import Limits
from treadle.errors import ProtocolError
from treadle.http.events import Data, EndOfMessage, Event, RequestHead
from treadle.http.h1 import H1Parser

CORPUS = Path(__file__).parent.parent / "corpus"
VALID = sorted(p.stem for p in (CORPUS / "valid").glob("*.http"))
EXPECTED_INVALID = json.loads((CORPUS / "invalid" / "expected.json").read_text())
INVALID = sorted(EXPECTED_INVALID)


def text(b: bytes) -> str:
    return b.decode("latin-1")


def as_json(events: list[Event]) -> list[dict[str, object]]:
    """Events in the corpus's JSON shape, consecutive Data merged."""
    out: list[dict[str, object]] = []
    for event in events:
        if isinstance(event, RequestHead):
            out.append(
                {
                    "type": "head",
                    "method": text(event.method),
                    "target": text(event.target),
                    "path": text(event.path),
                    "query": text(event.query),
                    "version": event.http_version,
                    "headers": [[text(n), text(v)] for n, v in event.headers],
                    "keep_alive": event.keep_alive,
                    "expect_continue": event.expect_continue,
                    "content_length": event.content_length,
                    "chunked": event.chunked,
                    "authority": None if event.authority is None else text(event.authority),
                }
            )
        elif isinstance(event, Data):
            if out and out[-1]["type"] == "body":
                out[-1]["data"] = str(out[-1]["data"]) + text(event.data)
            else:
                out.append({"type": "body", "data": text(event.data)})
        else:
            assert isinstance(event, EndOfMessage)
            out.append({"type": "end", "trailers": [[text(n), text(v)] for n, v in event.trailers]})
    return out


def splits(raw: bytes) -> dict[str, list[bytes]]:
    """The ways a corpus request is fed: whole, per line, per byte, random cuts."""
    ways = {
        "whole": [raw],
        "lines": raw.splitlines(keepends=True),
        "bytes": [raw[i : i + 1] for i in range(len(raw))],
    }
    for seed in range(6):
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(1, 12))))
        ways[f"random{seed}"] = [
            raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)
        ]
    return ways


def feed(pieces: list[bytes], limits: Limits | None = None) -> list[Event]:
    """Feed pieces then EOF; return all events (raises the ProtocolError, if any)."""
    parser = H1Parser(limits or Limits())
    events: list[Event] = []
    for piece in pieces:
        events += parser.receive_data(piece)
    events += parser.receive_data(b"")
    return events


def status_of(pieces: list[bytes], limits: Limits) -> int | None:
    try:
        feed(pieces, limits)
    except ProtocolError as exc:
        return exc.status
    return None


@pytest.mark.parametrize("name", VALID)
def test_valid_corpus_gives_the_expected_events_under_every_split(name: str) -> None:
    raw = (CORPUS / "valid" / f"{name}.http").read_bytes()
    expected = json.loads((CORPUS / "valid" / f"{name}.json").read_text())
    for how, pieces in splits(raw).items():
        assert as_json(feed(pieces)) == expected, how


@pytest.mark.parametrize("name", INVALID)
def test_invalid_corpus_gives_the_expected_status_under_every_split(name: str) -> None:
    raw = (CORPUS / "invalid" / f"{name}.http").read_bytes()
    want = EXPECTED_INVALID[name]
    limits = replace(Limits(), **want.get("limits", {}))
    for how, pieces in splits(raw).items():
        assert status_of(pieces, limits) == want["status"], how


def test_corpus_is_large_enough() -> None:
    assert len(VALID) >= 25 and len(INVALID) >= 40


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def test_a_reused_parser_parses_request_after_request() -> None:
    parser = H1Parser(Limits())
    for i in range(3):
        target = b"/%d" % i
        events = parser.receive_data(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        assert [type(e) for e in events] == [RequestHead, EndOfMessage]
        assert isinstance(events[0], RequestHead) and events[0].target == target


def test_eof_between_requests_is_quiet_and_mid_request_is_400() -> None:
    parser = H1Parser(Limits())
    assert parser.receive_data(b"") == []
    parser.receive_data(GET)
    assert parser.receive_data(b"") == []
    parser = H1Parser(Limits())
    parser.receive_data(b"GET / HT")
    with pytest.raises(ProtocolError) as info:
        parser.receive_data(b"")
    assert info.value.status == 400


def test_a_dead_parser_raises_the_same_error_again() -> None:
    parser = H1Parser(Limits())
    with pytest.raises(ProtocolError) as first:
        parser.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n")
    assert parser.error is first.value
    for later in (GET, b""):
        with pytest.raises(ProtocolError) as again:
            parser.receive_data(later)
        assert again.value is first.value


def test_error_after_a_complete_request_returns_it_first_then_raises() -> None:
    parser = H1Parser(Limits())
    events = parser.receive_data(GET + b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n")
    assert [type(e) for e in events] == [RequestHead, EndOfMessage]
    assert parser.error is not None and parser.error.status == 400
    with pytest.raises(ProtocolError):
        parser.receive_data(b"")


def test_content_length_over_limit_is_413_right_after_the_head() -> None:
    parser = H1Parser(Limits(max_body_bytes=100))
    with pytest.raises(ProtocolError) as info:
        parser.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n")
    assert info.value.status == 413


def test_body_at_exactly_the_limit_is_accepted() -> None:
    limits = Limits(max_body_bytes=5)
    cl = feed([b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"], limits)
    chunked = feed([b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"], limits)  # fmt: skip
    assert as_json(cl)[1] == as_json(chunked)[1] == {"type": "body", "data": "hello"}


def test_request_line_limit_applies_before_the_line_ends() -> None:
    parser = H1Parser(Limits(max_request_line_bytes=100))
    parser.receive_data(b"GET /" + b"a" * 50)
    with pytest.raises(ProtocolError) as info:
        parser.receive_data(b"a" * 50)
    assert info.value.status == 414


def test_request_line_limit_counts_the_whole_line_with_crlf() -> None:
    line = b"GET /" + b"a" * 84 + b" HTTP/1.1\r\n"
    assert len(line) == 100
    limits = Limits(max_request_line_bytes=100)
    assert isinstance(feed([line + b"Host: a\r\n\r\n"], limits)[0], RequestHead)
    with pytest.raises(ProtocolError) as info:
        feed([b"GET /a" + line[5:] + b"Host: a\r\n\r\n"], limits)
    assert info.value.status == 414


def test_header_limits_at_and_over_the_edge() -> None:
    ten = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(9))
    assert isinstance(feed([ten + b"\r\n"], Limits(max_header_count=10))[0], RequestHead)
    with pytest.raises(ProtocolError) as info:
        feed([ten + b"X-9: v\r\n\r\n"], Limits(max_header_count=10))
    assert info.value.status == 431


def test_an_endless_header_is_refused_before_it_ends() -> None:
    parser = H1Parser(Limits())
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ")
    with pytest.raises(ProtocolError) as info:
        for _ in range(100):
            parser.receive_data(b"x" * 1000)
    assert info.value.status == 431


def test_endless_chunk_extension_is_refused() -> None:
    parser = H1Parser(Limits())
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=")
    with pytest.raises(ProtocolError):
        for _ in range(100):
            parser.receive_data(b"x" * 1000)


def test_a_method_llhttp_does_not_know_reaches_the_app_even_cut_anywhere() -> None:
    parser = H1Parser(Limits())
    assert parser.receive_data(b"FO") == []
    assert parser.receive_data(b"OBAR") == []
    assert parser.receive_data(b" / HTTP/1.1\r\n") == []
    events = parser.receive_data(b"Host: a\r\n\r\n")
    assert isinstance(events[0], RequestHead) and events[0].method == b"FOOBAR"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"PoST / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"FOO\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"FOO / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"FOO / HTTP/1.1\r\nBad Name: a\r\n\r\n", 400),
        (b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n", 501),
    ],
)
def test_methods_that_are_refused(raw: bytes, status: int) -> None:
    for step in (1, 3, len(raw)):
        with pytest.raises(ProtocolError) as info:
            feed([raw[i : i + step] for i in range(0, len(raw), step)])
        assert info.value.status == status, step


def test_a_tls_hello_is_refused_at_once_not_after_a_line() -> None:
    with pytest.raises(ProtocolError) as info:
        H1Parser(Limits()).receive_data(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    assert info.value.status == 400


def test_h1_decides_nothing_by_llhttp_error_strings() -> None:
    # Decisions come from error classes, our own checks and limits; llhttp's reason may
    # appear in a message, never in a comparison.
    source = (Path(__file__).parents[2] / "src" / "treadle" / "http" / "h1.py").read_text()
    assert "str(exc)" not in source and 'startswith("' not in source
    assert "Invalid" not in source and "Pause on" not in source


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"keep-alive", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"close", False),
    ],
)
def test_keep_alive_follows_rfc_9112_section_9_3(
    version: bytes, connection: bytes | None, keep_alive: bool
) -> None:
    raw = b"GET / HTTP/" + version + b"\r\nHost: a\r\n"
    if connection:
        raw += b"Connection: " + connection + b"\r\n"
    head = feed([raw + b"\r\n"])[0]
    assert isinstance(head, RequestHead) and head.keep_alive is keep_alive


def test_after_a_closing_request_nothing_more_is_parsed() -> None:
    parser = H1Parser(Limits())
    events = parser.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert len(events) == 2
    assert parser.receive_data(GET) == []
    assert parser.receive_data(b"garbage\x00") == []
    assert parser.receive_data(b"") == []


# hypothesis: arbitrary input never escapes as anything but ProtocolError ------------

VALID_RAW = [(CORPUS / "valid" / f"{n}.http").read_bytes() for n in VALID]


def parse_or_protocol_error(pieces: list[bytes]) -> None:
    try:
        feed(pieces)
    except ProtocolError as exc:
        assert 400 <= exc.status < 600


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_parse_or_raise_protocol_error(pieces: list[bytes]) -> None:
    parse_or_protocol_error(pieces)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(VALID_RAW),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=4)), min_size=1, max_size=4),
    st.integers(1, 40),
)
def test_mutated_valid_requests_parse_or_raise_protocol_error(
    raw: bytes, edits: list[tuple[int, bytes]], step: int
) -> None:
    data = bytearray(raw)
    for position, replacement in edits:
        i = position % (len(data) + 1)
        data[i : i + len(replacement)] = replacement
    mutated = bytes(data)
    parse_or_protocol_error([mutated])
    parse_or_protocol_error([mutated[i : i + step] for i in range(0, len(mutated), step)])


PIPELINE_PARTS = [r for r in VALID_RAW if b"close" not in r.lower() and b"HTTP/1.0" not in r]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(PIPELINE_PARTS), min_size=1, max_size=4),
    st.lists(st.integers(0, 4000), max_size=10),
)
def test_arbitrary_splits_of_pipelined_requests_give_identical_events(
    requests: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(requests)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in pairwise(points)]
    assert as_json(feed(pieces)) == as_json(feed([stream]))


INVALID_RAW = [
    (CORPUS / "invalid" / f"{n}.http").read_bytes()
    for n in INVALID
    if "limits" not in EXPECTED_INVALID[n] and not n.startswith("eof_")
]


def events_and_status(pieces: list[bytes]) -> tuple[list[dict[str, object]], int | None]:
    parser = H1Parser(Limits())
    events: list[Event] = []
    try:
        for piece in [*pieces, b""]:
            events += parser.receive_data(piece)
    except ProtocolError as exc:
        return as_json(events), exc.status
    return as_json(events), None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(PIPELINE_PARTS), min_size=1, max_size=3),
    st.sampled_from(INVALID_RAW),
    st.lists(st.integers(0, 4000), max_size=10),
)
def test_a_bad_request_after_good_ones_gives_their_events_then_its_status_under_any_split(
    requests: list[bytes], bad: bytes, cuts: list[int]
) -> None:
    stream = b"".join(requests) + bad
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    whole_events, whole_status = events_and_status([stream])
    assert whole_status is not None
    assert whole_events[: len(as_json(feed(requests)))] == as_json(feed(requests))
    pieces = [stream[a:b] for a, b in pairwise(points)]
    assert events_and_status(pieces) == (whole_events, whole_status)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        # found by fuzzing: each used to get another status when cut differently
        (b"GET /" + b"a" * 8300 + b"FOO " + b"a" * 100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET /" + b"a" * 100 + b"FOO " + b"a" * 8300 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b";GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400),
        (b"P\n * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"b" * 30000 + b"\r\nX(y): 1\r\n\r\n", 431),
    ],
)
def test_the_status_is_the_same_however_the_reads_are_cut(raw: bytes, status: int) -> None:
    for step in (1, 7, 4096, len(raw)):
        assert status_of([raw[i : i + step] for i in range(0, len(raw), step)], Limits()) == status


ALL_RAW = VALID_RAW + [(CORPUS / "invalid" / f"{n}.http").read_bytes() for n in INVALID]
SPLICES = [b"\r\n", b" ", b"\t", b";", b"=", b"0", b"5", b"a", b"G", b"\x00", b":", b"\r",
           b"\n", b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n", b"FOO ",
           b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"\r\n\r\n"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(ALL_RAW), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 40_000), st.sampled_from(SPLICES)), max_size=4),
    st.lists(st.integers(0, 40_000), min_size=1, max_size=8),
)
def test_mutated_streams_give_the_same_events_and_status_however_cut(
    parts: list[bytes], splices: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    data = bytearray(b"".join(parts))
    for position, splice in splices:
        i = position % (len(data) + 1)
        data[i : i + len(splice) // 2] = splice
    stream = bytes(data)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    whole = events_and_status([stream])
    assert events_and_status([stream[a:b] for a, b in pairwise(points)]) == whole
    if len(stream) < 2000:
        assert events_and_status([stream[i : i + 1] for i in range(len(stream))]) == whole
