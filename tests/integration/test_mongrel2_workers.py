"""``treadle mongrel2 --workers N``: the real supervisor, its handler workers and the real Mongrel2.

Integration tier: one Mongrel2 (Debian's mongrel2-core) per module, as in test_mongrel2.py;
each test starts ``treadle mongrel2 ... --workers N`` and waits for the supervisor's
``N workers ready at ... worker pids ...`` line. The app answers with its pid
(tests/apps/procinfo.py), so a test sees which handler process served a request sent to
Mongrel2. Every wait has a deadline; no test sleeps to synchronise.

A worker that stops (reload, recycle) disconnects from Mongrel2's PUSH socket once its
replacement is handling; a request Mongrel2 was pushing to it at that instant is lost on
the wire (ZeroMQ's PUSH has no acknowledgement; docs/mongrel2.md). So the tests allow one
lost request (a client timeout, never an error answer) per client and worker stopped under
load: each client has one request in flight at a time. Behind the broker, none.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Running, treadle_command
from tests.integration.mongrel2_server import (
    HANDLER_IDENT,
    M2SH,
    MONGREL2,
    Mongrel2,
    free_ports,
    wait_until,
)

pytestmark = [
    pytest.mark.skipif(
        M2SH is None or MONGREL2 is None,
        reason="Mongrel2 is not installed (apt-get install mongrel2-core)",
    ),
    pytest.mark.timeout(60),
]
pytest.importorskip("zmq", reason="pyzmq is not installed (pip install 'treadle[mongrel2]')")

LOST_AFTER_S = 5.0  # a request unanswered this long was lost
READY = re.compile(r"(\d+) workers ready at (\S+) \(supervisor pid (\d+); worker pids ([\d, ]+)\)")


@pytest.fixture(scope="module")
def mongrel2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mongrel2]:
    server = Mongrel2(tmp_path_factory.mktemp("mongrel2"))
    yield server
    server.stop()


class Supervised:
    """A running ``treadle mongrel2 --workers`` and the pids of its ready lines."""

    def __init__(self, running: Running, mongrel2: Mongrel2) -> None:
        self.running = running
        self.mongrel2 = mongrel2
        self.consumed: set[str] = set()
        self.source = mongrel2.send_spec  # where the workers take requests from

    def wait_ready(self, count: int, timeout: float = 30.0) -> set[int]:
        """The pids of the next ready line naming ``count`` workers (one not returned before)."""

        def fresh_line(line: str) -> bool:
            match = READY.search(line)
            return match is not None and int(match[1]) == count and line not in self.consumed

        line = self.running.wait_for_line(fresh_line, timeout)
        self.consumed.add(line)
        match = READY.search(line)
        assert match is not None
        assert match[2] == self.source
        return {int(pid) for pid in match[4].split(", ")}

    def get(self, connection: http.client.HTTPConnection, path: str = "/app/") -> dict:
        """One request through Mongrel2 on ``connection`` (kept alive); any failure raises.

        Kept alive because Mongrel2 PUSHes a client's disconnect notice round-robin like a
        request: with a new connection per request, two workers would get every request
        and every notice respectively."""
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)
        return json.loads(body)


@pytest.fixture
def supervise(mongrel2: Mongrel2) -> Iterator[Callable[..., Supervised]]:
    started: list[Running] = []

    def start(*args: str) -> Supervised:
        command = treadle_command(
            "mongrel2", "tests.apps.procinfo:app", mongrel2.send_spec, mongrel2.recv_spec, *args
        )
        running = Running(command)
        started.append(running)
        return Supervised(running, mongrel2)

    yield start
    for running in started:
        running.kill()  # the supervisor: its workers get SIGTERM from the kernel (PDEATHSIG)
    for running in started:
        for pid in pids_named(running.output):
            wait_gone(pid)


def loaded_files(pid: int) -> str:
    """The files mapped into process ``pid`` (its shared libraries and extension modules)."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
        return "\n".join(line.split(maxsplit=5)[-1] for line in maps if "/" in line)


