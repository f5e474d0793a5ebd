"""plan_response framing (RFC 9112 §6.3), header validation, chunks, errors, dates."""

from __future__ import annotations

import pytest

from treadle.http.events import RequestHead
from treadle.http.h1_response import (
    CONTINUE,
    LAST_CHUNK,
    ResponsePlan,
    encode_chunk,
    error_response,
    http_date,
    plan_response,
)

DATE = b"Sun, 06 Nov 1994 08:49:37 GMT"


def request(method: bytes = b"GET", version: str = "1.1", keep_alive: bool = True) -> RequestHead:
    return RequestHead(method, b"/", b"/", b"", version, [], keep_alive=keep_alive)


def plan(
    req: RequestHead | None = None,
    status: str = "200 OK",
    headers: list[tuple[str, str]] | None = None,
    body_length: int | None = None,
    closing: bool = False,
) -> ResponsePlan:
    return plan_response(
        req or request(), status, headers or [("Content-Type", "text/plain")],
        body_length=body_length, date=DATE, closing=closing,
    )  # fmt: skip


def head_lines(p: ResponsePlan) -> list[str]:
    assert p.head.endswith(b"\r\n\r\n")
    return p.head[:-4].decode("latin-1").split("\r\n")


def fields(p: ResponsePlan) -> dict[str, str]:
    return {k.lower(): v for k, _, v in (ln.partition(": ") for ln in head_lines(p)[1:])}


# (method, version, status, app headers, body_length, closing)
#   -> (chunked, body_allowed, keep_alive, content_length, Connection header)
FRAMING = [
    ("GET", "1.1", "200 OK", [], 5, False, (False, True, True, 5, None)),
    ("GET", "1.1", "200 OK", [], None, False, (True, True, True, None, None)),
    ("GET", "1.1", "200 OK", [("Content-Length", "7")], None, False, (False, True, True, 7, None)),
    ("GET", "1.1", "200 OK", [("Content-Length", "7")], 3, False, (False, True, True, 7, None)),
    ("GET", "1.0", "200 OK", [], 5, False, (False, True, True, 5, "keep-alive")),
    ("GET", "1.0", "200 OK", [], None, False, (False, True, False, None, None)),
    ("GET", "1.1", "200 OK", [("Connection", "close")], 5, False, (False, True, False, 5, "close")),
    ("GET", "1.1", "200 OK", [("connection", "Foo, CLOSE")], 5, False,
     (False, True, False, 5, "close")),
    ("GET", "1.1", "200 OK", [], 5, True, (False, True, False, 5, "close")),
    ("GET", "1.1", "200 OK", [], None, True, (True, True, False, None, "close")),
    ("HEAD", "1.1", "200 OK", [], 0, False, (False, False, True, None, None)),
    ("HEAD", "1.1", "200 OK", [], None, False, (False, False, True, None, None)),
    ("HEAD", "1.1", "200 OK", [("Content-Length", "42")], 0, False, (False, False, True, 42, None)),
    ("HEAD", "1.1", "200 OK", [], 42, False, (False, False, True, 42, None)),
    ("GET", "1.1", "204 No Content", [("Content-Length", "0")], None, False,
     (False, False, True, None, None)),
    ("GET", "1.1", "304 Not Modified", [], None, False, (False, False, True, None, None)),
    ("GET", "1.1", "304 Not Modified", [("Content-Length", "9")], None, False,
     (False, False, True, 9, None)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "version", "status", "headers", "body_length", "closing", "want"), FRAMING
)
def test_framing_table(
    method: str,
    version: str,
    status: str,
    headers: list[tuple[str, str]],
    body_length: int | None,
    closing: bool,
    want: tuple[bool, bool, bool, int | None, str | None],
) -> None:
    req = request(method.encode(), version, keep_alive=True)
    p = plan(req, status, headers or [("X", "y")], body_length, closing)
    chunked, body_allowed, keep_alive, length, connection = want
    assert (p.chunked, p.body_allowed, p.keep_alive, p.content_length) == want[:4]
    got = fields(p)
    assert got.get("connection") == connection
    assert got.get("content-length") == (None if length is None else str(length))
    assert got.get("transfer-encoding") == ("chunked" if chunked else None)
    assert head_lines(p)[0] == f"HTTP/1.1 {status}"


def test_a_request_that_closes_gets_connection_close() -> None:
    p = plan(request(keep_alive=False), body_length=1)
    assert not p.keep_alive and fields(p)["connection"] == "close"
    p10 = plan(request(version="1.0", keep_alive=False), body_length=1)
    assert not p10.keep_alive and "connection" not in fields(p10)


