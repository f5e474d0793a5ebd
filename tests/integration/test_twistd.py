"""``twistd treadle`` and ``twist treadle``: the real programs, in subprocesses, on 127.0.0.1:0.

The daemonized test proves the pool's threads start after twistd forks: threads started
before the fork would not exist in the daemon, and its request would never be answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from tests.conftest import LISTENING, ROOT, Running
from tests.integration.wire import connect, exchange, read_until_close, status_of, wait_for_text

# twistd and twist are Twisted's console scripts: beside this Python (a venv), else on PATH.
BIN = Path(sys.executable).parent
if not (BIN / "twistd").exists() and shutil.which("twistd"):
    BIN = Path(shutil.which("twistd") or "").parent
BIND = "tcp:0:interface=127.0.0.1"


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    raw = exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    _, _, body = raw.partition(b"\r\n\r\n")
    return status_of(raw), body


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }


def test_the_plugin_is_found_by_twisted() -> None:
    names = {maker.tapname for maker in getPlugins(IServiceMaker)}
    assert "treadle" in names
    listed = subprocess.run(
        [str(BIN / "twistd"), "--help"], capture_output=True, text=True, timeout=60, env=env()
    )
    assert re.search(r"^\s+treadle\s+Serve a WSGI app", listed.stdout, re.M), listed.stdout


def test_twistd_nodaemon_serves_and_stops_on_sigterm() -> None:
    server = Running(
        [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "treadle",
            "--app",
            "tests.apps.hello:app",
            "--bind",
            BIND,
            "--threads",
            "2",
        ]
    )
    try:
        server.wait_ready()
        assert "2 threads" in server.wait_for_line("Listening at:")
        assert get(server.port) == (200, b"Hello, world!\n")
        # twistd stops gracefully, then ends by its signal again, as Twisted documents.
        assert server.stop() == -signal.SIGTERM
        assert "Server Shut Down." in server.output
        assert "Traceback" not in server.output
    finally:
        server.kill()


def test_twist_serves_with_settings_from_the_environment() -> None:
    server = Running(
        [str(BIN / "twist"), "treadle", "--app", "tests.apps.hello:app", "--bind", BIND],
        env={"TREADLE_THREADS": "3"},
    )
    try:
        server.wait_ready()
        assert "3 threads" in server.wait_for_line("Listening at:")
        assert get(server.port) == (200, b"Hello, world!\n")
        assert server.stop() in (0, -signal.SIGTERM)
        assert "Main loop terminated." in server.output
    finally:
        server.kill()


def wait_gone(pid: int, timeout: float) -> bool:
    """Has process ``pid`` (not our child: twistd's daemon) exited within ``timeout``?"""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()  # not select(): in a long test run fds pass FD_SETSIZE
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(fd)


def test_daemonized_twistd_writes_its_pidfile_serves_and_stops(tmp_path) -> None:
    pidfile = tmp_path / "twistd.pid"
    logfile = tmp_path / "twistd.log"
    started = subprocess.run(
        [
            str(BIN / "twistd"),
            f"--pidfile={pidfile}",
            f"--logfile={logfile}",
            "treadle",
            "--app",
            "tests.apps.procinfo:app",
            "--bind",
            BIND,
            "--threads",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        cwd=str(ROOT),
    )
    assert started.returncode == 0, started.stderr
    pid = int(wait_for_text(pidfile, timeout=30) or 0)
    try:
        assert pid > 0, "no pid file"
        deadline = time.monotonic() + 30
        match = None
        while match is None and time.monotonic() < deadline:
            match = LISTENING.search(logfile.read_text() if logfile.exists() else "")
            if match is None:
                time.sleep(0.05)  # polling a file the daemon writes
        assert match, logfile.read_text() if logfile.exists() else "no log file"
        port = int(match.group(1).rsplit(":", 1)[1])
        status, body = get(port)
        assert status == 200
        assert json.loads(body)["pid"] == pid  # the daemon itself answered, from its pool
        os.kill(pid, signal.SIGTERM)
        assert wait_gone(pid, timeout=30), "the daemon did not stop on SIGTERM"
        assert not pidfile.exists()
        log = logfile.read_text()
        assert "Server Shut Down." in log and "Traceback" not in log
    finally:
        with contextlib.suppress(ProcessLookupError):
            if pid > 0:
                os.kill(pid, signal.SIGKILL)


def test_bad_options_fail_with_a_usage_line() -> None:
    result = subprocess.run(
        [
            str(BIN / "twistd"),
            "-n",
            "treadle",
            "--app",
            "tests.apps.hello:app",
            "--threads",
            "many",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        cwd=str(ROOT),
    )
    # Status 2 on every Twisted: twistd itself exited 0 on a usage error before 24.x.
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "twistd treadle: error: --threads: not a whole number: 'many' (see: twistd treadle --help)"
    )
    missing = subprocess.run(
        [str(BIN / "twistd"), "-n", "treadle", "--bind", BIND],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        cwd=str(ROOT),
    )
    assert missing.returncode == 2
    assert "--app module:app is required" in missing.stderr


def test_sigterm_lets_the_request_in_flight_finish() -> None:
    server = Running(
        [str(BIN / "twistd"), "-n", "--pidfile=", "treadle", "--app", "tests.apps.slow:app"]
        + ["--bind", BIND, "--graceful-timeout", "20"]
    )
    try:
        server.wait_ready()
        client = connect(server.port, timeout=20)
        client.sendall(b"GET /inflight?s=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        server.wait_for_line("slow app start /inflight")
        server.proc.send_signal(signal.SIGTERM)
        raw = read_until_close(client, timeout=20)
        client.close()
        assert status_of(raw) == 200 and raw.endswith(b"done after 1.00\n")
        assert server.stop() == -signal.SIGTERM
    finally:
        server.kill()


def test_options_twistd_owns_are_not_offered() -> None:
    for flag, value in (("--workers", "2"), ("--log-file", "x.log"), ("--pid-file", "x.pid")):
        result = subprocess.run(
            [str(BIN / "twistd"), "-n", "treadle", "--app", "tests.apps.hello:app", flag, value],
            capture_output=True,
            text=True,
            timeout=60,
            env=env(),
            cwd=str(ROOT),
        )
        assert result.returncode == 2
        assert f"option {flag} not recognized" in result.stderr


def test_an_app_that_cannot_be_imported_stops_twistd_with_one_line(tmp_path) -> None:
    # Daemonizing: the import comes before the fork, so the error reaches the terminal.
    for launcher in (["twistd", f"--pidfile={tmp_path / 'x.pid'}"], ["twist"]):
        result = subprocess.run(
            [str(BIN / launcher[0]), *launcher[1:], "treadle", "--app", "tests.apps.nope:app"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env(),
            cwd=str(ROOT),
        )
        assert result.returncode == 1
        lines = (result.stderr + result.stdout).strip().splitlines()
        assert lines == ["treadle: error: module 'tests.apps.nope' not found"], lines
        assert not (tmp_path / "x.pid").exists()


def test_access_log_to_a_file_and_to_twistds_log(tmp_path) -> None:
    access = tmp_path / "access.log"
    for target in (str(access), "-"):
        server = Running(
            [str(BIN / "twistd"), "-n", "--pidfile=", "treadle", "--app", "tests.apps.hello:app"]
            + ["--bind", BIND, "--access-log", target]
        )
        try:
            server.wait_ready()
            assert get(server.port, "/logged") == (200, b"Hello, world!\n")
            if target == "-":
                server.wait_for_line(lambda line: '"GET /logged HTTP/1.1" 200' in line)
            else:
                assert '"GET /logged HTTP/1.1" 200' in wait_for_text(access)
            server.stop()
        finally:
            server.kill()
