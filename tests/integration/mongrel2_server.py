"""A real Mongrel2 for tests and benchmarks: a .conf on free 127.0.0.1 ports, m2sh load, m2sh start.

Test and benchmark tooling (no pytest here, so bench/ can use it). Mongrel2 runs in the
foreground under m2sh (``server.daemonize`` 0) with ``chroot`` "/", so the upload paths it
sends are the paths the handler sees; ``stop()`` sends SIGTERM to the pid in its pid file.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

M2SH = shutil.which("m2sh")
MONGREL2 = shutil.which("mongrel2")

SERVER_UUID = "f400bf85-4538-4f7a-8908-67e313d515c2"
HANDLER_IDENT = "34f9ceee-cd52-4b7f-b197-88bf2f0ec378"
UPLOAD_LIMIT = 20480  # limits.content_length: bigger bodies become async uploads
HANDLING = "Handling for Mongrel2"


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out on 127.0.0.1 (held together, so all distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


class Mongrel2:
    """One Mongrel2 server with one handler routed at /app (PATTERN "/app")."""

    def __init__(
        self, directory: Path, prefix: list[str] | None = None, zmq_host: str = "127.0.0.1"
    ) -> None:
        """``prefix`` goes before m2sh's command line (bench/ pins it with taskset);
        ``zmq_host`` is the address Mongrel2's handler sockets bind (handlers connect)."""
        self.directory = directory
        self.port, *specs = free_ports(3)
        self.send_spec = f"tcp://{zmq_host}:{specs[0]}"
        self.recv_spec = f"tcp://{zmq_host}:{specs[1]}"
        self.upload_dir = directory / "uploads"
        self.upload_dir.mkdir()
        (directory / "logs").mkdir()
        self.pid_file = directory / "mongrel2.pid"
        conf = directory / "test.conf"
        # chroot "/": as root Mongrel2 chroots, and the upload paths it sends must be the
        # paths the handler sees.
        conf.write_text(
            f"""
app = Handler(send_spec="{self.send_spec}", send_ident="{HANDLER_IDENT}",
              recv_spec="{self.recv_spec}", recv_ident="")
main = Server(
    uuid="{SERVER_UUID}",
    access_log="{directory}/logs/access.log",
    error_log="{directory}/logs/error.log",
    chroot="/",
    default_host="localhost",
    name="test",
    pid_file="{self.pid_file}",
    control_port="ipc://{directory}/control",
    port={self.port},
    bind_addr="127.0.0.1",
    hosts=[Host(name="localhost", routes={{"/app": app}})]
)
settings = {{"upload.temp_store": "{self.upload_dir}/m2.XXXXXX",
            "limits.content_length": {UPLOAD_LIMIT}, "server.daemonize": 0}}
servers = [main]
"""
        )
        self.db = directory / "config.sqlite"
        assert M2SH is not None, "m2sh is not installed (apt-get install mongrel2-core)"
        subprocess.run(
            [M2SH, "load", "-config", str(conf), "-db", str(self.db)],
            cwd=directory,
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.log = open(directory / "m2sh.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*(prefix or []), M2SH, "start", "-db", str(self.db), "-name", "test"],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        # m2sh runs mongrel2 as its child (server.daemonize 0 keeps it there).
        wait_until(self.listening, 20, "Mongrel2 listening")
        wait_until(lambda: self.pid() is not None, 20, "Mongrel2's pid file")

    def listening(self) -> bool:
        assert self.proc.poll() is None, (self.directory / "m2sh.out").read_text()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def pid(self) -> int | None:
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def stop(self) -> None:
        pid = self.pid()
        try:
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(10)
        finally:
            self.log.close()

    def connection(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