def test_hop_by_hop_headers_from_the_app_are_dropped() -> None:
    p = plan(
        headers=[("Transfer-Encoding", "gzip"), ("Keep-Alive", "timeout=5"), ("Upgrade", "h2c"),
                 ("Connection", "keep-alive"), ("X-Kept", "1")],
        body_length=2,
    )  # fmt: skip
    assert fields(p) == {
        "x-kept": "1", "content-length": "2", "server": "treadle", "date": DATE.decode(),
    }  # fmt: skip
    assert p.keep_alive


def test_date_and_server_are_added_unless_the_app_set_them() -> None:
    p = plan(headers=[("Date", "yesterday"), ("Server", "app/1")], body_length=0)
    lines = head_lines(p)
    assert "Date: yesterday" in lines and "Server: app/1" in lines
    assert sum(ln.lower().startswith(("date:", "server:")) for ln in lines) == 2
    assert fields(plan(body_length=0))["server"] == "treadle"


def test_app_headers_keep_their_order_and_spelling() -> None:
    p = plan(headers=[("X-B", "2"), ("x-a", "1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
             body_length=0)  # fmt: skip
    assert head_lines(p)[1:5] == ["X-B: 2", "x-a: 1", "Set-Cookie: a=1", "Set-Cookie: b=2"]


def test_whitespace_around_values_is_not_sent() -> None:
    # RFC 9110 §5.5: OWS around a field value is not part of it (Django's cookies start
    # with a space); inner whitespace and non-ASCII spaces are the app's.
    p = plan(headers=[("Set-Cookie", " csrftoken=abc; Path=/"), ("X", "\t a  b \t"),
                      ("Y", "\xa0v"), ("Content-Length", " 0 ")])  # fmt: skip
    lines = head_lines(p)
    assert "Set-Cookie: csrftoken=abc; Path=/" in lines
    assert "X: a  b" in lines and "Y: \xa0v" in lines and "Content-Length: 0" in lines


def test_latin1_values_are_encoded_as_latin1() -> None:
    assert b"X: caf\xe9\r\n" in plan(headers=[("X", "caf\xe9")], body_length=0).head


@pytest.mark.parametrize(
    "status",
    ["200", "OK", "2000 OK", "200\tOK", "099 Low", "600 High", "200 OK\r\nX: y", "abc x",
     # 1xx is interim (RFC 9110 §15.2): sent as the answer, the client waits for another
     "100 Continue", "101 Switching Protocols", "103 Early Hints", "199 Whatever"],
)  # fmt: skip
def test_invalid_status_is_a_value_error(status: str) -> None:
    with pytest.raises(ValueError):
        plan(status=status)


@pytest.mark.parametrize(
    "header",
    [
        ("Bad Name", "v"), ("Bad:Name", "v"), ("", "v"), ("X\r\nY", "v"), ("X", "a\r\nY: b"),
        ("X", "a\nb"), ("X", "a\rb"), ("X", "a\x00b"), ("X", "\u20ac"), ("Content-Length", "-1"),
        ("Content-Length", "ten"),
    ],
)  # fmt: skip
def test_invalid_headers_are_a_value_error(header: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        plan(headers=[header])


def test_non_str_header_parts_are_a_value_error() -> None:
    with pytest.raises(ValueError):
        plan(headers=[(b"X", "v")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        plan(headers=[("X", b"v")])  # type: ignore[list-item]


def test_differing_content_lengths_from_the_app_are_a_value_error() -> None:
    with pytest.raises(ValueError):
        plan(headers=[("Content-Length", "1"), ("Content-Length", "2")])
    p = plan(headers=[("Content-Length", "3"), ("content-length", "3")])
    assert p.head.count(b"Content-Length") == 1 and p.content_length == 3


def test_chunk_encoding() -> None:
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert encode_chunk(b"") == b""  # an empty chunk would end the body early
    assert LAST_CHUNK == b"0\r\n\r\n"
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_error_response_is_complete_and_closes() -> None:
    raw = error_response(431, "header fields too large", date=DATE)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert "Connection: close" in lines
    assert "Content-Type: text/plain; charset=utf-8" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert f"Date: {DATE.decode()}" in lines
    assert body == b"header fields too large\n"


def test_http_date_is_imf_fixdate() -> None:
    assert http_date(784111777) == DATE
    assert http_date(0) == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(951782400.9) == b"Tue, 29 Feb 2000 00:00:00 GMT"
