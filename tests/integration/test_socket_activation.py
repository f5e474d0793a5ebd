"""systemd socket activation: ``--bind systemd:domain=INET:index=0`` on a socket passed in.

Started by Debian's ``systemd-socket-activate`` (it binds, waits for the first connection,
then execs treadle with LISTEN_PID/LISTEN_FDS and the socket on fd 3), as systemd does, or
by a shell that sets LISTEN_PID itself when that program is absent. The first request is
sent before treadle runs: the kernel queues it on the passed socket, and it must be served.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, Running, treadle_command

ACTIVATE = shutil.which("systemd-socket-activate")


@pytest.fixture
def started() -> Iterator[list[Running]]:
    running: list[Running] = []
    yield running
    for each in running:
        each.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate (Debian: systemd) absent")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_systemd_socket_activate(started: list[Running], workers: str) -> None:
    port = free_port()
    serve = treadle_command(
        "serve", "tests.apps.procinfo:app", "--bind", "systemd:domain=INET:index=0",
        "--workers", workers,
    )  # fmt: skip
    server = Running([str(ACTIVATE), "-l", f"127.0.0.1:{port}", *serve])
    started.append(server)
    server.wait_for_line(f"Listening on 127.0.0.1:{port}")
    first = get(port)  # treadle starts on this connection and serves it
    assert first["multiprocess"] is (workers != "1")
    if workers == "2":
        server.wait_for_line("2 workers ready at http://127.0.0.1:")
        assert first["pid"] != server.proc.pid  # a worker answered on systemd's socket
    else:
        assert first["pid"] == server.proc.pid
    assert get(port)["pid"] > 0
    assert server.stop() == 0


def test_listen_fds_passed_by_hand(started: list[Running]) -> None:
    """As systemd does it: fd 3 listening, LISTEN_FDS=1, LISTEN_PID the server's own pid."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    serve = treadle_command(
        "serve", "tests.apps.procinfo:app", "--bind", "systemd:domain=INET:index=0",
        "--workers", "2",
    )  # fmt: skip
    # A few lines of Python in the role of systemd: the socket on fd 3, LISTEN_PID its own
    # pid, then exec treadle (same pid).
    harness = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = "
        "str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; os.execv(sys.argv[2], sys.argv[2:])"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", harness, str(listener.fileno()), *serve],
        pass_fds=(listener.fileno(),),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # read only if it fails
    )
    listener.close()
    try:
        # Queued by the kernel on the passed socket until a worker accepts it.
        try:
            assert get(port)["multiprocess"] is True
        except OSError:
            proc.kill()
            raise AssertionError(proc.communicate(timeout=10)[1]) from None
        assert get(port)["pid"] != proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        if proc.stderr is not None and not proc.stderr.closed:
            proc.communicate(timeout=10)  # reaps it and closes the pipe


def test_systemd_bind_without_sockets_is_refused(started: list[Running]) -> None:
    serve = treadle_command(
        "serve", "tests.apps.procinfo:app", "--bind", "systemd:domain=INET:index=0",
        "--workers", "2",
    )  # fmt: skip
    server = Running(serve, env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    started.append(server)
    assert server.proc.wait(30) != 0
    server.wait_for_line("could not start")
