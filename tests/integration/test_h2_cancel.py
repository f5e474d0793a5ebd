"""HTTP/2 stream resets and dropped connections cancel requests as an HTTP/1.1 disconnect does.

Queued work is dropped unrun, a running app sees its token set, treadle.wait raises
RequestCancelled, close() is called, and the connection goes on serving other streams.
"""

from __future__ import annotations

import pytest

from tests.integration.h2client import H2Client


@pytest.fixture
def serve_h2c(serve):  # noqa: ANN001, ANN201
    def start(target: str, *args: str):  # noqa: ANN202
        return serve(target, "--h2c", *args)

    return start


def test_a_reset_stream_cancels_its_running_request(serve_h2c) -> None:
    server = serve_h2c("tests.apps.cancel:polite")
    with H2Client(server.port) as client:
        sid = client.request("GET", "/p")
        server.wait_for_line("polite start /p")
        client.reset(sid)
        assert "cancelled=True" in server.wait_for_line("polite end /p")
        # The connection carries on: another stream on it is served.
        other = client.request("GET", "/next")
        server.wait_for_line("polite start /next")
        client.reset(other)


def test_a_reset_stream_is_dropped_while_queued(serve_h2c) -> None:
    server = serve_h2c("tests.apps.slow:app", "--threads", "1")
    with H2Client(server.port) as client:
        hold = client.request("GET", "/hold?s=1")
        server.wait_for_line("slow app start /hold")
        gone = client.request("GET", "/gone?s=0")
        client.reset(gone)
        assert client.response(hold).status == 200
        after = client.get("/after?s=0")
        assert after.status == 200
    assert "slow app start /gone" not in server.output


def test_treadle_wait_raises_request_cancelled_on_reset(serve_h2c) -> None:
    server = serve_h2c("tests.apps.waiting:forever")
    with H2Client(server.port) as client:
        sid = client.request("GET", "/w")
        server.wait_for_line("forever deferred created")
        client.reset(sid)
        server.wait_for_line("forever deferred cancelled")
        server.wait_for_line("forever got RequestCancelled")


def test_a_dropped_connection_cancels_every_stream_and_calls_close(serve_h2c) -> None:
    server = serve_h2c("tests.apps.waiting:forever_stream", "--threads", "4")
    client = H2Client(server.port)
    for index in range(3):
        client.request("GET", f"/s{index}")
    # wait_for_line matches any line, old or new: count the lines to see all three.
    server.wait_for_line(lambda line: server.output.count("stream deferred created") >= 3)
    client.close()
    server.wait_for_line(lambda line: server.output.count("stream deferred cancelled") >= 3)
    server.wait_for_line(lambda line: server.output.count("stream body closed") >= 3)


def test_a_streamed_response_stops_when_its_stream_is_reset(serve_h2c) -> None:
    server = serve_h2c("tests.apps.cancel:streaming")
    with H2Client(server.port) as client:
        sid = client.request("GET", "/")
        stream = client.streams[sid]
        client.wait(lambda: len(stream.body) > 0)
        client.reset(sid)
        assert "cancelled=True" in server.wait_for_line("streaming closed")
