"""The access log from outside: escaped fields, and a log target that does not keep up."""

from __future__ import annotations

import http.client
import os
import re

from tests.integration.wire import exchange, status_of, wait_for_text

COMBINED = re.compile(
    r'^(\S+) - - \[([^]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}|-) (\d+) '
    r'"((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)" (\d+)$'
)


def test_a_quote_or_a_non_ascii_byte_in_a_header_cannot_break_the_line(serve, tmp_path) -> None:
    log_path = tmp_path / "access.log"
    server = serve("tests.apps.hello:app", "--access-log", str(log_path))
    raw = exchange(
        server.port,
        b"GET /p?q=%22 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b'User-Agent: evil" 200 1 "-" "x\\ \xe9\r\n'
        b'Referer: http://a/"b\r\n\r\n',
    )
    assert status_of(raw) == 200
    line = wait_for_text(log_path)
    match = COMBINED.match(line)
    assert match is not None, line
    assert match.group(3) == "GET /p?q=%22 HTTP/1.1"
    assert match.group(6) == 'http://a/\\"b'
    assert match.group(7) == 'evil\\" 200 1 \\"-\\" \\"x\\\\ \\xe9'


def test_a_log_pipe_nobody_reads_does_not_stop_the_server(serve, tmp_path) -> None:
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    # The read end is open (so the server can open the pipe) and never read: once its
    # 64 KiB buffer is full, every write to it would block.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        server = serve("tests.apps.hello:app", "--access-log", str(fifo))
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        agent = "a" * 2000  # ~2 KiB per line: the pipe is full after about 30 requests
        for _ in range(300):
            conn.request("GET", "/", headers={"User-Agent": agent})
            response = conn.getresponse()
            assert response.read() == b"Hello, world!\n"
        conn.close()
        # And it still stops: the lines stuck for the pipe do not hold the exit.
        assert server.stop(timeout=30) == 0
    finally:
        os.close(reader)
