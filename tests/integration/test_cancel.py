"""Cancellation through the real server: clients that leave, timeouts, hard cancels, the pool."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.integration.wire import (
    connect,
    exchange,
    read_until_close,
    status_of,
    wait_for_text,
)


def test_a_request_whose_client_left_while_queued_never_runs(serve) -> None:
    server = serve("tests.apps.slow:app", "--threads", "1")
    holder = threading.Thread(
        target=exchange, args=(server.port, b"GET /hold?s=2 HTTP/1.1\r\nHost: x\r\n\r\n", 30)
    )
    holder.start()
    server.wait_for_line("slow app start /hold")
    with connect(server.port) as sock:
        sock.sendall(b"GET /gone?s=0 HTTP/1.1\r\nHost: x\r\n\r\n")
    # The queued request's client is gone; once the thread frees up it must be dropped.
    holder.join(30)
    raw = exchange(server.port, b"GET /after?s=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(raw) == 200
    server.wait_for_line("slow app start /after")
    assert "slow app start /gone" not in server.output


def test_a_running_request_sees_its_token_set_when_the_client_leaves(serve) -> None:
    server = serve("tests.apps.cancel:polite")
    with connect(server.port) as sock:
        sock.sendall(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for_line("polite start /p")
    line = server.wait_for_line("polite end /p")
    assert "cancelled=True" in line


def test_a_streaming_request_stops_when_the_client_leaves(serve) -> None:
    server = serve("tests.apps.cancel:streaming")
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(1024)
    line = server.wait_for_line("streaming closed")
    assert "cancelled=True" in line


def test_request_timeout_answers_504_when_nothing_was_sent(serve) -> None:
    server = serve("tests.apps.cancel:polite", "--request-timeout", "1")
    started = time.monotonic()
    raw = exchange(server.port, b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n", timeout=20)
    assert status_of(raw) == 504
    assert time.monotonic() - started < 5
    assert "cancelled=True" in server.wait_for_line("polite end /t")


def test_hard_cancel_interrupts_a_busy_loop_and_the_thread_comes_back(serve) -> None:
    server = serve(
        "tests.apps.cancel:busy",
        "--threads",
        "1",
        "--request-timeout",
        "1",
        "--hard-cancel-after",
        "1",
    )
    raw = exchange(server.port, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", timeout=20)
    assert status_of(raw) == 504
    assert "RequestCancelled" in server.wait_for_line("busy interrupted by")
    # The only thread is back in the pool: the next request runs.
    with connect(server.port) as sock:
        sock.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for_line("busy start /again")


def test_the_pool_keeps_every_thread_after_1000_cancelled_requests(serve) -> None:
    server = serve("tests.apps.cancel:polite", "--threads", "4", "--max-queue", "2000")
    for batch in range(10):
        sockets = [connect(server.port) for _ in range(100)]
        for index, sock in enumerate(sockets):
            sock.sendall(b"GET /c%d-%d HTTP/1.1\r\nHost: x\r\n\r\n" % (batch, index))
        for sock in sockets:
            sock.close()
    # polite waits on its token: these four stay running until their clients leave,
    # so seeing all four start proves four threads are free at the same time.
    holders = []
    for index in range(4):
        sock = connect(server.port, timeout=60)
        sock.sendall(b"GET /final%d HTTP/1.1\r\nHost: x\r\n\r\n" % index)
        holders.append(sock)
    for index in range(4):
        server.wait_for_line(f"polite start /final{index}", timeout=60)
    for sock in holders:
        sock.close()
    assert server.proc.poll() is None


def test_body_upload_that_stalls_after_continue_is_cut_off(serve) -> None:
    server = serve("tests.apps.echo:app", "--body-timeout", "1")
    with connect(server.port) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100")
        sock.sendall(b"only a little")
        started = time.monotonic()
        raw = read_until_close(sock, timeout=15)
    assert time.monotonic() - started < 8
    assert raw == b"" or status_of(raw) >= 400
    # The thread was released: the server still answers.
    assert (
        status_of(exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        == 200
    )


def test_timings_add_up(serve, tmp_path) -> None:
    log_path = tmp_path / "access.log"
    server = serve(
        "tests.apps.waiting:app",
        "--access-log",
        str(log_path),
        "--access-log-format",
        "%(queue_us)s %(service_us)s %(wait_us)s %(wait_count)s %(D)s",
    )
    raw = exchange(server.port, b"GET /?s=0.2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.endswith(b"slept\n")
    queue_us, service_us, wait_us, wait_count, total_us = map(int, wait_for_text(log_path).split())
    assert wait_count == 1
    assert 200_000 <= wait_us <= service_us  # waited at least the 0.2 s it asked for
    assert service_us + queue_us <= total_us
    assert total_us - (service_us + queue_us) < 50_000  # the rest is sending the answer


def test_a_wait_is_interrupted_when_the_client_leaves(serve) -> None:
    server = serve("tests.apps.waiting:forever")
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for_line("forever deferred created")
    server.wait_for_line("forever deferred cancelled")
    server.wait_for_line("forever got RequestCancelled")
    # The pool thread is free again and the server answers.
    server.wait_for_line("cancelled: client went away")


def test_a_wait_inside_a_streamed_body_is_cancelled_and_close_is_called(serve) -> None:
    server = serve("tests.apps.waiting:forever_stream")
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for_line("stream deferred created")
    server.wait_for_line("stream deferred cancelled")
    server.wait_for_line("stream body closed")


@pytest.mark.parametrize("path", ["/callback", "/canceller"])
def test_a_cancel_hook_that_raises_does_not_stop_the_connections_bookkeeping(
    serve, tmp_path, path
) -> None:
    log_path = tmp_path / "access.log"
    server = serve(
        "tests.apps.raising_cancel:app",
        "--access-log",
        str(log_path),
        "--graceful-timeout",
        "60",
    )
    with connect(server.port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        server.wait_for_line("waiting on the")
        # A graceful stop now waits for this request...
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_line("waiting up to")
    # ...until its client leaves: the hook raises, is logged once, and the rest goes on.
    started = time.monotonic()
    assert server.proc.wait(30) == 0
    assert time.monotonic() - started < 30, "the graceful stop waited for nothing"
    assert f'"GET {path} HTTP/1.1" - 0' in wait_for_text(log_path)
    output = server.output
    assert output.count("Traceback") == 1, output
    assert "broken cancel" in output
    if path == "/callback":
        assert "token set=True" in output
    else:
        assert "wait ended: RequestCancelled" in output
