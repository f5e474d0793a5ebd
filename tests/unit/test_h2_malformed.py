"""Malformed HTTP/2 requests (RFC 9113 §8.1.1): our one-pass check in http/h2_heads.py.

h2's own inbound header checks are off (they cost a tenth of a request), so this file holds
ours to them: a differential test against h2's validator on generated header lists, and the
user-visible answer on a real session: RST_STREAM PROTOCOL_ERROR for that stream only, the
connection serving on, and GOAWAY ENHANCE_YOUR_CALM for a client that makes us reset streams
by the hundred ("MadeYouReset").
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.utilities
import pytest
from h2.errors import ErrorCodes
from hypothesis import example, given, settings
from hypothesis import strategies as st

from treadle.config import Config
from treadle.errors import ProtocolError
from treadle.http import h2 as core
from treadle.http import h2_heads
from treadle.http.events import EndOfMessage, RequestHead

LIMITS = Config().limits
GOOD = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a.test")]


def lax_client() -> h2.connection.H2Connection:
    """A client that sends what it is given, as a broken or hostile one would."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            split_outbound_cookies=False,
        )
    )
    conn.initiate_connection()
    return conn


def session() -> core.H2Session:
    return core.H2Session(LIMITS, core.H2Limits())


def with_(*extra: tuple[bytes, bytes], drop: bytes = b"") -> list[tuple[bytes, bytes]]:
    return [h for h in GOOD if h[0] != drop] + list(extra)


MALFORMED = {
    "upper-case name": with_((b"X-Foo", b"1")),
    "space in a name": with_((b"x foo", b"1")),
    "empty name": with_((b"", b"1")),
    "colon inside a name": with_((b"x:foo", b"1")),
    "LF in a value": with_((b"x-foo", b"a\nb")),
    "NUL in a value": with_((b"x-foo", b"a\x00b")),
    "space before a value": with_((b"x-foo", b" a")),
    "tab after a value": with_((b"x-foo", b"a\t")),
    "connection": with_((b"connection", b"keep-alive")),
    "transfer-encoding": with_((b"transfer-encoding", b"chunked")),
    "upgrade": with_((b"upgrade", b"websocket")),
    "keep-alive": with_((b"keep-alive", b"5")),
    "TE other than trailers": with_((b"te", b"gzip")),
    "pseudo after regular": [*GOOD[:3], (b"x-foo", b"1"), GOOD[3]],
    "repeated :path": with_((b":path", b"/again")),
    "unknown pseudo": [(b":foo", b"1"), *GOOD],
    ":status in a request": [(b":status", b"200"), *GOOD],
    "no :method": with_(drop=b":method"),
    "no :scheme": with_(drop=b":scheme"),
    "no :path": with_(drop=b":path"),
    "empty :path": [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":path", b""),
        (b":authority", b"a.test"),
    ],  # fmt: skip
    ":protocol without CONNECT": [(b":protocol", b"websocket"), *GOOD],
    "CONNECT with :path": [(b":method", b"CONNECT"), (b":path", b"/"), (b":authority", b"a:1")],
    "two Host": with_((b"host", b"a.test"), (b"host", b"a.test"), drop=b":authority"),
    "Host unlike :authority": with_((b"host", b"b.test")),
    "neither :authority nor Host": with_(drop=b":authority"),
}
# A Content-Length that is no number never gets here: h2's stream reads it first and ends
# the connection (PROTOCOL_ERROR). The differential test below covers our verdict on it.


def stream_events(events: list, sid: int) -> list:
    return [event for s, event in events if s == sid]


