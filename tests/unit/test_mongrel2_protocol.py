"""Mongrel2's handler protocol as bytes: tnetstrings, request messages, response framing.

Pure tier: treadle.mongrel2.tnetstring and treadle.mongrel2.message alone, with
hypothesis on both parsers (round trips, and arbitrary bytes raise only their own error).
Message shapes follow Mongrel2's src/request.c (Request_to_tnetstring, Request_to_payload)
and src/handler.c (the disconnect notice).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treadle.mongrel2 import message, tnetstring
from treadle.mongrel2.message import (
    Control,
    Disconnect,
    MessageError,
    Request,
    parse_message,
    request_head,
    request_message,
    response_messages,
)

# -- tnetstring -----------------------------------------------------------------------------

scalars = st.one_of(
    st.binary(max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.binary(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(values)
def test_tnetstring_round_trip(value: object) -> None:
    assert tnetstring.loads(tnetstring.dumps(value)) == value


@given(values, st.binary(max_size=10))
def test_parse_returns_what_follows(value: object, rest: bytes) -> None:
    assert tnetstring.parse(tnetstring.dumps(value) + rest) == (value, rest)


@given(st.binary(max_size=60))
def test_tnetstring_garbage_raises_its_own_error(data: bytes) -> None:
    try:
        tnetstring.loads(data)
    except tnetstring.TNetstringError:
        pass


def test_tnetstring_examples_from_the_spec() -> None:
    assert tnetstring.dumps({b"hello": [12345678901, b"this", True, None, b"\x00\x00"]}) == (
        b"49:5:hello,37:11:12345678901#4:this,4:true!0:~2:\x00\x00,]}"
    )
    assert tnetstring.loads(b"3:1.5^") == 1.5


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"5:abc,",  # shorter than its length
        b"3:abc",  # no type tag
        b"03:abc,",  # a leading zero
        b"1234567890:x,",  # a length past nine digits
        b"3:abc?",  # unknown type
        b"3:--5#",
        b"4:yes!!",
        b"1:x~",
        b"4:1:a,}",  # a key without a value
        b"6:1:1#1:a,}",  # a key that is not a string
        b"1:a,x",  # trailing bytes
    ],
)
def test_tnetstring_refuses(bad: bytes) -> None:
    with pytest.raises(tnetstring.TNetstringError):
        tnetstring.loads(bad)


# -- requests ----------------------------------------------------------------------------

SENDER = b"54c6755b-9628-40a4-9a2d-cc82a816345e"
BASE = {
    b"PATH": b"/app/items",
    b"host": b"example.com:6767",
    b"accept": b"*/*",
    b"x-forwarded-for": b"127.0.0.1",
    b"METHOD": b"GET",
    b"VERSION": b"HTTP/1.1",
    b"URI": b"/app/items?a=%20b&c",
    b"QUERY": b"a=%20b&c",
    b"PATTERN": b"/app",
    b"URL_SCHEME": b"http",
    b"REMOTE_ADDR": b"127.0.0.1",
}


def test_a_tnetstring_request_as_mongrel2_sends_it() -> None:
    fields = (
        b"6:METHOD,4:POST,7:VERSION,8:HTTP/1.1,3:URI,10:/app/items,"
        b"4:PATH,10:/app/items,4:host,4:a.b:,7:PATTERN,4:/app,"
    )
    raw = SENDER + b" 42 /app/items %d:%s}5:hello," % (len(fields), fields)
    parsed = parse_message(raw)
    assert parsed == Request(
        SENDER,
        b"42",
        b"/app/items",
        [
            (b"METHOD", b"POST"),
            (b"VERSION", b"HTTP/1.1"),
            (b"URI", b"/app/items"),
            (b"PATH", b"/app/items"),
            (b"host", b"a.b:"),
            (b"PATTERN", b"/app"),
        ],
        b"hello",
    )


def test_a_json_request_as_mongrel2_sends_it() -> None:
    headers = b'{"PATH":"/x","accept":["a","b"],"user-agent":"caf\xc3\xa9 \\"q\\"","METHOD":"GET"}'
    raw = SENDER + b" 3 /x %d:%s,0:," % (len(headers), headers)
    parsed = parse_message(raw)
    assert isinstance(parsed, Request)
    assert parsed.headers == [
        (b"PATH", b"/x"),
        (b"accept", b"a"),
        (b"accept", b"b"),
        (b"user-agent", b'caf\xc3\xa9 "q"'),  # raw bytes survive, escapes are undone
        (b"METHOD", b"GET"),
    ]


@pytest.mark.parametrize("json_headers", [False, True])
def test_a_disconnect_notice(json_headers: bool) -> None:
    # src/handler.c Handler_notify_leave: path "@*", METHOD JSON, body {"type":"disconnect"}.
    notice = b'{"type":"disconnect"}'
    as_json = {b"METHOD": b"JSON"}
    raw = request_message(SENDER, b"9", b"@*", as_json, notice, json_headers=json_headers)
    assert parse_message(raw) == Disconnect(SENDER, b"9")
    credits = request_message(SENDER, b"9", b"@*", {b"METHOD": b"JSON"}, b'{"type":"credits"}')
    assert parse_message(credits) == Control(SENDER, b"9", "credits")


header_values = st.one_of(
    st.binary(min_size=0, max_size=20), st.lists(st.binary(max_size=10), min_size=1, max_size=3)
)


@given(
    st.dictionaries(st.binary(min_size=1, max_size=12), header_values, max_size=6),
    st.binary(max_size=200),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.booleans(),
)
def test_request_round_trip(
    headers: dict[bytes, object], body: bytes, conn_id: int, json_headers: bool
) -> None:
    if json_headers:
        # JSON carries text: Mongrel2 writes header bytes as they came, read back as latin-1.
        headers = {k.decode("latin-1").encode("latin-1"): v for k, v in headers.items()}
    headers = {k: v for k, v in headers.items() if k != b"METHOD"}
    raw = request_message(
        SENDER, str(conn_id).encode(), b"/p", headers, body, json_headers=json_headers
    )
    parsed = parse_message(raw)
    assert isinstance(parsed, Request)
    assert parsed.body == body
    expected = []
    for key, value in headers.items():
        expected.extend((key, item) for item in (value if type(value) is list else [value]))
    assert parsed.headers == expected


@given(st.binary(max_size=120))
def test_garbage_raises_message_error_only(data: bytes) -> None:
    try:
        parse_message(data)
    except MessageError:
        pass


@given(st.binary(max_size=60), st.integers(min_value=0, max_value=80))
def test_cut_or_damaged_messages_are_refused(noise: bytes, cut: int) -> None:
    raw = request_message(SENDER, b"1", b"/p", BASE, b"body")
    for damaged in (raw[: len(raw) - 1 - cut % len(raw)], raw + noise if noise else raw + b"x"):
        with pytest.raises(MessageError):
            parse_message(damaged)


@pytest.mark.parametrize(
    "raw",
    [
        b"not-a-uuid! 1 /p 0:,0:,",  # a sender Mongrel2 itself could not parse back
        SENDER + b" 1x /p 0:,0:,",
        SENDER + b" 12345678901 /p 0:,0:,",  # past a uint32's digits
        SENDER + b" 1 /p 2:[],0:,",  # JSON headers that are not an object
        SENDER + b" 1 /p 3:1:a,0:,",  # tnetstring headers that are not a dict
        SENDER + b" 1 /p 12:1:a,1:b,1:c,}0:,",  # a dict key without a value
        SENDER + b" 1 /p 11:5:a,1:5#}0:,",  # a header value that is a number
        SENDER + b" 1 /p 0:}0:;",  # a body not ended by ","
        SENDER + b" 1 /p",
    ],
)
def test_malformed_messages(raw: bytes) -> None:
    with pytest.raises(MessageError):
        parse_message(raw)


# -- the HTTP request a message carries ------------------------------------------------


def head_of(**changes: bytes | None) -> tuple[object, message.Origin]:
    headers = {**BASE, **{k.encode(): v for k, v in changes.items()}}
    headers = {k: v for k, v in headers.items() if v is not None}
    parsed = parse_message(request_message(SENDER, b"5", b"/app/items", headers, b""))
    assert isinstance(parsed, Request)
    return request_head(parsed)


def test_head_and_origin() -> None:
    head, origin = head_of()
    assert head.method == b"GET"
    assert head.target == b"/app/items?a=%20b&c"
    assert head.path == b"/app/items"
    assert head.query == b"a=%20b&c"  # untouched
    assert head.http_version == "1.1"
    assert head.keep_alive
    # Mongrel2's own capitalised keys are not the client's headers.
    assert head.headers == [
        (b"host", b"example.com:6767"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"127.0.0.1"),
    ]
    assert origin == message.Origin("http", ("127.0.0.1", 0), "/app")


@pytest.mark.parametrize(
    ("pattern", "path", "script_name"),
    [
        (b"/app", b"/app/items", "/app"),
        (b"/app/", b"/app/items", "/app"),
        (b"/app/(.*)", b"/app/items", "/app"),
        (b"/app", b"/app", "/app"),
        (b"/app", b"/apple", ""),  # Mongrel2 routes it, but it is not under the mount
        (b"/", b"/x", ""),
        (b"(.*)", b"/x", ""),
        (None, b"/x", ""),
    ],
)
def test_pattern_gives_script_name(pattern: bytes | None, path: bytes, script_name: str) -> None:
    _, origin = head_of(PATTERN=pattern, PATH=path, URI=path)
    assert origin.script_name == script_name


def test_url_scheme_and_remote_addr() -> None:
    assert head_of(URL_SCHEME=b"https")[1].scheme == "https"
    assert head_of(URL_SCHEME=None)[1].scheme == "http"
    # Without REMOTE_ADDR (Mongrel2 before 1.9): x-forwarded-for, which Mongrel2 replaces.
    assert head_of(REMOTE_ADDR=None)[1].peer == ("127.0.0.1", 0)
    # A list is not Mongrel2's doing: not trusted.
    listed = head_of(REMOTE_ADDR=None, **{"x-forwarded-for": b"6.6.6.6, 127.0.0.1"})
    assert listed[1].peer is None
    assert head_of(REMOTE_ADDR=b"::1")[1].peer == ("::1", 0)


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"HTTP/1.1", None, True),
        (b"HTTP/1.1", b"Close", False),
        (b"HTTP/1.0", None, False),
        (b"HTTP/1.0", b"keep-alive", True),
    ],
)
def test_keep_alive(version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    head, _ = head_of(VERSION=version, connection=connection)
    assert head.keep_alive is keep_alive
    assert head.http_version == version[5:].decode()


def test_upload_notices_are_for_the_handler_only() -> None:
    head, _ = head_of(**{"x-mongrel2-upload-start": b"/tmp/up.X", "content-length": b"99"})
    assert all(not name.startswith(b"x-mongrel2") for name, _ in head.headers)
    assert head.content_length == 99


@pytest.mark.parametrize("missing", ["METHOD", "VERSION", "URI"])
def test_not_http(missing: str) -> None:
    with pytest.raises(MessageError):
        head_of(**{missing: None})
    with pytest.raises(MessageError):
        head_of(VERSION=b"HTTP/2.0")


# -- responses ---------------------------------------------------------------------------


def test_response_framing() -> None:
    assert response_messages(SENDER, [b"42"], b"HTTP/1.1 200 OK\r\n\r\nhi") == [
        SENDER + b" 2:42, HTTP/1.1 200 OK\r\n\r\nhi"
    ]
    # An empty body closes those clients' connections.
    assert response_messages(SENDER, [b"1", b"22"], b"") == [SENDER + b" 4:1 22, "]


def test_at_most_128_ids_per_message() -> None:
    ids = [str(n).encode() for n in range(300)]
    messages = response_messages(SENDER, ids, b"x")
    assert len(messages) == 3
    sent: list[bytes] = []
    for raw in messages:
        head, _, rest = raw.partition(b" ")
        assert head == SENDER
        length, _, rest = rest.partition(b":")
        targets = rest[: int(length)]
        assert rest[int(length) :] == b", x"
        sent.extend(targets.split(b" "))
        assert len(targets.split(b" ")) <= 128
    assert sent == ids


def test_response_needs_a_real_sender() -> None:
    with pytest.raises(ValueError):
        response_messages(b"a b", [b"1"], b"x")


def test_json_header_helper_is_json() -> None:
    raw = request_message(SENDER, b"1", b"/", {b"METHOD": b"GET"}, b"", json_headers=True)
    size, _, rest = raw.split(b" ", 3)[3].partition(b":")
    assert json.loads(rest[: int(size)]) == {"METHOD": "GET"}
