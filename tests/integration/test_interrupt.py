"""Ctrl-C (SIGINT) with a request in flight, on the real server in a subprocess.

Without --reload the first Ctrl-C waits for the request (graceful) and says that a second
one stops now, which it does; with --reload the server stops at once, as runserver does.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT, Running, treadle_command

SLOW = b"GET /?s=25 HTTP/1.1\r\nHost: localhost\r\n\r\n"
QUICK_EXIT_S = 5.0  # the graceful timeout is 30 s: an exit within 5 s did not wait for it


def exit_time(server: Running, sig: int) -> tuple[int, float]:
    """Send ``sig``; (exit status, seconds it took)."""
    began = time.monotonic()
    server.proc.send_signal(sig)
    status = server.proc.wait(40)
    return status, time.monotonic() - began


def test_second_ctrl_c_stops_a_graceful_wait_at_once(serve: Callable[..., Running]) -> None:
    server = serve("tests.apps.slow:app", "--graceful-timeout", "30")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(SLOW)
        server.wait_for_line("slow app start")
        server.proc.send_signal(signal.SIGINT)
        line = server.wait_for_line("waiting up to 30 s for in-flight requests")
        assert line.endswith("; Ctrl-C again to stop now"), line
        assert server.proc.poll() is None  # the first Ctrl-C waits for the request
        status, took = exit_time(server, signal.SIGINT)
        assert took < QUICK_EXIT_S, server.output
        assert status == 0, server.output
        assert client.recv(65536) == b""  # abandoned: closed without a response
    assert "second Ctrl-C: abandoning requests still running" in server.output


def test_sigterm_waits_without_the_ctrl_c_hint(serve: Callable[..., Running]) -> None:
    server = serve("tests.apps.slow:app", "--graceful-timeout", "30")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(b"GET /?s=0.5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        server.wait_for_line("slow app start")
        server.proc.send_signal(signal.SIGTERM)
        line = server.wait_for_line("waiting up to 30 s for in-flight requests")
        assert "Ctrl-C" not in line
        assert server.proc.wait(30) == 0
        assert client.recv(65536).startswith(b"HTTP/1.1 200 OK")  # it was waited for


def test_ctrl_c_with_reload_stops_at_once(tmp_path: Path) -> None:
    (tmp_path / "slowmod.py").write_text((ROOT / "tests" / "apps" / "slow.py").read_text())
    command = treadle_command(
        "serve", "slowmod:app", "--reload", "--bind", "tcp:0:interface=127.0.0.1"
    )
    server = Running(command, cwd=tmp_path)
    try:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
            client.sendall(SLOW)
            server.wait_for_line("slow app start")
            status, took = exit_time(server, signal.SIGINT)
        assert took < QUICK_EXIT_S, server.output
        assert status == 0, server.output
        assert "Ctrl-C with --reload: abandoning requests still running" in server.output
        assert "waiting up to" not in server.output
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
