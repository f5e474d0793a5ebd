"""The sans-IO HTTP/2 core (http/h2.py): client bytes in, stream events out; frames out.

Pure tier: the h2 library plays the client in memory. Every request is also fed byte by
byte and in random splits (hypothesis): the events must not depend on how bytes arrive.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hypothesis import given, settings
from hypothesis import strategies as st

from treadle.config import Config
from treadle.errors import ProtocolError
from treadle.http import h2 as core
from treadle.http import h2_floods, h2_heads
from treadle.http.events import Data, EndOfMessage, RequestHead

LIMITS = Config().limits
H2_LIMITS = core.H2Limits(max_concurrent_streams=100, max_header_list_bytes=64 * 1024)


def client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    return conn


def fields(method: bytes = b"GET", path: bytes = b"/a/b?x=1", **extra: bytes) -> list:
    base = [(b":method", method), (b":path", path), (b":scheme", b"https"),
            (b":authority", b"example.com")]  # fmt: skip
    return base + [(k.replace("_", "-").encode(), v) for k, v in extra.items()]


def session() -> core.H2Session:
    return core.H2Session(LIMITS, H2_LIMITS)


def feed(server: core.H2Session, data: bytes, splits: list[int] | None = None) -> list:
    """All events for ``data`` fed in pieces cut at ``splits``."""
    events = []
    cuts = sorted({c for c in (splits or []) if 0 < c < len(data)})
    start = 0
    for cut in [*cuts, len(data)]:
        events += server.receive_data(data[start:cut], 0.0)
        start = cut
    return events


def to_client(server: core.H2Session, conn: h2.connection.H2Connection) -> list:
    return conn.receive_data(server.data_to_send())


def post_bytes() -> bytes:
    conn = client()
    conn.send_headers(1, fields(b"POST", b"/up", content_length=b"11"))
    conn.send_data(1, b"hello ")
    conn.send_data(1, b"world", end_stream=True)
    conn.send_headers(3, fields(), end_stream=True)
    return conn.data_to_send()


def test_a_get_becomes_a_request_head_and_its_end() -> None:
    conn = client()
    conn.send_headers(1, fields(cookie=b"a=1", user_agent=b"t"), end_stream=True)
    conn.send_headers(3, [*fields(), (b"cookie", b"b=2")], end_stream=True)
    events = feed(session(), conn.data_to_send())
    (sid, head), (sid2, end) = events[0], events[1]
    assert (sid, sid2) == (1, 1) and isinstance(end, EndOfMessage)
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.path, head.query) == (
        b"GET",
        b"/a/b?x=1",
        b"/a/b",
        b"x=1",
    )
    assert head.http_version == "2" and head.authority == b"example.com"
    assert sorted(head.headers) == [(b"cookie", b"a=1"), (b"user-agent", b"t")]
    assert not head.has_body
    assert [sid for sid, _ in events[2:]] == [3, 3]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), max_size=30))
def test_events_do_not_depend_on_how_the_bytes_arrive(splits: list[int]) -> None:
    data = post_bytes()
    whole = feed(session(), data)
    assert feed(session(), data, splits) == whole or _same_body(
        feed(session(), data, splits), whole
    )


def _same_body(a: list, b: list) -> bool:
    """Data events may be cut differently; heads, ends and the bytes must match."""

    def norm(events: list) -> list:
        out: list = []
        for sid, event in events:
            if (
                isinstance(event, Data)
                and out
                and isinstance(out[-1][1], Data)
                and out[-1][0] == sid
            ):
                out[-1] = (sid, Data(out[-1][1].data + event.data))
            else:
                out.append((sid, event))
        return out

    return norm(a) == norm(b)


def test_a_body_is_read_and_its_window_reopened() -> None:
    events = feed(session(), post_bytes())
    kinds = [(sid, type(event).__name__) for sid, event in events]
    assert kinds[0] == (1, "RequestHead") and (1, "EndOfMessage") in kinds
    body = b"".join(e.data for sid, e in events if sid == 1 and isinstance(e, Data))
    assert body == b"hello world"
    head = events[0][1]
    assert head.content_length == 11 and head.has_body


def test_a_body_without_length_counts_as_a_body() -> None:
    conn = client()
    conn.send_headers(1, fields(b"PUT", b"/x"))
    conn.send_data(1, b"abc", end_stream=True)
    events = feed(session(), conn.data_to_send())
    assert events[0][1].has_body and events[0][1].content_length is None


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (fields(**{f"x_{n}": b"v" for n in range(101)}), 431),  # --max-header-count
        (fields(x_big=b"v" * 17000), 431),  # --max-header-bytes
        (fields(path=b"/" + b"p" * 9000), 414),
        (fields(b"POST", content_length=str(200 * 1024 * 1024).encode()), 413),  # --max-body
        ([(b":method", b"CONNECT"), (b":authority", b"example.com:443")], 501),
    ],
    ids=["header count", "header bytes", "path", "declared body", "CONNECT"],
)
def test_requests_refused_before_the_app(headers: list, status: int) -> None:
    if headers and headers[1][0] == b":path" and headers[-1][0] == b"path":
        headers = [(b":method", b"GET"), (b":path", headers[-1][1]), *headers[2:-1]]
    conn = client()
    conn.send_headers(1, headers, end_stream=True)
    events = feed(session(), conn.data_to_send())
    errors = [e for _, e in events if isinstance(e, ProtocolError)]
    assert [e.status for e in errors] == [status]
    assert not any(isinstance(e, RequestHead) for _, e in events)


def test_a_body_past_max_body_without_length_is_refused() -> None:
    server = core.H2Session(Config.from_settings({"max_body_bytes": 1000}).limits, H2_LIMITS)
    conn = client()
    conn.send_headers(1, fields(b"POST", b"/"))
    conn.send_data(1, b"x" * 800)
    conn.send_data(1, b"x" * 800)
    events = feed(server, conn.data_to_send())
    assert [e.status for _, e in events if isinstance(e, ProtocolError)] == [413]


def respond(server: core.H2Session, sid: int, body: bytes) -> None:
    server.send_head(sid, 200, [(b"content-type", b"text/plain")], end_stream=False)
    server.send_body(sid, body, end_stream=True)


def test_a_response_waits_for_the_clients_window() -> None:
    conn = client()
    conn.send_headers(1, fields(), end_stream=True)
    server = session()
    feed(server, conn.data_to_send())
    respond(server, 1, b"z" * 200_000)
    assert server.pump() == []  # the client's default window: 65,535 bytes
    assert server.buffered(1) == 200_000 - 65_535
    got = b"".join(e.data for e in to_client(server, conn) if isinstance(e, h2.events.DataReceived))
    assert len(got) == 65_535
    conn.increment_flow_control_window(200_000)
    conn.increment_flow_control_window(200_000, 1)
    feed(server, conn.data_to_send())
    assert server.pump() == [1]
    events = to_client(server, conn)
    assert sum(len(e.data) for e in events if isinstance(e, h2.events.DataReceived)) == 134_465
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    assert server.buffered(1) == 0


@pytest.mark.parametrize("window", [65_535, 5])
def test_a_whole_body_leaves_at_once_when_the_window_takes_it(window: int) -> None:
    conn = client()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    conn.send_headers(1, fields(), end_stream=True)
    server = session()
    feed(server, conn.data_to_send())
    server.send_head(1, 200, [(b"content-length", b"11")], end_stream=False)
    server.send_whole(1, b"hello world")
    events = to_client(server, conn)  # no pump: framed by send_whole, or queued
    got = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    if window >= 11:
        assert got == b"hello world" and server.buffered(1) == 0
        assert any(isinstance(e, h2.events.StreamEnded) for e in events)
        return
    assert got == b"" and server.buffered(1) == 11  # waits for the client's window
    conn.increment_flow_control_window(100, 1)
    feed(server, conn.data_to_send())
    assert server.pump() == [1]
    events = to_client(server, conn)
    got = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert got == b"hello world"


def flood_code(server: core.H2Session) -> int:
    conn = client()
    conn.receive_data(b"")  # nothing
    terminated = [
        e for e in conn.receive_data(server.data_to_send())
        if isinstance(e, h2.events.ConnectionTerminated)
    ]  # fmt: skip
    assert len(terminated) == 1
    return terminated[0].error_code


@pytest.mark.parametrize("kind", ["ping", "settings", "reset", "empty data"])
def test_floods_end_the_connection_with_enhance_your_calm(kind: str) -> None:
    conn = client()
    server = session()
    feed(server, conn.data_to_send())
    for n in range(250):
        if kind == "ping":
            conn.ping(b"%08d" % n)
        elif kind == "settings":
            conn.update_settings({4: 65535 + n})
        elif kind == "reset":
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, fields())
            conn.reset_stream(sid)
        elif n == 0:
            conn.send_headers(1, fields(b"POST", b"/"))
        else:
            conn.send_data(1, b"")
    events = feed(server, conn.data_to_send())
    ended = [e for _, e in events if isinstance(e, core.ConnectionEnded)]
    assert len(ended) == 1 and not ended[0].by_peer
    assert flood_code(server) == ErrorCodes.ENHANCE_YOUR_CALM


def test_the_flood_counters_forget_after_their_window() -> None:
    conn = client()
    server = session()
    server.receive_data(conn.data_to_send(), 0.0)
    for second in (0.0, 11.0, 22.0):  # 90 pings per 10 s window: a lively, honest client
        for n in range(90):
            conn.ping(b"%08d" % n)
        events = server.receive_data(conn.data_to_send(), second)
        assert not any(isinstance(e, core.ConnectionEnded) for _, e in events)


def test_a_header_block_past_the_limit_is_cut_before_it_ends() -> None:
    server = session()
    frames = [h2_floods.PREFACE, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"]  # preface, SETTINGS
    frames.append(b"\x00\x40\x00\x01\x00\x00\x00\x00\x01" + b"\x00" * 0x4000)  # HEADERS 16K
    for _ in range(10):  # CONTINUATION frames, never END_HEADERS
        frames.append(b"\x00\x40\x00\x09\x00\x00\x00\x00\x01" + b"\x00" * 0x4000)
    events = feed(server, b"".join(frames))
    assert [e.reason for _, e in events if isinstance(e, core.ConnectionEnded)] == [
        "header block (CONTINUATION flood)"
    ]


def test_drain_sends_goaway_and_refuses_later_streams() -> None:
    conn = client()
    conn.send_headers(1, fields())  # still open: its body may come
    server = session()
    feed(server, conn.data_to_send())
    conn.send_headers(3, fields(), end_stream=True)
    late = conn.data_to_send()  # on its way while the server drains
    server.drain()
    terminated = [
        e for e in conn.receive_data(server.data_to_send())
        if isinstance(e, h2.events.ConnectionTerminated)
    ]  # fmt: skip
    assert terminated[0].error_code == ErrorCodes.NO_ERROR
    assert terminated[0].last_stream_id == 1
    assert feed(server, late) == []  # stream 3 never reaches the app...
    refused = b"\x00\x00\x04\x03\x00\x00\x00\x00\x03" + int(ErrorCodes.REFUSED_STREAM).to_bytes(
        4, "big"
    )
    assert refused in server.data_to_send()  # ...and may be retried elsewhere
    # Stream 1, below the GOAWAY's last id, is still answered.
    respond(server, 1, b"still answered")
    server.pump()
    assert b"still answered" in server.data_to_send()


def test_response_head_lowercases_and_drops_connection_fields() -> None:
    code, out, length = h2_heads.response_head(
        "201 Created",
        [("Content-Type", "text/plain"), ("Connection", "close"), ("Content-Length", "5"),
         ("Transfer-Encoding", "chunked"), ("Set-Cookie", " a=1")],
        b"DATE",
    )  # fmt: skip
    assert code == 201 and length == 5
    assert out == [
        (b"content-type", b"text/plain"),
        (b"content-length", b"5"),
        (b"set-cookie", b"a=1"),
        (b"server", b"treadle"),
        (b"date", b"DATE"),
    ]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("100 Continue", []),
        ("20 OK", []),
        ("200 OK", [("Bad Name", "x")]),
        ("200 OK", [("X-A", "a\r\nb")]),
        ("200 OK", [("Content-Length", "-1")]),
    ],
)
def test_response_head_refuses_what_http2_cannot_carry(status: str, headers: list) -> None:
    with pytest.raises(ValueError):
        h2_heads.response_head(status, headers, b"D")
