"""The servers under test: how each is launched, waited for, measured (RSS) and stopped.

Benchmark tooling. Every server runs as one process group pinned to CPU 0 with `taskset`, listens
on 127.0.0.1 only, and is stopped with SIGTERM then SIGKILL to its own group; nothing here may
outlive a run or touch any address but loopback.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
VENV_BIN = BENCH_DIR / ".venv" / "bin"
HOST = "127.0.0.1"
SERVER_CPU = "0"
START_DEADLINE_S = 30.0
STOP_GRACE_S = 10.0

# App kinds a scenario asks for, as (WSGI "module:attr", twist web FQPN).
APPS = {
    "hello": ("bench.apps:hello", "bench.apps.hello"),
    "mib": ("bench.apps:mib", "bench.apps.mib"),
    "static": ("bench.djstatic.wsgi:application", "bench.djstatic.wsgi.application"),
    "djpage": ("bench.djpage.wsgi:application", "bench.djpage.wsgi.application"),
}
PEERS = ("treadle", "gunicorn", "waitress", "twist", "granian")
ALL_SERVERS = (*PEERS, "treadle-spin")
# treadle with its opt-in idle spin (busy polling after traffic): shown beside treadle where
# latency at low concurrency is measured, so the CPU it costs is read next to what it buys.
SPIN_FLAGS = ["--idle-spin-us", "50"]

# The idle scenario measures the memory cost of holding 10k idle connections, which no server can
# show with its defaults: treadle and gunicorn close idle keep-alive connections after 5 s and 2 s,
# gunicorn stops accepting at 1000 connections per worker, waitress at 100 and, with select(), at
# fd 1024. These flags lift exactly those limits there and nowhere else.
IDLE_FLAGS = {
    "treadle": ["--keep-alive", "120"],
    "gunicorn": ["--keep-alive", "120", "--worker-connections", "20000"],
    "waitress": ["--connection-limit=20000", "--channel-timeout=120", "--asyncore-use-poll"],
}
# Where extra flags go in each server's argv (after the program and its subcommand).
_FLAG_AT = {
    "treadle": 2,
    "treadle-spin": 2,
    "gunicorn": 1,
    "waitress": 1,
    "twist": 2,
    "granian": 1,
}


class ServerFailed(Exception):
    """The server did not start, died, or did not answer the smoke request."""


def free_port() -> int:
    """A port the kernel says is free on 127.0.0.1 now (the server binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_argv(
    name: str, app: str, port: int, tmp_dir: Path, extra: list[str] | None = None
) -> list[str]:
    """The command line that starts `name` serving `app` ("hello", "mib", "static") on `port`."""
    argv = _base_argv(name, app, port, tmp_dir)
    at = _FLAG_AT[name]
    return argv[:at] + list(extra or []) + argv[at:]


def _base_argv(name: str, app: str, port: int, tmp_dir: Path) -> list[str]:
    wsgi_name, fqpn = APPS[app]
    if name == "treadle-spin":
        return _base_argv("treadle", app, port, tmp_dir) + SPIN_FLAGS
    if name == "treadle":
        argv = [str(VENV_BIN / "treadle"), "serve"]
        if app == "static":
            from bench.djstatic import STATIC_DIR

            # treadle serves the file itself from the reactor; the app behind it is never called.
            argv += ["bench.apps:hello", "--static", f"/static={STATIC_DIR}"]
        else:
            argv.append(wsgi_name)
        return argv + ["--bind", f"tcp:{port}:interface={HOST}", "--threads", "8"]
    if name == "gunicorn":
        return [
            str(VENV_BIN / "gunicorn"),
            *("-k", "gthread", "-w", "1", "--threads", "8"),
            *("-b", f"{HOST}:{port}"),
            *("--control-socket", str(tmp_dir / f"gunicorn-{port}.ctl")),
            wsgi_name,
        ]
    if name == "waitress":
        return [
            str(VENV_BIN / "waitress-serve"),
            "--threads=8",
            f"--listen={HOST}:{port}",
            wsgi_name,
        ]
    if name == "twist":
        return [
            str(VENV_BIN / "twist"),
            "web",
            *("--wsgi", fqpn),
            *("--listen", f"tcp:{port}:interface={HOST}"),
        ]
    if name == "granian":
        return [
            str(VENV_BIN / "granian"),
            *("--interface", "wsgi", "--workers", "1"),
            *("--host", HOST, "--port", str(port)),
            wsgi_name,
        ]
    raise ValueError(f"unknown server {name!r}")


def describe_argv(name: str, app: str, extra: list[str] | None = None) -> str:
    """The command line for the docs, with placeholders instead of this run's port and paths."""
    argv = server_argv(name, app, 0, Path("/tmp"), extra)
    text = " ".join([Path(argv[0]).name, *argv[1:]])
    text = text.replace(f"{HOST}:0", f"{HOST}:PORT").replace("tcp:0:", "tcp:PORT:")
    text = text.replace("--port 0", "--port PORT").replace(str(BENCH_DIR), "bench")
    return f"taskset -c {SERVER_CPU} {text}".replace(" --control-socket /tmp/gunicorn-0.ctl", "")


@dataclass
class RunningServer:
    """One started server process group, its port and its log file."""

    name: str
    app: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def start_server(
    name: str, app: str, log_dir: Path, smoke_path: str, extra: list[str] | None = None
) -> RunningServer:
    """Start `name` pinned to CPU 0 and return once it answers `smoke_path` with 200.

    Raises ServerFailed (after stopping whatever was started) if it exits, never listens within
    START_DEADLINE_S, or answers the smoke request with anything but 200.
    """
    port = free_port()
    log_path = log_dir / f"{name}-{app}-{port}.log"
    argv = ["taskset", "-c", SERVER_CPU, *server_argv(name, app, port, log_dir, extra)]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONDONTWRITEBYTECODE="1")
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop_server reaches workers
            )
        except OSError as exc:
            raise ServerFailed(f"could not exec {argv[3]}: {exc}") from exc
    server = RunningServer(name, app, port, proc, log_path)
    try:
        _wait_listening(server)
        _smoke(server, smoke_path)
    except ServerFailed:
        stop_server(server)
        raise
    return server


