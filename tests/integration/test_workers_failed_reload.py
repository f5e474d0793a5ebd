"""A failed SIGHUP reload, then a second SIGHUP before the failed code's last worker is stopped.

Found in CI: a worker of the broken code failed after the fixed code's SIGHUP, counted as
the new code's and stopped the fixed workers; the reload never finished. The race needs the
broken code's first failure and the second SIGHUP to reach the supervisor together, so the
test holds the supervisor with SIGSTOP while both happen, then lets it go on (SIGCONT).
"""

from __future__ import annotations

import http.client
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.test_workers import APP_V1, supervise

__all__ = ["supervise"]  # the fixture

BROKEN_IN_TURN = """\
import os
import time

# The first worker to import this fails at once; the next waits for the test's go-ahead.
try:
    os.close(os.open("first-failure", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
except FileExistsError:
    deadline = time.monotonic() + 60
    while not os.path.exists("release") and time.monotonic() < deadline:
        time.sleep(0.05)
raise RuntimeError("this version cannot load")
"""


def children_of(pid: int) -> set[int]:
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # it exited while we looked
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.add(int(entry.name))
    return children


def state_of(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)  # polling /proc: there is nothing to wait on


def nth_line_with(text: str, n: int) -> Callable[[str], bool]:
    """A wait_for_line predicate true on the n-th line containing ``text`` (it sees each once)."""
    seen = 0

    def predicate(line: str) -> bool:
        nonlocal seen
        seen += text in line
        return seen >= n

    return predicate


def test_a_late_failure_of_the_failed_code_does_not_fail_the_next_reload(
    supervise, tmp_path
) -> None:
    (tmp_path / "hupapp.py").write_text(APP_V1)
    env = {"PYTHONDONTWRITEBYTECODE": "1"}  # each SIGHUP compiles what is on disk now
    server = supervise("--workers", "2", target="hupapp:app", cwd=tmp_path, env=env)
    old = server.wait_ready(2)
    (tmp_path / "hupapp.py").write_text(BROKEN_IN_TURN)
    supervisor = server.running.proc.pid
    before = children_of(supervisor)
    server.signal(signal.SIGHUP)
    # The broken code's two workers start; the first fails at once and stays a zombie
    # while the supervisor is held.
    wait_until(lambda: len(children_of(supervisor) - before) == 2, "two new workers")
    server.signal(signal.SIGSTOP)
    new_workers = children_of(supervisor) - before
    wait_until(lambda: any(state_of(pid) == "Z" for pid in new_workers), "the first failure")
    (tmp_path / "hupapp.py").write_text(APP_V1.replace("v1", "v2"))
    server.signal(signal.SIGHUP)
    server.signal(signal.SIGCONT)
    server.running.wait_for_line(nth_line_with("SIGHUP: starting", 2))
    (tmp_path / "release").touch()  # the broken code's second worker fails now, if alive
    new = server.wait_ready(2)
    assert not set(new) & set(old)
    # The old workers drain once the new ones are ready: a connection made in that instant
    # may still reach one, so ask until the new code answers.
    deadline = time.monotonic() + 30
    body = b""
    while not body.startswith(b"v2 ") and time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/")
        body = connection.getresponse().read()
        connection.close()
    assert body.startswith(b"v2 "), body
