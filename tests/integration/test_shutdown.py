"""The end of a graceful stop: what clients still waiting get."""

from __future__ import annotations

import signal
import threading

from tests.integration.wire import connect, read_until_close, status_of


def test_requests_still_queued_at_the_graceful_timeout_get_503_and_close(serve) -> None:
    server = serve("tests.apps.slow:app", "--threads", "1", "--graceful-timeout", "1")
    with connect(server.port, timeout=30) as running, connect(server.port, timeout=30) as queued:
        running.sendall(b"GET /hold?s=20 HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for_line("slow app start /hold")
        queued.sendall(b"GET /queued?s=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        # The only thread is busy: /queued waits in the queue until the stop gives up on it.
        answers: dict[str, bytes] = {}
        reader = threading.Thread(target=lambda: answers.update(q=read_until_close(queued, 30)))
        reader.start()
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_line("abandoning requests still running")
        reader.join(30)
        assert server.proc.wait(30) == 0
    raw = answers["q"]
    assert status_of(raw) == 503
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nconnection: close" in head
    assert b"\r\nretry-after: " in head
    assert "slow app start /queued" not in server.output


def test_a_request_still_uploading_at_the_graceful_timeout_gets_503_and_close(serve) -> None:
    server = serve("tests.apps.echo:app", "--graceful-timeout", "1")
    with connect(server.port, timeout=30) as uploading:
        uploading.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
        )
        # The reactor has read the head once it says "100 Continue".
        assert uploading.recv(100).startswith(b"HTTP/1.1 100")
        uploading.sendall(b"part of it")
        server.proc.send_signal(signal.SIGTERM)
        raw = read_until_close(uploading, 30)
    assert server.proc.wait(30) == 0
    assert status_of(raw) == 503
    assert b"\r\nconnection: close" in raw.split(b"\r\n\r\n", 1)[0].lower()