@pytest.mark.parametrize("headers", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_request_resets_only_its_stream(headers: list) -> None:
    conn = lax_client()
    conn.send_headers(1, headers, end_stream=True)
    conn.send_headers(3, GOOD, end_stream=True)
    server = session()
    events = server.receive_data(conn.data_to_send(), 0.0)
    (reset,) = stream_events(events, 1)
    assert isinstance(reset, core.StreamReset) and reset.reason.startswith("malformed request")
    good = stream_events(events, 3)
    assert isinstance(good[0], RequestHead) and isinstance(good[1], EndOfMessage)
    seen = conn.receive_data(server.data_to_send())
    resets = [e for e in seen if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [(1, ErrorCodes.PROTOCOL_ERROR)]
    assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in seen)
    assert not server.refused and not server.reset_now  # nothing kept of the reset stream


def test_a_malformed_head_before_its_body_drops_the_body() -> None:
    conn = lax_client()
    conn.send_headers(1, with_((b"Bad", b"1"), (b":method", b"POST"), drop=b":method"))
    conn.send_data(1, b"x" * 100, end_stream=True)
    server = session()
    events = server.receive_data(conn.data_to_send(), 0.0)
    assert [type(e) for e in stream_events(events, 1)] == [core.StreamReset]


def test_a_pseudo_header_field_in_trailers_resets_the_stream() -> None:
    conn = lax_client()
    conn.send_headers(1, [(b":method", b"POST"), *GOOD[1:]])
    conn.send_data(1, b"abc")
    conn.send_headers(1, [(b":path", b"/x")], end_stream=True)
    server = session()
    events = server.receive_data(conn.data_to_send(), 0.0)
    kinds = [type(e).__name__ for e in stream_events(events, 1)]
    assert kinds == ["RequestHead", "Data", "StreamReset"]  # no EndOfMessage: never complete


def test_what_http2_allows_reaches_the_app() -> None:
    conn = lax_client()
    conn.send_headers(
        1,
        [
            *GOOD,
            (b"te", b"Trailers"),
            (b"cookie", b"a=1"),
            (b"x-empty", b""),
            (b"cookie", b"b=2"),
            (b"x-inner", b"a  b"),
        ],  # fmt: skip
        end_stream=True,
    )
    events = session().receive_data(conn.data_to_send(), 0.0)
    head = events[0][1]
    assert isinstance(head, RequestHead)
    assert head.headers == [
        (b"te", b"Trailers"),
        (b"x-empty", b""),
        (b"x-inner", b"a  b"),
        (b"cookie", b"a=1; b=2"),  # RFC 9113 §8.2.3: joined with "; "
    ]


def test_a_client_that_makes_us_reset_streams_by_the_hundred_is_sent_away() -> None:
    conn = lax_client()
    server = session()
    server.receive_data(conn.data_to_send(), 0.0)
    events: list = []
    for _ in range(5):  # 50 streams a read (100 in one would be too many open at once)
        for _ in range(50):
            conn.send_headers(conn.get_next_available_stream_id(), MALFORMED["connection"], True)
        events += server.receive_data(conn.data_to_send(), 0.0)
    ended = [e for _, e in events if isinstance(e, core.ConnectionEnded)]
    assert [e.reason for e in ended] == ["malformed streams (MadeYouReset)"]
    seen = conn.receive_data(server.data_to_send())
    (goaway,) = [e for e in seen if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


# -- the same verdicts as h2's own validator ------------------------------------------

_NAMES = [b":method", b":scheme", b":path", b":authority", b":status", b":protocol", b":x",
          b"host", b"te", b"cookie", b"connection", b"content-length", b"x-a", b"X-A",
          b"x a", b"", b"x:a", b"x\"a", b"x(a)"]  # fmt: skip
_VALUES = [b"GET", b"CONNECT", b"https", b"/", b"", b"*", b"a.test", b"b.test", b"trailers",
           b"gzip", b"5", b"5x", b" a", b"a\t", b"a\r\nb", b"a\x00", b"a b"]  # fmt: skip
_FLAGS = h2.utilities.HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False
)
_TOKEN_EXTRA = set(b'"(),/;<=>?@[\\]{}')  # h2 allows these in names; RFC 9110 tokens do not


def h2_says_malformed(headers: list[tuple[bytes, bytes]]) -> bool:
    try:
        list(h2.utilities.validate_headers(headers, _FLAGS))
    except h2.exceptions.ProtocolError:
        return True
    return False


def stricter_here(headers: list[tuple[bytes, bytes]]) -> bool:
    """What we refuse and h2's validator lets by: non-token names, a Content-Length that
    is not one number (h2's stream refuses that later, as a connection error)."""
    lengths = {v for n, v in headers if n == b"content-length"}
    return any(n[:1] != b":" and _TOKEN_EXTRA & set(n) for n, _ in headers) or bool(
        lengths and (len(lengths) > 1 or not all(v.isdigit() for v in lengths))
    )


@settings(max_examples=3000, deadline=None)
@example(  # extended CONNECT (RFC 8441) without :scheme and :path
    pseudo=[(b":method", b"CONNECT"), (b":authority", b"a.test"), (b":protocol", b"GET")],
    regular=[],
)
@example(pseudo=[(b":method", b"CONNECT"), (b":authority", b"a.test")], regular=[])
@given(
    pseudo=st.lists(st.tuples(st.sampled_from(_NAMES[:7]), st.sampled_from(_VALUES)), max_size=6),
    regular=st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)), max_size=5),
)
def test_the_same_verdict_as_h2s_validator(pseudo: list, regular: list) -> None:
    headers = pseudo + regular
    expected = h2_says_malformed(headers) or stricter_here(headers)
    try:
        h2_heads.request_head(headers, LIMITS)
    except h2_heads.Malformed:
        assert expected, headers
        return
    except ProtocolError as error:
        assert not expected and error.status == 501, headers  # well-formed CONNECT
        return
    assert not expected, headers
