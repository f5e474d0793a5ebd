"""sd_notify: the real server tells a real ``$NOTIFY_SOCKET`` (bound by the test) its state.

The test plays systemd: it binds a unix datagram socket, passes it as NOTIFY_SOCKET and
reads each datagram with the sender's credentials (SO_PASSCRED), so it also sees that
only the main process (the supervisor, or the one process) notifies, as systemd's
default NotifyAccess=main requires.
"""

from __future__ import annotations

import array
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Running, treadle_command

BIND = "tcp:0:interface=127.0.0.1"


class Systemd:
    """The notify socket systemd would hold: datagrams in, each with its sender's pid."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name

    def next(self, timeout: float = 30.0) -> tuple[dict[str, str], int]:
        """The next message as fields, and the pid that sent it."""
        self.sock.settimeout(timeout)
        ancillary_size = socket.CMSG_SPACE(struct.calcsize("3i"))
        data, ancillary, _flags, _address = self.sock.recvmsg(4096, ancillary_size)
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = array.array("i", payload[: struct.calcsize("3i")])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        return fields, pid

    def wait_for(self, key: str, timeout: float = 30.0) -> list[tuple[dict[str, str], int]]:
        """Every message up to and including the first that has ``key``."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {key} in {timeout}s; got {seen}"
            fields, pid = self.next(left)
            seen.append((fields, pid))
            if key in fields:
                return seen


def bind_systemd(name: str, path: str | bytes) -> Systemd:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(path)
    return Systemd(sock, name)


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[Systemd]:
    path = str(tmp_path / "notify")
    listener = bind_systemd(path, path)
    yield listener
    listener.sock.close()


@pytest.fixture
def started() -> Iterator[list[Running]]:
    running: list[Running] = []
    yield running
    for each in running:
        each.kill()


def test_workers_notify_ready_reloading_and_stopping(
    systemd: Systemd, started: list[Running]
) -> None:
    server = Running(
        treadle_command("serve", "tests.apps.procinfo:app", "--bind", BIND, "--workers", "2"),
        env={"NOTIFY_SOCKET": systemd.name},
    )
    started.append(server)
    supervisor = server.proc.pid

    messages = systemd.wait_for("READY")
    ready, sender = messages[-1]
    server.wait_for_line("2 workers ready at")  # READY=1 comes only once both are ready
    assert ready["READY"] == "1"
    assert ready["STATUS"] == "2 workers ready"
    assert ready["MAINPID"] == str(supervisor)
    assert {pid for _, pid in messages} == {supervisor}  # never a worker: NotifyAccess=main

    server.proc.send_signal(signal.SIGHUP)
    reloading, sender = systemd.next()
    assert reloading["RELOADING"] == "1", reloading
    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert sender == supervisor
    again, sender = systemd.next()
    assert again["READY"] == "1", again
    assert sender == supervisor
    server.wait_for_line("reload done")  # logged just before READY=1: the new workers are ready

    server.proc.send_signal(signal.SIGTERM)
    messages = systemd.wait_for("STOPPING")
    assert messages[-1][0]["STOPPING"] == "1"
    assert {pid for _, pid in messages} == {supervisor}
    assert server.proc.wait(30) == 0


def test_single_process_notifies_an_abstract_socket(started: list[Running]) -> None:
    name = f"@treadle-test-notify-{time.monotonic_ns()}"
    listener = bind_systemd(name, b"\0" + name[1:].encode())
    try:
        server = Running(
            treadle_command("serve", "tests.apps.procinfo:app", "--bind", BIND),
            env={"NOTIFY_SOCKET": name},
        )
        started.append(server)
        ready, sender = listener.next()
        assert ready["READY"] == "1"
        assert sender == server.proc.pid
        server.wait_ready()
        server.proc.send_signal(signal.SIGTERM)
        stopping, sender = listener.next()
        assert stopping["STOPPING"] == "1"
        assert server.proc.wait(30) == 0
    finally:
        listener.sock.close()


def test_no_notify_socket_is_no_error(started: list[Running]) -> None:
    """An unusable NOTIFY_SOCKET (nobody listens) does not stop the server."""
    server = Running(
        treadle_command("serve", "tests.apps.procinfo:app", "--bind", BIND),
        env={"NOTIFY_SOCKET": "/nonexistent/notify"},
    )
    started.append(server)
    server.wait_ready()
    assert server.stop() == 0
