"""The supervisor's pure parts: the signal table in the docs, worker reports, log reopening."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from treadle.supervisor import child, logfiles, signals
from treadle.supervisor.process import STARTING, WorkerProcess

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def test_docs_show_the_signal_table_the_supervisor_acts_on() -> None:
    assert signals.markdown_table() in DEPLOY.read_text(), (
        "docs/deploy.md drifted: paste python -c 'from treadle.supervisor.signals import "
        "markdown_table; print(markdown_table())' into it"
    )


def test_every_signal_in_the_table_has_a_handler() -> None:
    from treadle.supervisor.arbiter import Arbiter

    for row in signals.TABLE:
        assert callable(getattr(Arbiter, "on_" + row.action)), row


def test_a_job_survives_the_environment() -> None:
    job = child.Job(parent=12, binds=("fd:3:family=INET",), channel=5, multiprocess=True,
                    max_requests=7)  # fmt: skip
    os.environ[child.ENV] = job.to_env()
    try:
        assert child.job() == job
        assert child.is_child() and child.is_worker()
    finally:
        del os.environ[child.ENV]
    assert child.job() is None and not child.is_worker()


@pytest.fixture
def worker() -> WorkerProcess:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    made = WorkerProcess(proc, read_end, generation=0, now=0.0)
    made.write_end = write_end  # type: ignore[attr-defined]
    yield made
    made.close()
    os.close(write_end)


def test_reports_split_across_writes_are_joined(worker: WorkerProcess) -> None:
    fd = worker.write_end  # type: ignore[attr-defined]
    assert worker.read() == []  # nothing yet: not end of file
    os.write(fd, b'{"ready": ["http://127.0.0.1:1"], "pid": 1}\n{"be')
    assert worker.read() == [{"ready": ["http://127.0.0.1:1"], "pid": 1}]
    os.write(fd, b'at": 2.5}\n')
    assert worker.read() == [{"beat": 2.5}]
    assert worker.state == STARTING  # reading never changes the state: the arbiter does


def test_a_garbled_report_is_logged_and_skipped(worker: WorkerProcess, caplog) -> None:
    fd = worker.write_end  # type: ignore[attr-defined]
    os.write(fd, b'not json\n{"retire": 10}\n')
    with caplog.at_level(logging.WARNING, "treadle"):
        assert worker.read() == [{"retire": 10}]
    assert "not JSON" in caplog.text


def test_end_of_file_means_the_worker_is_gone(worker: WorkerProcess) -> None:
    os.close(worker.write_end)  # type: ignore[attr-defined]
    worker.write_end = os.open(os.devnull, os.O_RDONLY)  # type: ignore[attr-defined]
    assert worker.read() is None


def test_reopen_writes_to_a_new_file_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "treadle.log"
    handler = logging.FileHandler(path)
    logger = logging.getLogger("treadle")
    logger.addHandler(handler)
    try:
        logger.warning("before rotation")
        path.rename(tmp_path / "treadle.log.1")
        assert logfiles.reopen() >= 1
        logger.warning("after rotation")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert "before rotation" in (tmp_path / "treadle.log.1").read_text()
    assert "after rotation" not in (tmp_path / "treadle.log.1").read_text()
    assert path.read_text().strip() == "after rotation"


def test_workers_settings_parse_with_gunicorns_spelling() -> None:
    from treadle.cli import build_parser, config_from

    parser = build_parser()
    config = config_from(parser.parse_args(["serve", "-w", "3", "--max-requests", "9", "m:a"]))
    assert config.workers.workers == 3 and config.workers.max_requests == 9
    assert config.supervised()
    assert not config_from(parser.parse_args(["serve", "m:a"])).supervised()  # today's default


def test_reload_and_workers_are_refused_together() -> None:
    from treadle.config import Config
    from treadle.errors import ConfigError

    with pytest.raises(ConfigError, match="--reload runs one worker"):
        Config.from_settings({"reload": True, "workers": 2})
    with pytest.raises(ConfigError, match="at least 1"):
        Config.from_settings({"workers": 0})


def test_worker_slots_get_their_own_socket_on_one_address() -> None:
    import socket

    from treadle.supervisor.sockets import hold, hold_again, release

    first = hold("tcp:0:interface=127.0.0.1", reuse_port=True)
    assert first is not None
    second = hold_again(first)
    try:
        assert second.sock is not first.sock
        assert second.sock.getsockname() == first.sock.getsockname()
        assert second.child_bind != first.child_bind  # a descriptor of its own
        # Both accept: the kernel hashes connections over them.
        port = first.sock.getsockname()[1]
        accepted_on = set()
        for _ in range(64):
            with socket.create_connection(("127.0.0.1", port)):
                pass
        for kept in (first, second):
            kept.sock.setblocking(False)
            try:
                while True:
                    kept.sock.accept()[0].close()
                    accepted_on.add(id(kept))
            except BlockingIOError:
                pass
        assert accepted_on == {id(first), id(second)}
    finally:
        release([first, second])


def test_a_shared_socket_is_not_bound_again() -> None:
    from treadle.supervisor.sockets import hold, hold_again, release

    plain = hold("tcp:0:interface=127.0.0.1")  # no SO_REUSEPORT: one socket for all
    assert plain is not None
    try:
        assert hold_again(plain) is plain
    finally:
        release([plain])


def test_an_ssl_bind_is_held_as_tcp_and_handed_over_with_its_certificates() -> None:
    from treadle import listen
    from treadle.supervisor.sockets import hold, release

    bind = r"ssl:0:interface=127.0.0.1:privateKey=/k\:ey.pem:certKey=/c.pem"
    assert hold(bind) is None  # the reloader and one process let the reactor open it
    kept = hold(bind, 100, with_tls=True)
    assert kept is not None
    try:
        assert kept.address.startswith("https://127.0.0.1:")
        kind, args, params = listen.split_description(kept.child_bind)
        assert kind == "sslfd" and args == [str(kept.sock.fileno())]
        assert params == {"family": "INET", "privateKey": "/k:ey.pem", "certKey": "/c.pem"}
        assert listen.scheme(kept.child_bind) == "https"
    finally:
        release([kept])


@pytest.mark.parametrize(
    "process", [{"pid_file": "/tmp/t.pid"}, {"user": "nobody"}, {"group": "0"}, {"umask": "007"}]
)
def test_the_reloader_refuses_the_production_process_settings(process: dict) -> None:
    from treadle.config import Config
    from treadle.errors import ConfigError

    Config.from_settings(process)  # fine without the reloader
    with pytest.raises(ConfigError, match="the development reloader applies none of them"):
        Config.from_settings({"reload": True, **process})


def reuseport_group(count: int) -> list:
    import socket

    group: list = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", group[0].getsockname()[1] if group else 0))
        sock.listen(128)
        sock.setblocking(False)
        group.append(sock)
    return group


def accepted_per_socket(group: list, connections: int = 60) -> list[int]:
    import socket

    port = group[0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    counts = []
    for sock in group:
        accepted = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.accept()[0].close()
                accepted += 1
        counts.append(accepted)
    for client in clients:
        client.close()
    return counts


@pytest.mark.skipif(sys.platform != "linux", reason="SO_ATTACH_REUSEPORT_CBPF is Linux's")
def test_steering_sends_new_connections_only_to_the_chosen_sockets() -> None:
    from treadle.supervisor import steering

    group = reuseport_group(3)
    try:
        assert steering.steer(group[0], [1])
        assert accepted_per_socket(group) == [0, 60, 0]
        assert steering.steer(group[2], [0, 2])  # any member attaches for the whole group
        first, second, third = accepted_per_socket(group)
        assert second == 0 and first > 10 and third > 10  # random, so both get some
        assert steering.steer(group[0], [])  # detached: the kernel's hash over all three
        assert all(count > 0 for count in accepted_per_socket(group))
    finally:
        for sock in group:
            sock.close()


def test_the_group_mirror_moves_the_last_socket_into_a_closed_ones_place() -> None:
    from treadle.supervisor.steering import RET_K, Group, program

    group = Group()
    for slot in (0, 1, 2, 3):
        group.joined(slot)
    group.left(1)  # the kernel: socks[1] = socks[3]
    assert group.order == [0, 3, 2]
    assert group.indices([2, 3]) == [2, 1]
    group.left(2)  # the last one: nothing moves
    assert group.order == [0, 3]
    code = program([1])
    assert code[-2:] == [(RET_K, 0, 0, 1), (RET_K, 0, 0, 1)]  # always the one index
