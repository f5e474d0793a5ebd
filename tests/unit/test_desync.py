"""Response order after a malformed pipelined request, under every TCP segmentation.

Reactor tier: the real HTTPChannel on a StringTransport; the app's jobs are held and run
one at a time, so a request is still in flight when the bad one behind it arrives (the
timing in which a server that answers errors at once sends its 400 too early).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport

from treadle.config import Config
from treadle.deadlines import Deadlines
from treadle.dispatch import Dispatcher
from treadle.http.protocol import HTTPFactory
from treadle.timing import RequestRecord
from treadle.wsgi import body as bodies
from treadle.wsgi.container import WSGIContainer


def echo_path(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"path=" + environ["PATH_INFO"].encode("latin-1")]


class Connection:
    """One server connection whose app jobs wait until the test runs them."""

    def __init__(self, app: Any = echo_path) -> None:
        self.clock = MemoryReactorClock()
        self.deadlines = Deadlines(self.clock)
        self.deadlines.start()
        self.container = WSGIContainer(app, call_from_thread=lambda f, *a: f(*a))
        self.held: list[Any] = []
        factory = HTTPFactory(
            Config.from_settings({}),
            deadlines=self.deadlines,
            dispatch=Dispatcher(submit=self.submit),
            bodies=bodies,
            records=RequestRecord,
        )
        self.transport = StringTransport()
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def submit(self, exchange: Any) -> bool:
        self.held.append(self.container.job(exchange))
        return True

    def run_held(self) -> None:
        """Run queued app jobs in order until none is left (each may start the next)."""
        for _ in range(100):
            if not self.held:
                return
            self.held.pop(0).run()
        raise AssertionError("jobs keep coming")


STATUS_OR_BODY = re.compile(rb"HTTP/1\.1 (\d{3}) |path=(/[a-z]+)")


def answers(raw: bytes) -> list[str]:
    """The statuses and echoed paths in the order the client reads them."""
    return [(m[1] or m[2]).decode() for m in STATUS_OR_BODY.finditer(raw)]


def serve(pieces: list[bytes]) -> tuple[list[str], bool]:
    connection = Connection()
    for piece in pieces:
        connection.protocol.dataReceived(piece)
    connection.run_held()
    return answers(connection.transport.value()), connection.transport.disconnecting


def req(target: bytes, method: bytes = b"GET", extra: bytes = b"") -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


CL_TE = b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
STREAMS = {
    "bad_method": (req(b"/one") + req(b"/two", b"PoST"), ["200", "/one", "400"]),
    "garbage": (
        req(b"/first") + req(b"/second") + b"GARBAGE\r\n\r\n",
        ["200", "/first", "200", "/second", "400"],
    ),
    "cl_and_te": (
        req(b"/ok") + req(b"/smuggle", b"POST", CL_TE) + b"0\r\n\r\n",
        ["200", "/ok", "400"],
    ),
    "bad_chunk_ext": (
        req(b"/ok")
        + req(b"/up", b"POST", b"Transfer-Encoding: chunked\r\n")
        + b"5;=v\r\nhello\r\n0\r\n\r\n",
        ["200", "/ok", "400"],
    ),
}


NAMES = sorted(STREAMS)


@pytest.mark.parametrize("name", NAMES)
def test_every_request_before_a_bad_one_is_answered_in_order_under_every_split(
    name: str,
) -> None:
    stream, want = STREAMS[name]
    for cut in range(len(stream) + 1):
        pieces = [p for p in (stream[:cut], stream[cut:]) if p]
        got, closed = serve(pieces)
        assert got == want, f"split at {cut}: {stream[:cut]!r} | {stream[cut:]!r}"
        assert closed, f"split at {cut}: the connection must close after the 400"


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_request_sent_byte_by_byte_is_answered_after_the_good_ones(name: str) -> None:
    stream, want = STREAMS[name]
    got, closed = serve([stream[i : i + 1] for i in range(len(stream))])
    assert got == want and closed


def test_an_error_inside_the_body_being_read_is_answered_at_once() -> None:
    connection = Connection()
    connection.protocol.dataReceived(
        req(b"/up", b"POST", b"Transfer-Encoding: chunked\r\n") + b"zz\r\n"
    )
    out = connection.transport.value()
    assert out.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in out
    assert connection.held == [], "a request whose body is broken never reaches the app"
    assert connection.transport.disconnecting