def pids_named(output: str) -> set[int]:
    return {int(pid) for match in READY.finditer(output) for pid in match[4].split(", ")}


def wait_gone(pid: int, timeout: float = 30.0) -> None:
    """A worker left behind by a test is killed, not waited for past ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)  # polling the process table, with a deadline
    os.kill(pid, signal.SIGKILL)


class Load:
    """Requests through Mongrel2 from background threads, each failure counted."""

    def __init__(self, server: Supervised, clients: int = 2) -> None:
        self.server = server
        self.stop = threading.Event()
        self.pids: list[int] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        connection = self.server.mongrel2.connection(LOST_AFTER_S)
        while not self.stop.is_set():
            try:
                self.pids.append(self.server.get(connection)["pid"])
            except Exception as error:  # noqa: BLE001 - every failure is what we count
                self.failures.append(error)
                connection.close()
                connection = self.server.mongrel2.connection(LOST_AFTER_S)
        connection.close()

    def lost_on_the_wire(self) -> bool:
        """Every failure was a request never answered (no error response, no reset)."""
        return all(isinstance(error, TimeoutError) for error in self.failures)

    def wait_for_pids(self, wanted: set[int], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.pids):
            assert time.monotonic() < deadline, f"{wanted} never answered: {set(self.pids)}"
            self.stop.wait(0.02)  # polling our own counters, not waiting on the server

    def wait_for_count(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.pids) < count:
            assert time.monotonic() < deadline, f"{len(self.pids)} of {count} answered"
            self.stop.wait(0.02)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


def reload_under_load(server: Supervised, old: set[int]) -> tuple[Load, set[int], int]:
    """SIGHUP while two clients keep asking, until the old workers have stopped and the new
    ones have answered 20 more: (the finished load, the new pids, answers before SIGHUP)."""
    load = Load(server)
    try:
        load.wait_for_pids(old)
        before = len(load.pids)
        os.kill(server.running.proc.pid, signal.SIGHUP)
        new = server.wait_ready(2)
        for pid in old:
            server.running.wait_for_line(f"worker {pid} stopped (exit status 0)")
        load.wait_for_pids(new)
        load.wait_for_count(len(load.pids) + 20)
    finally:
        load.finish()
    return load, new, before


def test_two_workers_both_answer_and_say_multiprocess(
    supervise: Callable[..., Supervised],
) -> None:
    # One --send-ident for both: Mongrel2 routes responses by the request's UUID, and its
    # SUB socket accepts two publishers with the same identity.
    server = supervise("--workers", "2", "--send-ident", HANDLER_IDENT)
    pids = server.wait_ready(2)
    assert len(pids) == 2
    for pid in pids:
        server.running.wait_for_line(
            lambda line, pid=pid: "Handling for Mongrel2" in line and f"(pid {pid})" in line
        )
    # The supervisor never loaded pyzmq (nor the app); its workers did.
    assert "zmq" not in loaded_files(server.running.proc.pid)
    assert all("zmq" in loaded_files(pid) for pid in pids)
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    connection = server.mongrel2.connection(10)
    try:
        while seen != pids:
            assert time.monotonic() < deadline, f"only {seen} of {pids} answered"
            answer = server.get(connection)
            assert answer["multiprocess"] is True
            seen.add(answer["pid"])
    finally:
        connection.close()
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_a_killed_worker_is_replaced_and_requests_keep_being_answered(
    supervise: Callable[..., Supervised],
) -> None:
    server = supervise("--workers", "2")
    pids = server.wait_ready(2)
    load = Load(server)
    try:
        load.wait_for_pids(pids)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        server.running.wait_for_line(f"worker {victim} died (killed by SIGKILL)")
        replaced = server.wait_ready(2)
        assert victim not in replaced and len(replaced - pids) == 1
        answered = len(load.pids)
        load.wait_for_pids(replaced)
        load.wait_for_count(answered + 20)
    finally:
        load.finish()
    # Requests the killed worker had in hand die with it (at most one per client here).
    assert len(load.failures) <= 2, load.failures
    assert load.lost_on_the_wire(), load.failures
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_sighup_under_load_ends_with_new_workers_losing_only_what_was_on_the_wire(
    supervise: Callable[..., Supervised],
) -> None:
    server = supervise("--workers", "2")
    old = server.wait_ready(2)
    load, new, before = reload_under_load(server, old)
    assert not new & old, (new, old)
    server.running.wait_for_line("reload done")
    # At most what was on the wire to each of the two old workers when it disconnected.
    assert len(load.failures) <= len(old) * len(load.threads), load.failures
    assert load.lost_on_the_wire(), load.failures
    assert len(load.pids) - before > 20
    # The supervisor heard "ready" only once the new workers were handling (then it
    # stopped the old ones): their "Handling for Mongrel2" lines come first.
    new_ready = next(i for i, line in enumerate(server.running.lines) if READY.search(line)
                     and set(map(int, READY.search(line)[4].split(", "))) == new)  # fmt: skip
    handling = [i for i, line in enumerate(server.running.lines) if "Handling for Mongrel2" in line]
    assert len(handling) == 4 and handling[-1] < new_ready
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_sighup_behind_the_broker_loses_nothing(
    mongrel2: Mongrel2, supervise: Callable[..., Supervised]
) -> None:
    (port,) = free_ports(1)
    backend = f"tcp://127.0.0.1:{port}"
    broker = Running(treadle_command("mongrel2-broker", mongrel2.send_spec, backend))
    try:
        broker.wait_for_line("Brokering", timeout=30)
        server = supervise("--workers", "2", "--broker", backend)
        server.source = backend
        old = server.wait_ready(2)
        load, _, _ = reload_under_load(server, old)
        # A stopping handler closes only after the broker's BYE back: nothing is on the
        # wire to it then, so not one request is lost (without a broker, PUSH can lose one).
        assert load.failures == []
        assert broker.output.count(" left") >= 2  # both old handlers were released
        assert server.running.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        broker.kill()


def test_max_requests_recycles_workers_losing_only_what_was_on_the_wire(
    supervise: Callable[..., Supervised],
) -> None:
    server = supervise("--workers", "2", "--max-requests", "20")
    first = server.wait_ready(2)
    load = Load(server)
    try:
        load.wait_for_pids(first)
        # Round-robin: both workers reach 20 at about the same time; each replacement is
        # ready before the worker it replaces stops.
        second = server.wait_ready(2)
        retired = first - second
        assert retired and len(second) == 2, (first, second)
        for old in retired:
            server.running.wait_for_line(f"worker {old} served 20 requests")
            server.running.wait_for_line(f"stopping worker {old} (recycled)")
            server.running.wait_for_line(f"worker {old} stopped (exit status 0)")
        load.wait_for_pids(second)
        load.wait_for_count(len(load.pids) + 10)
    finally:
        load.finish()
    stopped = server.running.output.count("(recycled)")
    assert len(load.failures) <= stopped * len(load.threads), (load.failures, stopped)
    assert load.lost_on_the_wire(), load.failures
    for old in retired:
        assert load.pids.count(old) >= 20  # it served on until its replacement was ready
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


APP_SOURCE = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s"]
"""


