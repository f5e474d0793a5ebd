"""A graceful stop over HTTP/2: GOAWAY (NO_ERROR) at once, open streams finish within
--graceful-timeout, then the connection closes and the process exits 0."""

from __future__ import annotations

import signal
import time

from h2.errors import ErrorCodes

from tests.integration.h2client import H2Client


def test_sigterm_sends_goaway_and_open_streams_finish(serve) -> None:  # noqa: ANN001
    server = serve("tests.apps.slow:app", "--h2c")
    with H2Client(server.port) as client:
        first = client.request("GET", "/a?s=1.5")
        second = client.request("GET", "/b?s=1.5")
        server.wait_for_line("slow app start /b")
        server.proc.send_signal(signal.SIGTERM)
        client.wait(lambda: client.goaway is not None)
        assert client.goaway.error_code == ErrorCodes.NO_ERROR
        assert client.goaway.last_stream_id >= second
        assert client.response(first).status == 200
        assert bytes(client.response(second).body) == b"done after 1.50\n"
        client.wait_closed()
    assert server.proc.wait(30) == 0


def test_a_big_download_finishes_after_goaway(serve) -> None:  # noqa: ANN001
    # The window keeps opening after our GOAWAY: WINDOW_UPDATEs are still read.
    server = serve("tests.apps.big:stream", "--h2c")
    with H2Client(server.port, window=16 * 1024) as client:
        sid = client.request("GET", "/?mib=8")
        stream = client.streams[sid]
        client.wait(lambda: len(stream.body) > 0)
        server.proc.send_signal(signal.SIGTERM)
        client.response(sid)
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.NO_ERROR
        assert len(stream.body) == 8 * 1024 * 1024
    assert server.proc.wait(30) == 0


def test_streams_past_the_graceful_timeout_are_cut(serve) -> None:  # noqa: ANN001
    server = serve("tests.apps.cancel:polite", "--h2c", "--graceful-timeout", "1")
    with H2Client(server.port) as client:
        sid = client.request("GET", "/long")
        server.wait_for_line("polite start /long")
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        client.wait_closed()
        stream = client.streams[sid]
        assert not stream.ended or stream.status != 200
    assert server.proc.wait(30) == 0
    assert time.monotonic() - started < 10
    assert "cancelled=True" in server.wait_for_line("polite end /long")


def test_an_idle_connection_gets_goaway_and_is_closed(serve) -> None:  # noqa: ANN001
    server = serve("tests.apps.hello:app", "--h2c")
    with H2Client(server.port) as client:
        assert client.get("/").status == 200
        server.proc.send_signal(signal.SIGTERM)
        client.wait_closed()
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.NO_ERROR
    assert server.proc.wait(30) == 0
