"""Shared fixtures: run the real ``treadle serve`` in a subprocess on 127.0.0.1:0.

The child logs ``Listening at: http://127.0.0.1:PORT`` when every listener is up;
the fixture waits for that line (with a deadline) instead of sleeping. Its stderr
is collected so tests can wait for, and assert on, log lines.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"Listening at: (\S+)")


class Running:
    """A treadle child process and what it has logged so far."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(ROOT / "src"), full_env.get("PYTHONPATH", "")]
        )
        self.args = args
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd or ROOT),
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.address = ""
        self.host = "127.0.0.1"
        self.port = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:  # closed at EOF: an open pipe left to the GC is a ResourceWarning
            for line in self.proc.stdout:
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_line(self, predicate: Callable[[str], bool] | str, timeout: float = 20.0) -> str:
        if isinstance(predicate, str):
            text = predicate
            predicate = lambda line: text in line  # noqa: E731
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no matching log line in {timeout}s; exit={self.proc.poll()}; "
                        f"output:\n{self.output_unlocked()}"
                    )
                self._cond.wait(min(left, 0.5))

    def output_unlocked(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 30.0) -> None:
        line = self.wait_for_line(lambda line: LISTENING.search(line) is not None, timeout)
        self.address = LISTENING.search(line).group(1)  # type: ignore[union-attr]
        match = re.match(r"http://(\[[^\]]+\]|[^:]+):(\d+)", self.address)
        if match:
            self.host = match.group(1).strip("[]")
            self.port = int(match.group(2))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"server did not stop in {timeout}s:\n{self.output}") from None

    def kill(self) -> None:
        """Kill the child if it still runs, reap it and let the reader close its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)


def treadle_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "treadle", *args]


@pytest.fixture
def serve() -> Iterator[Callable[..., Running]]:
    """``serve("tests.apps.hello:app", "--threads", "2")`` -> a ready Running server."""
    running: list[Running] = []

    def start(
        target: str,
        *args: str,
        env: dict[str, str] | None = None,
        bind: str = "tcp:0:interface=127.0.0.1",
        ready: bool = True,
    ) -> Running:
        command = treadle_command("serve", target, "--bind", bind, *args)
        server = Running(command, env=env)
        running.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in running:
        server.kill()


@pytest.fixture(scope="module")
def serve_shared() -> Iterator[Running]:
    """One hello-world server shared by a module's tests (for many small requests)."""
    server = Running(
        treadle_command("serve", "tests.apps.hello:app", "--bind", "tcp:0:interface=127.0.0.1")
    )
    server.wait_ready()
    yield server
    server.kill()