def test_reload_restarts_the_handler_when_a_source_file_changes(
    mongrel2: Mongrel2, tmp_path: Path
) -> None:
    (tmp_path / "devapp.py").write_text(APP_SOURCE % "v1")
    command = treadle_command(
        "mongrel2", "devapp:app", mongrel2.send_spec, mongrel2.recv_spec, "--reload"
    )
    running = Running(command, cwd=tmp_path, env={"PYTHONDONTWRITEBYTECODE": "1"})
    try:
        running.wait_for_line("Handling for Mongrel2", timeout=30)
        assert body_of(mongrel2) == b"v1"
        (tmp_path / "devapp.py").write_text(APP_SOURCE % "v2")
        running.wait_for_line("reloading: devapp.py", timeout=20)
        # The old handler stops first (the new code may not load), then the new one starts.
        wait_until(
            lambda: running.output.count("Handling for Mongrel2") == 2, 20, "the new handler"
        )
        assert body_of(mongrel2) == b"v2"
        assert running.stop(signal.SIGTERM, timeout=30) == 0
    finally:
        running.kill()


def body_of(mongrel2: Mongrel2) -> bytes:
    connection = mongrel2.connection(LOST_AFTER_S)
    try:
        connection.request("GET", "/app/")
        return connection.getresponse().read()
    finally:
        connection.close()


