"""--pid-file, --user/--group and --umask on the real server, one process and N workers.

Each test starts ``treadle serve`` as a subprocess, waits for its ready line with a
deadline and looks at what a user would: the pid file's content, the socket file's mode,
and the uid/gid of the process that answered a request (from /proc).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Running, treadle_command

BIND = "tcp:0:interface=127.0.0.1"
WORKERS_READY = re.compile(r"2 workers ready at http://127\.0\.0\.1:(\d+)")


@pytest.fixture
def started() -> Iterator[list[Running]]:
    running: list[Running] = []
    yield running
    for each in running:
        each.kill()


def serve(started: list[Running], *args: str) -> Running:
    server = Running(treadle_command("serve", "tests.apps.procinfo:app", *args))
    started.append(server)
    return server


def get(port: int) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        connection.close()


def wait_pid_file(path: Path, pid: int, timeout: float = 10.0) -> None:
    """Until ``path`` names ``pid`` (it is written just after "Listening at")."""
    deadline = time.monotonic() + timeout
    while not path.exists() or path.read_text() != f"{pid}\n":
        assert time.monotonic() < deadline, f"{path} does not name {pid} after {timeout}s"
        time.sleep(0.01)


def ids_of(pid: int) -> tuple[int, int]:
    """The real uid and gid of a running process, as ps shows them."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def test_pid_file_names_the_single_process_and_goes_at_exit(
    started: list[Running], tmp_path: Path
) -> None:
    pid_file = tmp_path / "treadle.pid"
    server = serve(started, "--bind", BIND, "--pid-file", str(pid_file))
    server.wait_ready()
    wait_pid_file(pid_file, server.proc.pid)
    assert server.stop() == 0
    assert not pid_file.exists()


def test_gunicorn_spelling_names_the_supervisor(started: list[Running], tmp_path: Path) -> None:
    pid_file = tmp_path / "treadle.pid"
    server = serve(started, "--bind", BIND, "--workers", "2", "-p", str(pid_file))
    line = server.wait_for_line(lambda text: WORKERS_READY.search(text) is not None, 30)
    assert pid_file.read_text() == f"{server.proc.pid}\n"  # the supervisor, not a worker
    served_by = get(int(WORKERS_READY.search(line)[1]))["pid"]  # type: ignore[index]
    assert served_by != server.proc.pid
    assert server.stop() == 0
    assert not pid_file.exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_refuses_to_start_while_the_pid_file_names_a_live_process(
    started: list[Running], tmp_path: Path, workers: str
) -> None:
    pid_file = tmp_path / "treadle.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test's process: alive
    server = serve(started, "--bind", BIND, "--workers", workers, "--pid-file", str(pid_file))
    assert server.proc.wait(30) == 2
    server.wait_for_line(f"names process {os.getpid()}, which is running")
    assert pid_file.read_text() == f"{os.getpid()}\n"  # left alone


def test_a_stale_pid_file_is_replaced(started: list[Running], tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid_file = tmp_path / "treadle.pid"
    pid_file.write_text(gone.stdout)
    server = serve(started, "--bind", BIND, "--pid-file", str(pid_file))
    server.wait_ready()
    wait_pid_file(pid_file, server.proc.pid)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_umask_sets_the_unix_socket_mode(
    started: list[Running], tmp_path: Path, workers: str
) -> None:
    path = tmp_path / "app.sock"
    server = serve(
        started, "--bind", f"unix:{path}", "--workers", workers, "--umask", "027"
    )  # fmt: skip
    server.wait_for_line(lambda text: "Listening at" in text or "workers ready" in text, 30)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(20)
        sock.connect(str(path))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")


def test_unknown_user_is_refused_before_binding(started: list[Running], tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    server = serve(started, "--bind", f"unix:{path}", "--user", "no-such-user-p10")
    assert server.proc.wait(30) == 2
    server.wait_for_line("--user no-such-user-p10: no such user")
    assert not path.exists()


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing uid/gid needs root")


@needs_root
@pytest.mark.parametrize("workers", ["1", "2"])
def test_group_is_dropped_before_serving(started: list[Running], workers: str) -> None:
    server = serve(started, "--bind", BIND, "--workers", workers, "--group", "65534")
    if workers == "1":
        server.wait_ready()
        port = server.port
    else:
        line = server.wait_for_line(lambda text: WORKERS_READY.search(text) is not None, 30)
        port = int(WORKERS_READY.search(line)[1])  # type: ignore[index]
        assert ids_of(server.proc.pid)[1] == 65534  # the supervisor dropped it too
    answered = get(port)["pid"]
    assert ids_of(answered) == (os.getuid(), 65534)


def world_readable(path: Path) -> bool:
    """Can any user read ``path`` (so a process running as nobody can import from it)?"""
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH or not mode & stat.S_IROTH:
            return False
    return True


@needs_root
@pytest.mark.skipif(
    not world_readable(Path(sys.base_prefix)) or not world_readable(Path.cwd()),
    reason="the interpreter or checkout is not readable by nobody here",
)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_user_is_dropped_before_the_app_runs(started: list[Running], workers: str) -> None:
    server = serve(started, "--bind", BIND, "--workers", workers, "--user", "nobody")
    if workers == "1":
        server.wait_ready()
        port = server.port
    else:
        line = server.wait_for_line(lambda text: WORKERS_READY.search(text) is not None, 30)
        port = int(WORKERS_READY.search(line)[1])  # type: ignore[index]
    answered = get(port)["pid"]
    assert ids_of(answered)[0] == 65534