def _wait_listening(server: RunningServer) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerFailed(
                f"exited with status {server.proc.returncode} before listening: "
                + server.log_tail(4).replace("\n", " | ")
            )
        try:
            with socket.create_connection((HOST, server.port), timeout=1.0):
                return
        except OSError:
            # Not listening yet: poll again, on a short period, until the deadline.
            try:
                server.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
    raise ServerFailed(f"not listening on {HOST}:{server.port} after {START_DEADLINE_S:.0f}s")


def _smoke(server: RunningServer, path: str) -> None:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ServerFailed(f"smoke GET {path} failed: {exc!r}") from exc
    finally:
        conn.close()
    if resp.status != 200:
        raise ServerFailed(f"smoke GET {path} answered {resp.status}")


def stop_server(server: RunningServer) -> None:
    """SIGTERM the server's process group, then SIGKILL it if still alive after STOP_GRACE_S."""
    pgid = server.proc.pid  # start_new_session made the child its group leader
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            server.proc.wait(timeout=wait_s)
            if not _group_alive(pgid):
                break
        except subprocess.TimeoutExpired:
            continue
    if server.proc.poll() is None:
        server.proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_tree(root_pid: int) -> list[int]:
    """root_pid and all its descendants, read from /proc (gunicorn and granian fork workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; split after the ")" that closes the command name.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def tree_rss_bytes(root_pid: int, peak: bool = False) -> int:
    """Resident memory of a process and its descendants (VmHWM per process if peak)."""
    key = "VmHWM" if peak else "VmRSS"
    return sum(_status_kib(pid, key) for pid in _proc_tree(root_pid)) * 1024


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process, all its threads included, in clock ticks (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    # After the ")" that closes the command name, field 3 (state) is index 0: utime is field
    # 14 and stime field 15 of proc(5), so indexes 11 and 12.
    return int(fields[11]) + int(fields[12])


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its descendants."""
    ticks = sum(_cpu_ticks(pid) for pid in _proc_tree(root_pid))
    return ticks / os.sysconf("SC_CLK_TCK")
