"""``treadle serve --workers N``: the real supervisor and its workers, real sockets and signals.

Each test waits on the supervisor's log lines (``N workers ready at ... worker pids ...``)
or on responses, with deadlines; the workers answer with their pid (tests/apps/procinfo.py),
so a test sees which process served it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Running, treadle_command
from tests.integration.tlscerts import make_certs

BIND = "tcp:0:interface=127.0.0.1"
READY = re.compile(r"(\d+) workers ready at (.+?) \(supervisor pid (\d+); worker pids ([\d, ]+)\)")


class Supervised:
    """A running supervisor and the worker pids of its last ready line."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.consumed: set[str] = set()
        self.port = 0

    @property
    def output(self) -> str:
        return self.running.output

    def wait_ready(self, count: int, timeout: float = 30.0) -> set[int]:
        """The pids of the next ready line naming ``count`` workers (one not returned before)."""

        def fresh_line(line: str) -> bool:
            match = READY.search(line)
            return match is not None and int(match[1]) == count and line not in self.consumed

        line = self.running.wait_for_line(fresh_line, timeout)
        self.consumed.add(line)
        match = READY.search(line)
        assert match is not None
        self.port = int(match[2].split()[0].rsplit(":", 1)[1])  # the first bind: tcp
        return {int(pid) for pid in match[4].split(", ")}

    def signal(self, signum: int) -> None:
        self.running.proc.send_signal(signum)

    def get(self, path: str = "/", timeout: float = 20.0) -> dict:
        """One request on a new connection; any failure raises."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body)
            return json.loads(body)
        finally:
            connection.close()


@pytest.fixture
def supervise() -> Iterator:
    started: list[Running] = []

    def start(
        *args: str,
        target: str = "tests.apps.procinfo:app",
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Supervised:
        command = treadle_command("serve", target, "--bind", BIND, *args)
        running = Running(command, cwd=cwd, env=env)
        started.append(running)
        return Supervised(running)

    yield start
    for running in started:
        running.kill()


def connect_and_send(port: int, request: bytes) -> None:
    """Send a request and read whatever comes back (nothing, if its worker is killed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass


def pids_serving(server: Supervised, wanted: set[int], timeout: float = 20.0) -> set[int]:
    """Request on new connections until every pid in ``wanted`` has answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while not wanted <= seen:
        assert time.monotonic() < deadline, f"only {seen} of {wanted} answered"
        seen.add(server.get()["pid"])
    return seen


class Load:
    """Requests on new connections from a background thread, counting every failure."""

    def __init__(self, server: Supervised, clients: int = 2) -> None:
        self.server = server
        self.stop = threading.Event()
        self.pids: list[int] = []
        self.failures: list[str] = []
        self.failures_allowed = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.pids.append(self.server.get(timeout=10)["pid"])
            except Exception as error:  # noqa: BLE001 - every failure is what we count
                self.failures.append(repr(error))

    def wait_for_pids(self, wanted: set[int], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.pids):
            assert time.monotonic() < deadline, f"{wanted} never answered: {set(self.pids)}"
            assert len(self.failures) <= self.failures_allowed, self.failures
            self.stop.wait(0.02)  # polling our own counters, not waiting on the server

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


def test_every_worker_serves_and_says_multiprocess(supervise) -> None:
    server = supervise("--workers", "2")
    pids = server.wait_ready(2)
    assert len(pids) == 2
    # Each worker logs its own line, on the supervisor's socket (the real port).
    for pid in pids:
        server.running.wait_for_line(f"Listening at: http://127.0.0.1:{server.port} (pid {pid},")
    assert pids_serving(server, pids) == pids
    assert server.get()["multiprocess"] is True
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_a_killed_worker_is_replaced_and_serves(supervise) -> None:
    server = supervise("--workers", "2")
    pids = server.wait_ready(2)
    load = Load(server, clients=2)
    try:
        load.wait_for_pids(pids)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        server.running.wait_for_line(f"worker {victim} died (killed by SIGKILL)")
        replaced = server.wait_ready(2)
        assert victim not in replaced and len(replaced - pids) == 1
        load.failures_allowed = 2  # at most the requests the killed worker had in hand
        load.wait_for_pids(replaced)
    finally:
        load.finish()
    assert len(load.failures) <= 2, load.failures
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_an_app_that_cannot_be_imported_stops_the_supervisor_with_status_3(supervise) -> None:
    server = supervise("--workers", "2", target="tests.apps.no_such_module:app")
    began = time.monotonic()
    status = server.running.proc.wait(30)
    server.running.kill()
    assert status == 3, server.output
    assert time.monotonic() - began < 20  # no restart loop
    assert "module 'tests.apps.no_such_module' not found" in server.output
    assert "could not start (exit status 3" in server.output
    assert "replacing" not in server.output


def test_sighup_under_load_fails_no_request_and_brings_new_workers(supervise) -> None:
    server = supervise("--workers", "2")
    old = server.wait_ready(2)
    load = Load(server)
    try:
        load.wait_for_pids(old)
        server.signal(signal.SIGHUP)
        new = server.wait_ready(2)
        assert not new & old, (new, old)
        server.running.wait_for_line("reload done")
        load.wait_for_pids(new)
        for pid in old:
            server.running.wait_for_line(f"worker {pid} stopped (exit status 0)")
        answered = len(load.pids)
    finally:
        load.finish()
    assert load.failures == []
    assert answered > 10
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(supervise) -> None:
    server = supervise("--workers", "2")
    server.wait_ready(2)
    result: dict = {}

    def slow_request() -> None:
        result.update(server.get("/sleep?2", timeout=30))

    thread = threading.Thread(target=slow_request)
    thread.start()
    server.running.wait_for_line("procinfo: sleeping 2.0 s")
    server.signal(signal.SIGTERM)
    server.running.wait_for_line("SIGTERM: stopping gracefully")
    status = server.running.proc.wait(30)
    thread.join(10)
    assert status == 0, server.output
    assert result.get("pid"), server.output  # the request in flight got its 200
    with pytest.raises(ConnectionRefusedError):
        server.get()


def test_max_requests_recycles_workers_without_a_failed_request(supervise) -> None:
    server = supervise("--workers", "1", "--max-requests", "10", "--max-requests-jitter", "2")
    first = server.wait_ready(1)
    load = Load(server, clients=2)
    try:
        load.wait_for_pids(first)
        second = server.wait_ready(1)  # the replacement, ready before the first stops
        load.wait_for_pids(second)
        third = server.wait_ready(1)
        load.wait_for_pids(third)
    finally:
        load.finish()
    assert load.failures == []
    assert len(first | second | third) == 3
    (old,) = first
    retired = server.running.wait_for_line(f"worker {old} served ")
    assert 10 <= int(retired.split(" served ")[1].split()[0]) <= 12  # --max-requests + jitter
    stopped = server.running.wait_for_line(f"stopping worker {old} (recycled)")
    # Capacity never drops: the old worker serves on until its replacement is ready.
    lines = server.running.lines
    replacement_ready = next(
        i for i, line in enumerate(lines) if str(min(second)) in line and READY.search(line)
    )
    assert lines.index(retired) < replacement_ready < lines.index(stopped)
    assert load.pids.count(old) >= 10
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_ttin_and_ttou_change_the_worker_count(supervise) -> None:
    server = supervise("--workers", "2")
    two = server.wait_ready(2)
    load = Load(server)
    try:
        server.signal(signal.SIGTTIN)
        three = server.wait_ready(3)
        assert two < three
        load.wait_for_pids(three)
        server.signal(signal.SIGTTOU)
        after = server.wait_ready(2)
        assert after < three
        (gone,) = three - after
        assert gone == min(two)  # the oldest (pids grow here; a wrap would be rare)
        server.running.wait_for_line(f"worker {gone} stopped (exit status 0)")
        load.wait_for_pids(after)
    finally:
        load.finish()
    assert load.failures == []
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_a_second_sigint_abandons_requests_and_exits_at_once(supervise) -> None:
    server = supervise("--workers", "2")
    server.wait_ready(2)
    failed: list[BaseException] = []

    def stuck_request() -> None:
        try:
            server.get("/sleep?60", timeout=60)
        except Exception as error:  # noqa: BLE001 - it is abandoned: any error will do
            failed.append(error)

    thread = threading.Thread(target=stuck_request)
    thread.start()
    server.running.wait_for_line("procinfo: sleeping 60.0 s")
    server.signal(signal.SIGINT)
    server.running.wait_for_line("Ctrl-C again to stop now")
    began = time.monotonic()
    server.signal(signal.SIGINT)
    status = server.running.proc.wait(15)
    assert time.monotonic() - began < 5, server.output  # not the 60 s request, not 30 s grace
    assert status == 0, server.output
    thread.join(10)
    assert failed, "the abandoned request should not have been answered 200"


def test_a_worker_that_keeps_dying_is_restarted_with_growing_delays(supervise) -> None:
    server = supervise("--workers", "2")
    pids = server.wait_ready(2)
    delays = []
    for _ in range(3):
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        line = server.running.wait_for_line(f"worker {victim} died (killed by SIGKILL)")
        delays.append(float(re.search(r"replacing it in ([\d.]+) s", line)[1]))  # type: ignore[index]
        pids = server.wait_ready(2)
        assert victim not in pids
    assert delays == sorted(delays) and delays[0] < delays[-1], delays
    pids_serving(server, pids)
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


APP_V1 = """\
import os

def app(environ, start_response):
    body = ("v1 %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


def test_sighup_with_code_that_cannot_load_keeps_the_old_workers(supervise, tmp_path) -> None:
    (tmp_path / "hupapp.py").write_text(APP_V1)
    # No .pyc: each SIGHUP must compile what is on disk now.
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    server = supervise("--workers", "2", target="hupapp:app", cwd=tmp_path, env=env)
    old = server.wait_ready(2)
    (tmp_path / "hupapp.py").write_text("def app(:\n")
    server.signal(signal.SIGHUP)
    server.running.wait_for_line("reload failed")
    assert "SyntaxError" in server.output
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/")
    assert connection.getresponse().read().startswith(b"v1 ")
    connection.close()
    assert server.running.proc.poll() is None  # still supervising
    # Fixed code: the next SIGHUP replaces the old workers.
    (tmp_path / "hupapp.py").write_text(APP_V1.replace("v1", "v2 (fixed)"))
    server.signal(signal.SIGHUP)
    new = server.wait_ready(2)
    assert not new & old
    for pid in old:
        server.running.wait_for_line(f"worker {pid} stopped (exit status 0)")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/")
    assert connection.getresponse().read().startswith(b"v2 (fixed) ")
    connection.close()
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_a_worker_whose_reactor_is_stuck_is_dumped_killed_and_replaced(supervise) -> None:
    server = supervise("--workers", "2", "--heartbeat-timeout", "2")
    pids = server.wait_ready(2)
    # The response may be stuck behind the stalled reactor: the worker's log line says who.
    threading.Thread(
        target=lambda: connect_and_send(
            server.port, b"GET /stall-reactor?30 HTTP/1.1\r\nHost: x\r\n\r\n"
        ),
        daemon=True,
    ).start()
    line = server.running.wait_for_line(lambda line: "no heartbeat for " in line)
    stuck = int(re.search(r"worker (\d+): no heartbeat", line)[1])  # type: ignore[index]
    assert stuck in pids
    # The request that was running when the reactor stopped reporting, and for how long.
    logged = server.running.wait_for_line(f"worker {stuck}: in flight at its last heartbeat")
    elapsed = re.search(r": GET /stall-reactor\?30 \((\d+\.\d) s\)$", logged)
    assert elapsed and float(elapsed[1]) >= 2.0, logged  # at least the heartbeat timeout
    # faulthandler's dump, from inside the stuck worker: the blocking call is named.
    server.running.wait_for_line(lambda line: "procinfo.py" in line and "stall_reactor" in line)
    server.running.wait_for_line(f"worker {stuck} stopped (killed by SIGKILL)")
    replaced = server.wait_ready(2)
    assert stuck not in replaced and pids - {stuck} < replaced
    pids_serving(server, replaced)
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def wait_until(condition, timeout: float = 20.0, what: str = "") -> None:
    """Poll a condition on files (no event to wait on) every 50 ms, with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.05)


def test_sigusr1_reopens_the_log_files_of_supervisor_and_workers(supervise, tmp_path) -> None:
    log_file = tmp_path / "treadle.log"
    server = supervise("--workers", "2", "--log-file", str(log_file))

    def text(path: Path) -> str:
        return path.read_text() if path.exists() else ""

    wait_until(lambda: READY.search(text(log_file)), 30, "the ready line in the log file")
    workers = READY.search(text(log_file))[4].split(", ")  # type: ignore[index]
    # logrotate's way: move the file, then ask for a new one.
    log_file.rename(tmp_path / "treadle.log.1")
    server.signal(signal.SIGUSR1)

    def reopened_by_all() -> bool:
        said = [line for line in text(log_file).splitlines() if "SIGUSR1: reopened" in line]
        return len(said) == 3 and all(any(f"[{pid}]" in line for line in said) for pid in workers)

    wait_until(reopened_by_all, what="the supervisor and both workers in the new file")
    assert "SIGUSR1" not in text(tmp_path / "treadle.log.1")
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def parent_of(pid: int) -> int | None:
    """The parent pid of a live or zombie process; None once it is reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    return int(re.search(r"^PPid:\s+(\d+)", status, re.M)[1])  # type: ignore[index]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_orphans_of_workers_are_adopted_and_reaped(supervise) -> None:
    server = supervise("--workers", "2")
    server.wait_ready(2)
    supervisor = server.running.proc.pid
    orphan = server.get("/orphan")["orphan"]
    assert parent_of(orphan) == supervisor  # adopted by us, as by PID 1
    wait_until(lambda: parent_of(orphan) is None, 15, "the orphan to be reaped")
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_a_unix_socket_is_shared_by_workers_and_removed_at_exit(
    supervise, tmp_path_factory
) -> None:
    path = tmp_path_factory.mktemp("s") / "w.sock"  # AF_UNIX paths must stay short
    server = supervise("--workers", "2", "--bind", f"unix:{path}:mode=600")
    pids = server.wait_ready(2)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    while seen != pids:
        assert time.monotonic() < deadline, seen
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        seen.add(json.loads(data.partition(b"\r\n\r\n")[2])["pid"])
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0
    assert not path.exists()


def test_ssl_binds_are_served_by_every_worker(supervise, tmp_path) -> None:
    certs = make_certs(tmp_path)
    bind = f"ssl:0:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.cert}"
    server = supervise("--workers", "2", "--bind", bind)
    line = server.running.wait_for_line(READY.search)
    pids = server.wait_ready(2)
    tls_port = int(re.search(r"https://127\.0\.0\.1:(\d+)", line)[1])  # type: ignore[index]
    context = ssl.create_default_context(cafile=str(certs.ca))
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    while seen != pids:  # each connection hashes to one worker's socket
        assert time.monotonic() < deadline, seen
        raw = socket.create_connection(("127.0.0.1", tls_port), timeout=20)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data[:100]
        seen.add(json.loads(data.partition(b"\r\n\r\n")[2])["pid"])
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_bad_certificate_files_under_workers_stop_with_status_2(supervise, tmp_path) -> None:
    server = supervise("--workers", "2", "--bind", "ssl:0:privateKey=k.pem:certKey=c.pem")
    assert server.running.proc.wait(30) == 2, server.output
    server.running.kill()
    assert "k.pem" in server.output
    assert "replacing" not in server.output  # a config error is not retried


def test_connections_queued_for_a_dead_worker_are_served_by_its_replacement(supervise) -> None:
    # Each worker accepts on its own SO_REUSEPORT socket, which the supervisor keeps: the
    # kernel hashes some of these connections to the stopped worker's socket, where they wait
    # (a socket owned by the worker would reset them when it dies).
    server = supervise("--workers", "2")
    pids = server.wait_ready(2)
    pids_serving(server, pids)
    victim = min(pids)
    os.kill(victim, signal.SIGSTOP)  # accepts nothing from now on
    answered: list[int] = []
    failures: list[str] = []

    def one_request() -> None:
        try:
            answered.append(server.get(timeout=60)["pid"])
        except Exception as error:  # noqa: BLE001 - every failure is what we count
            failures.append(repr(error))

    clients = [threading.Thread(target=one_request) for _ in range(16)]
    for client in clients:
        client.start()
    # Some wait in the stopped worker's queue (16 connections all hashed to one of two
    # sockets: odds 1 in 32,768); the others are served by the live worker meanwhile.
    wait_until(lambda: len(answered) + len(failures) >= 1, 30, "the live worker's answers")
    os.kill(victim, signal.SIGKILL)
    server.running.wait_for_line(f"worker {victim} died (killed by SIGKILL)")
    replaced = server.wait_ready(2)
    for client in clients:
        client.join(60)
    assert failures == []
    assert len(answered) == 16
    (replacement,) = replaced - pids
    assert replacement in answered, answered  # it took over the dead worker's queue
    assert victim not in answered
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


def test_new_connections_skip_a_worker_whose_reactor_is_stuck(supervise) -> None:
    # Killed only after 60 s: meanwhile the kernel must stop handing it connections.
    server = supervise("--workers", "2", "--heartbeat-timeout", "60")
    pids = server.wait_ready(2)
    pids_serving(server, pids)
    threading.Thread(
        target=lambda: connect_and_send(
            server.port, b"GET /stall-reactor?30 HTTP/1.1\r\nHost: x\r\n\r\n"
        ),
        daemon=True,
    ).start()
    server.running.wait_for_line("new connections skip worker slot")
    # Without steering about half of these would wait in the stuck worker's queue.
    answered = {server.get(timeout=5)["pid"] for _ in range(20)}
    assert len(answered) == 1 and answered < pids, answered


def test_a_worker_that_does_not_get_ready_in_time_is_killed_and_retried(
    supervise, tmp_path
) -> None:
    (tmp_path / "hangs.py").write_text(HANGS_AT_IMPORT)
    # 5 s: long enough for a worker on a busy machine to reach the app's import (where its
    # stack dump is set up), short enough for the test.
    server = supervise(
        "--workers", "1", "--max-requests", "5", "--worker-start-timeout", "5",
        target="hangs:app", cwd=tmp_path,
    )  # fmt: skip
    first = server.running.wait_for_line("did not report ready within 5.0 s", timeout=40)
    pid = int(re.search(r"worker (\d+) did not", first)[1])  # type: ignore[index]
    # faulthandler's dump from inside the stuck import names where it hangs.
    server.running.wait_for_line(lambda line: "hangs.py" in line and "<module>" in line)
    died = server.running.wait_for_line(f"worker {pid} died (killed by SIGKILL)")
    assert "died young in a row" in died  # counted as a failed start: backoff
    # Retried, and killed again: no limit on the supervisor's patience, only backoff.
    server.running.wait_for_line(
        lambda line: "did not report ready within" in line and f"worker {pid} " not in line,
        timeout=40,
    )
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0


HANGS_AT_IMPORT = """\
import time

time.sleep(600)  # an import that never finishes (a database that does not answer)


def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]
"""


def test_a_request_that_ignores_cancellation_gets_its_worker_replaced(supervise) -> None:
    # time.sleep in C cannot be interrupted: neither the cancel nor the hard cancel ends it.
    server = supervise(
        "--workers", "2", "--request-timeout", "1", "--hard-cancel-after", "1",
        "--graceful-timeout", "2",
    )  # fmt: skip
    pids = server.wait_ready(2)
    threading.Thread(
        target=lambda: connect_and_send(server.port, b"GET /sleep?60 HTTP/1.1\r\nHost: x\r\n\r\n"),
        daemon=True,
    ).start()
    line = server.running.wait_for_line(lambda line: "ignores cancellation (past" in line)
    match = re.search(r"worker (\d+): GET /sleep\?60 has run ([\d.]+) s", line)
    assert match and int(match[1]) in pids and float(match[2]) > 3.0, line
    hung = int(match[1])
    # Its stacks (faulthandler, from inside the worker) name the call that ignores the cancel.
    server.running.wait_for_line(lambda line: "procinfo.py" in line and "in app" in line)
    replaced = server.wait_ready(2)  # the replacement is ready before the hung worker stops
    assert hung not in replaced and pids - {hung} < replaced
    server.running.wait_for_line(f"stopping worker {hung} (recycled)")
    server.running.wait_for_line(f"worker {hung} stopped")
    pids_serving(server, replaced)
    assert server.running.stop(signal.SIGTERM, timeout=30) == 0