def test_a_worker_whose_reactor_is_stuck_is_killed_and_replaced(
    supervise: Callable[..., Supervised],
) -> None:
    server = supervise("--workers", "2", "--heartbeat-timeout", "2")
    pids = server.wait_ready(2)

    def stall() -> None:
        connection = server.mongrel2.connection(30)
        try:
            connection.request("GET", "/app/stall-reactor?30")
            connection.getresponse().read()
        except OSError:
            pass  # its worker is killed: Mongrel2 never answers
        finally:
            connection.close()

    threading.Thread(target=stall, daemon=True).start()
    line = server.running.wait_for_line(lambda line: "no heartbeat for " in line)
    stuck = int(re.search(r"worker (\d+): no heartbeat", line)[1])  # type: ignore[index]
    assert stuck in pids
    # Its last beat said what it was running, as an HTTP worker's does.
    logged = server.running.wait_for_line(f"worker {stuck}: in flight at its last heartbeat")
    assert "stall-reactor" in logged, logged
    server.running.wait_for_line(f"worker {stuck} stopped (killed by SIGKILL)")
    replaced = server.wait_ready(2)
    assert stuck not in replaced and pids - {stuck} < replaced
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_pid_file_holds_the_supervisor_and_is_removed_at_exit(
    supervise: Callable[..., Supervised], tmp_path: Path
) -> None:
    pid_file = tmp_path / "handlers.pid"
    server = supervise("--workers", "2", "--pid-file", str(pid_file))
    server.wait_ready(2)
    assert pid_file.read_text().strip() == str(server.running.proc.pid)
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0
    assert not pid_file.exists()


def test_one_process_writes_its_pid_file_once_handling(mongrel2: Mongrel2, tmp_path: Path) -> None:
    pid_file = tmp_path / "handler.pid"
    command = treadle_command(
        "mongrel2",
        "tests.apps.procinfo:app",
        mongrel2.send_spec,
        mongrel2.recv_spec,
        "--pid-file",
        str(pid_file),
    )
    running = Running(command)
    try:
        running.wait_for_line("Handling for Mongrel2", timeout=30)
        wait_until(pid_file.exists, 10, "the pid file")
        assert pid_file.read_text().strip() == str(running.proc.pid)
        assert running.stop(signal.SIGTERM, timeout=30) == 0
        assert not pid_file.exists()
    finally:
        running.kill()


def test_ttin_and_ttou_change_the_number_of_handlers(
    supervise: Callable[..., Supervised],
) -> None:
    server = supervise("--workers", "2")
    two = server.wait_ready(2)
    os.kill(server.running.proc.pid, signal.SIGTTIN)
    three = server.wait_ready(3)
    assert two < three
    load = Load(server)
    try:
        load.wait_for_pids(three)
        os.kill(server.running.proc.pid, signal.SIGTTOU)
        after = server.wait_ready(2)
        assert after < three
        (gone,) = three - after
        server.running.wait_for_line(f"worker {gone} stopped (exit status 0)")
        answered = len(load.pids)
        load.wait_for_count(answered + 20)
        # (each client may still be reading one answer the leaving worker sent)
        assert gone not in load.pids[answered + len(load.threads) :]
    finally:
        load.finish()
    # What was on the wire to the one that left: at most one request per client (each has
    # one in flight at a time), lost by ZeroMQ's PUSH, never answered wrongly.
    assert len(load.failures) <= len(load.threads), load.failures
    assert load.lost_on_the_wire(), load.failures
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0
