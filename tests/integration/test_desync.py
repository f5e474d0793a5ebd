"""A malformed request behind valid ones, over real sockets, cut at every byte.

The real ``treadle serve`` in a subprocess (the echo app runs in its thread pool, so the
first request is often still running when the bad one is read). Each split point is one
connection that sends the stream in two writes with Nagle off.
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from tests.integration.wire import connect, read_until_close


def req(target: bytes, method: bytes = b"GET", extra: bytes = b"") -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


STREAMS = {
    "bad_method": (req(b"/one") + req(b"/two", b"PoST"), ["200 /one", "400"]),
    "garbage": (
        req(b"/first") + req(b"/second") + b"GARBAGE\r\n\r\n",
        ["200 /first", "200 /second", "400"],
    ),
    "cl_and_te": (
        req(b"/ok")
        + req(b"/smuggle", b"POST", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
        + b"0\r\n\r\n",
        ["200 /ok", "400"],
    ),
}
RESPONSE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n(.*?)\r\n\r\n", re.S)
LENGTH = re.compile(rb"(?im)^content-length: *(\d+)")


def answers(raw: bytes) -> list[str]:
    """Each response in wire order: "200 /path" for the echo app's answers, else the status."""
    out = []
    pos = 0
    while (match := RESPONSE.match(raw, pos)) is not None:
        length_match = LENGTH.search(match[2])
        assert length_match is not None, raw
        body = raw[match.end() : match.end() + int(length_match[1])]
        pos = match.end() + len(body)
        if match[1] == b"200":
            out.append(f"200 {json.loads(body)['PATH_INFO']}")
        else:
            out.append(match[1].decode())
    assert pos == len(raw), f"bytes after the last response: {raw[pos:]!r}"
    return out


def send_in_two(port: int, first: bytes, second: bytes) -> bytes:
    with connect(port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if first:
            sock.sendall(first)
        if second:
            sock.sendall(second)
        return read_until_close(sock)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_request_before_a_bad_one_is_answered_in_order_at_every_split(
    serve, name: str
) -> None:
    server = serve("tests.apps.echo:app", "--threads", "4")
    stream, want = STREAMS[name]
    deadline = time.monotonic() + 120
    for cut in range(len(stream) + 1):
        assert time.monotonic() < deadline, "took too long"
        raw = send_in_two(server.port, stream[:cut], stream[cut:])
        assert answers(raw) == want, f"split at {cut}: {raw!r}"
    # The server logged each refusal on one line and kept serving.
    assert "Traceback" not in server.output
    assert answers(send_in_two(server.port, req(b"/after", extra=b"Connection: close\r\n"), b""))


def test_a_token_method_llhttp_does_not_know_reaches_the_app(serve) -> None:
    server = serve("tests.apps.echo:app")
    stream = (
        req(b"/a", b"-BLARGH")
        + req(b"/b", b"PROPFIND", b"Content-Length: 3\r\n")
        + b"abc"
        + req(b"/c", b"get", b"Connection: close\r\n")
    )
    raw = send_in_two(server.port, stream, b"")
    bodies = [json.loads(b) for b in re.findall(rb"\{.*?\}", raw)]
    assert [(b["REQUEST_METHOD"], b["PATH_INFO"]) for b in bodies] == [
        ("-BLARGH", "/a"),
        ("PROPFIND", "/b"),
    ]
    assert bodies[1]["body_length"] == 3
    assert answers(raw) == ["200 /a", "200 /b", "400"]  # lowercase: 400, as gunicorn/waitress
