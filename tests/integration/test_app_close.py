"""The app's close() runs after its response has gone to the client (PEP 3333 allows it)."""

from __future__ import annotations

from tests.integration.wire import connect, exchange, read_response, status_of


def test_a_whole_response_reaches_the_client_before_the_apps_close_returns(serve) -> None:
    server = serve("tests.apps.closing:app", "--threads", "2")
    with connect(server.port, timeout=10) as sock:
        sock.sendall(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
        # close() blocks until /release is asked: the response must not wait for it.
        response = read_response(sock)
        assert response.status == 200
        assert response.body == b"sent before close\n"  # type: ignore[attr-defined]
        server.wait_for_line("close start")
        assert "close end" not in server.output
        released = exchange(
            server.port, b"GET /release HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status_of(released) == 200
        assert "released=True" in server.wait_for_line("close end")
        # The connection stays usable once close() has returned.
        sock.sendall(b"GET /release HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).status == 200


def test_a_graceful_stop_waits_for_a_close_that_runs_after_its_response(serve) -> None:
    server = serve("tests.apps.closing:app", "--graceful-timeout", "20")
    request = b"GET /whole?wait=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = exchange(server.port, request)
    assert raw.endswith(b"sent before close\n")
    server.wait_for_line("close start")
    assert server.stop() == 0
    # close() gave up waiting after its 3 s; the process must not have exited before that.
    assert "close end released=False" in server.output
