"""The real ``treadle serve`` in a subprocess: the CLI, HTTP/1.1 on the wire, WSGI, shutdown."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import ROOT, treadle_command
from tests.integration.wire import (
    connect,
    exchange,
    read_response,
    read_until_close,
    status_of,
    wait_for_text,
)

# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.apps.nonexistent:app", "module 'tests.apps.nonexistent' not found"),
        ("tests.apps.hello:missing", "has no attribute 'missing'"),
        ("tests.apps.hello:not_callable", "is not callable"),
        ("nocolon", "must look like module:app"),
    ],
)
def test_a_bad_target_fails_before_binding_with_one_line_and_status_2(target, message) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        treadle_command("serve", target, "--bind", f"tcp:{port}:interface=127.0.0.1"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Listening" not in result.stderr + result.stdout


def test_dotted_target_and_factory(serve) -> None:
    server = serve("tests.apps.hello.make_app", "--factory")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"Hello, world!\n"
    conn.close()


def test_listening_line_names_every_address(serve, tmp_path) -> None:
    sock_path = tmp_path / "app.sock"
    server = serve("tests.apps.hello:app", "--bind", f"unix:{sock_path}:mode=660")
    line = server.wait_for_line("Listening at:")
    assert f"unix:{sock_path}" in line and f"http://127.0.0.1:{server.port}" in line
    assert oct(os.stat(sock_path).st_mode & 0o777) == "0o660"
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(sock_path))
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_until_close(client).endswith(b"Hello, world!\n")


# -- HTTP/1.1 ----------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(serve) -> None:
    server = serve("tests.apps.echo:app")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    for index in range(20):
        conn.request("POST", f"/n/{index}?q={index}", body=b"x" * index, headers={"X-Test": "t"})
        info = json.loads(conn.getresponse().read())
        assert info["PATH_INFO"] == f"/n/{index}" and info["QUERY_STRING"] == f"q={index}"
        assert info["body_length"] == index and info["HTTP_X_TEST"] == "t"
    conn.close()


def test_http10_keep_alive(serve) -> None:
    server = serve("tests.apps.hello:app")
    with connect(server.port) as sock:
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = read_response(sock)
            assert response.status == 200 and response.getheader("Connection") == "keep-alive"


def test_pipelined_requests_come_back_in_order(serve) -> None:
    server = serve("tests.apps.echo:app", "--threads", "4")
    requests = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % index for index in range(10))
    with connect(server.port) as sock:
        sock.sendall(requests)
        paths = [json.loads(read_response(sock).body)["PATH_INFO"] for _ in range(10)]
    assert paths == [f"/p{index}" for index in range(10)]


def test_chunked_request_body_and_chunked_response(serve) -> None:
    server = serve("tests.apps.echo:app")
    raw = exchange(
        server.port,
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n",
    )
    body = raw.split(b"\r\n\r\n", 1)[1]
    info = json.loads(body)
    assert info["CONTENT_LENGTH"] == "9" and info["body_head"] == "wikipedia"
    streamed = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(streamed) == 200


def test_streamed_response_without_length_is_chunked(serve) -> None:
    server = serve("tests.apps.stream:app")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    # More than the bridge's high-water mark, so it cannot cross as one whole response.
    conn.request("GET", "/?chunks=2000&size=1000")
    response = conn.getresponse()
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert len(response.read()) == 2_000_000
    conn.close()


def test_expect_continue(serve) -> None:
    server = serve("tests.apps.echo:app")
    with connect(server.port) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = sock.recv(1024)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        response = read_response(sock)
        assert json.loads(response.body)["body_head"] == "hello"


def test_head_has_headers_but_no_body(serve) -> None:
    server = serve("tests.apps.hello:app")
    raw = exchange(server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 14" in head and body == b""


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
        (b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(101))
            + b"\r\n",
            431,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 17000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    ],
)
def test_bad_input_gets_the_right_status_and_close_and_the_server_goes_on(
    serve_shared, request_bytes, status
) -> None:
    raw = exchange(serve_shared.port, request_bytes)
    assert status_of(raw) == status
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"Connection: close" in head
    assert b"Traceback" not in raw
    assert serve_shared.proc.poll() is None
    ok = exchange(serve_shared.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(ok) == 200


def test_body_over_the_limit_gets_413_before_it_is_sent(serve) -> None:
    server = serve("tests.apps.echo:app", "--max-body", "1M")
    with connect(server.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        raw = read_until_close(sock)
    assert status_of(raw) == 413 and b"Connection: close" in raw


def test_slowloris_head_gets_408_even_when_trickling(serve) -> None:
    server = serve("tests.apps.hello:app", "--header-timeout", "2")
    started = time.monotonic()
    with connect(server.port) as sock:
        got = b""
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.25)  # the client trickles: one byte per quarter second
            try:
                got = sock.recv(4096)
            except TimeoutError:
                continue
            break
        got += read_until_close(sock, timeout=5)
    assert status_of(got) == 408
    assert time.monotonic() - started < 6


def test_client_disconnecting_mid_response_is_survived(serve) -> None:
    server = serve("tests.apps.big:stream")
    with connect(server.port) as sock:
        sock.sendall(b"GET /?mib=512 HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(65536)
    server.wait_for_line("stream body closed")
    raw = exchange(server.port, b"GET /?mib=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(raw) == 200 and len(raw.split(b"\r\n\r\n", 1)[1]) == 1024 * 1024


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_a_1gib_stream_to_a_slow_reader_keeps_memory_bounded(serve) -> None:
    server = serve("tests.apps.big:stream")
    with connect(server.port, timeout=60) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /?mib=1024 HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        peak = 0
        target = 1024 * 1024 * 1024
        buffer = bytearray(1024 * 1024)
        # Read slowly for a while (the app thread must block, not buffer), then drain.
        for step in range(200):
            received += sock.recv_into(buffer, 16 * 1024)
            if step % 20 == 0:
                peak = max(peak, rss_kib(server.proc.pid))
        while received < target + 100:
            count = sock.recv_into(buffer)
            if not count:
                break
            received += count
            if received % (64 * 1024 * 1024) < count:
                peak = max(peak, rss_kib(server.proc.pid))
    assert received >= target
    assert peak < 100 * 1024, f"server RSS reached {peak} KiB"


def test_pipelining_without_reading_answers_nothing_ahead_and_then_everything(serve) -> None:
    # A client that pipelines requests for 1 MiB pages and reads none of the answers must
    # not make the server hold a response per request: the next request starts only once
    # the client has taken the previous response. When it reads, it gets them all.
    server = serve("tests.apps.big:whole")
    count = 200
    with connect(server.port, timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * count)
        peak = 0
        window_end = time.monotonic() + 2.0  # a measuring window while nothing is read
        while time.monotonic() < window_end:
            peak = max(peak, rss_kib(server.proc.pid))
            time.sleep(0.05)
        bodies = 0
        for _ in range(count):
            response = read_response(sock)
            bodies += response.status == 200 and len(response.body) == 1024 * 1024
    assert peak < 120 * 1024, f"server RSS reached {peak} KiB"
    assert bodies == count


def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(serve) -> None:
    server = serve("tests.apps.big:stream", "--send-timeout", "2")
    with connect(server.port, timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /?mib=1024 HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for_line("client read nothing for")
        # The app's iterable is closed (its thread is free) and the connection is gone.
        server.wait_for_line("stream body closed")
        with pytest.raises(ConnectionResetError):
            while sock.recv(1024 * 1024):
                continue
    raw = exchange(server.port, b"GET /?mib=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(raw) == 200


def test_a_slow_reader_that_keeps_reading_is_not_dropped(serve) -> None:
    server = serve("tests.apps.big:stream", "--send-timeout", "2")
    with connect(server.port, timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /?mib=1024 HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        end = time.monotonic() + 5.0  # longer than the send timeout, reading all along
        while time.monotonic() < end:
            chunk = sock.recv(64 * 1024)
            assert chunk, "the server dropped a client that was reading"
            received += len(chunk)
            # Paces the reader (at most 640 KiB/s, far slower than the server) in steps
            # a loopback window update (one 64 KiB segment) can follow.
            time.sleep(0.1)
    assert "client read nothing" not in server.output
    assert received > 0


def test_app_errors_give_500_or_abort_and_never_a_traceback(serve) -> None:
    for target, expect in [
        ("tests.apps.errors:before_head", 500),
        ("tests.apps.errors:bad_header", 500),
        ("tests.apps.errors:no_start_response", 500),
    ]:
        server = serve(target)
        raw = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(raw) == expect and b"Traceback" not in raw and b"boom" not in raw
        server.stop()
    server = serve("tests.apps.errors:after_head")
    raw = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(raw) == 200
    assert not raw.endswith(b"0\r\n\r\n"), "an aborted stream must not look complete"
    server.wait_for_line("failed in the app")


def test_close_is_called_on_the_iterable(serve) -> None:
    server = serve("tests.apps.errors:with_close")
    # The body may go out whole or chunked (it depends on when the reactor takes the
    # parts): read it as a client does, not as raw bytes.
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/", headers={"Connection": "close"})
    assert conn.getresponse().read() == b"ab"
    conn.close()
    server.wait_for_line("ClosingBody.close called")


def test_apps_under_wsgiref_validate(serve) -> None:
    server = serve("tests.apps.validated:echo")
    raw = exchange(
        server.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    assert status_of(raw) == 200 and raw.endswith(b"hello")
    server.wait_for_line("validated app ran")
    server.stop()
    server = serve("tests.apps.validated:stream")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"written;one;two;"
    conn.close()


def test_file_wrapper_is_streamed_whole(serve) -> None:
    server = serve("tests.apps.big:file")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.getheader("Content-Length") == str(1024 * 1024)
    assert response.read() == bytes(range(256)) * 4096
    conn.close()


def test_full_queue_answers_503_at_once(serve) -> None:
    server = serve("tests.apps.slow:app", "--threads", "1", "--max-queue", "0")
    results: list[int] = []

    def call(path: str) -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        conn.request("GET", path)
        results.append(conn.getresponse().status)
        conn.close()

    busy = threading.Thread(target=call, args=("/busy?s=3",))
    busy.start()
    server.wait_for_line("slow app start /busy")
    # The only thread is busy and no request may wait: 503 at once, with Retry-After.
    started = time.monotonic()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/refused?s=0")
    response = conn.getresponse()
    assert response.status == 503
    assert response.getheader("Retry-After") == "1"
    assert response.getheader("Connection") == "close"
    assert time.monotonic() - started < 1.0
    busy.join(30)
    assert results == [200]
    server.wait_for_line("all threads busy")
    conn.close()


def test_1000_concurrent_connections_are_all_served(serve) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    server = serve("tests.apps.hello:app")
    sockets = [connect(server.port, timeout=30) for _ in range(1000)]
    try:
        for sock in sockets:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        served = 0
        for sock in sockets:
            response = read_response(sock)
            served += response.status == 200 and response.body == b"Hello, world!\n"
        assert served == 1000
    finally:
        for sock in sockets:
            sock.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_after_traffic_an_idle_server_stops_spinning(serve) -> None:
    # The reactor polls for a while after traffic instead of sleeping at once (--idle-spin-us);
    # that must stay bounded: once the clients are gone the server sleeps.
    server = serve("tests.apps.hello:app", "--idle-spin-us", "5000")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    for _ in range(200):
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"Hello, world!\n"
    conn.close()
    before = cpu_seconds(server.proc.pid)
    time.sleep(1.0)  # a measuring window, not a wait for a condition
    used = cpu_seconds(server.proc.pid) - before
    assert used < 0.1, f"an idle server used {used:.2f} s of CPU in 1 s"


def gc_settings(server) -> str:
    raw = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return raw.split(b"\r\n\r\n", 1)[1].decode().strip()


def test_the_app_runs_with_a_raised_young_gc_threshold_and_frozen_startup_objects(serve) -> None:
    # A burst of waiting requests is alive, not garbage: collecting every 700 allocations
    # only promotes it (--gc-threshold); what was loaded at startup is frozen.
    default = serve("tests.apps.gcinfo:app")
    young, middle, old, frozen = gc_settings(default).split()
    assert young == "20000"
    assert int(frozen.removeprefix("frozen=")) > 1000
    own = serve("tests.apps.gcinfo:app", "--gc-threshold", "0")
    interpreter = subprocess.run(
        [sys.executable, "-c", "import gc; print(*gc.get_threshold())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert gc_settings(own).split()[:3] == interpreter
    assert [middle, old] == interpreter[1:]


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(serve) -> None:
    server = serve("tests.apps.slow:app", "--graceful-timeout", "20")
    result: dict[str, object] = {}

    def call() -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        conn.request("GET", "/inflight?s=1.5")
        response = conn.getresponse()
        result["status"] = response.status
        result["body"] = response.read()
        result["connection"] = response.getheader("Connection")
        conn.close()

    client = threading.Thread(target=call)
    client.start()
    server.wait_for_line("slow app start /inflight")
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for_line("waiting up to")
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=2).close()
    client.join(30)
    assert result["status"] == 200 and result["body"].startswith(b"done")  # type: ignore[union-attr]
    assert result["connection"] == "close"
    assert server.proc.wait(30) == 0


def test_graceful_timeout_bounds_the_wait(serve) -> None:
    server = serve("tests.apps.slow:app", "--graceful-timeout", "1")
    client = threading.Thread(
        target=lambda: exchange(server.port, b"GET /?s=30 HTTP/1.1\r\nHost: x\r\n\r\n", 40),
        daemon=True,
    )
    client.start()
    server.wait_for_line("slow app start")
    started = time.monotonic()
    assert server.stop(timeout=20) == 0
    assert time.monotonic() - started < 10


def test_python_api_serve(tmp_path) -> None:
    script = tmp_path / "run.py"
    script.write_text(
        "import treadle\n"
        "from tests.apps.hello import app\n"
        "raise SystemExit(treadle.serve(app, bind=['tcp:0:interface=127.0.0.1'], threads=2))\n"
    )
    from tests.conftest import Running

    server = Running([sys.executable, str(script)])
    try:
        server.wait_ready()
        raw = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert raw.endswith(b"Hello, world!\n")
        assert server.stop() == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def test_access_log_has_the_combined_format_and_duration(serve, tmp_path) -> None:
    log_path = tmp_path / "access.log"
    server = serve("tests.apps.hello:app", "--access-log", str(log_path))
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/x?y=1", headers={"User-Agent": "probe/1", "Referer": "http://r/"})
    conn.getresponse().read()
    line = wait_for_text(log_path)
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /x?y=1 HTTP/1.1" 200 14 "http://r/" "probe/1" ' in line
    assert int(line.rsplit(" ", 1)[1]) > 0  # duration in microseconds
    conn.close()
