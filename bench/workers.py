"""Worker processes under treadle's supervisor: throughput, accept balance, a killed worker, RSS.

Benchmark tooling, run by hand (``bench/.venv/bin/python -m bench.workers``); it prints Markdown
for docs/benchmarks-workers.md and writes raw samples to bench/results/workers.json. Servers run
pinned to CPU 0 with ``taskset`` (the supervisor and its workers inherit the pin, so two workers
share that core), wrk to CPU 1, all on 127.0.0.1. Rounds are interleaved and figures are
medians. Nothing here may outlive a run: every server is its own process group, stopped with
SIGTERM then SIGKILL (bench/servers.py).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench import load, servers

# -- the app: hello world that counts what each worker served ----------------------------

_served = itertools.count()
_BODY = b"Hello, world!\n"
_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(_BODY)))]


def counted(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """bench.apps:hello, plus GET /count: this process's pid and requests served so far."""
    if environ["PATH_INFO"] == "/count":
        body = json.dumps({"pid": os.getpid(), "count": next(_served)}).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    next(_served)
    start_response("200 OK", list(_HEADERS))
    return [_BODY]


APP = "bench.workers:counted"
READY = re.compile(r"(\d+) workers ready at .+ worker pids ([\d, ]+)\)")


def treadle_argv(port: int, workers: int) -> list[str]:
    return [
        str(servers.VENV_BIN / "python"), "-m", "treadle", "serve", APP,
        "--bind", f"tcp:{port}:interface={servers.HOST}", "--threads", "8",
        "--workers", str(workers),
    ]  # fmt: skip


def gunicorn_argv(port: int, workers: int) -> list[str]:
    return [
        str(servers.VENV_BIN / "gunicorn"),
        *("-k", "gthread", "-w", str(workers), "--threads", "8"),
        *("-b", f"{servers.HOST}:{port}"),
        APP,
    ]


def start(
    name: str,
    argv: list[str],
    port: int,
    log_dir: Path,
    src: str | None = None,
    cpus: str = servers.SERVER_CPU,
) -> Any:
    """One server on ``cpus`` in its own process group; returns once it answers."""
    log_path = log_dir / f"{name}-{port}.log"
    paths = [p for p in (src, str(servers.REPO_ROOT)) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), PYTHONDONTWRITEBYTECODE="1")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["taskset", "-c", cpus, *argv],
            cwd=servers.REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = servers.RunningServer(name, "hello", port, proc, log_path)
    try:
        servers._wait_listening(server)
        if "--workers" in argv and argv[argv.index("--workers") + 1] != "1":
            wait_ready_line(server)  # the supervisor listens before its workers are ready
        servers._smoke(server, "/")
    except servers.ServerFailed:
        servers.stop_server(server)
        raise
    return server


def wait_ready_line(server: Any, timeout: float = 60.0) -> list[int]:
    """The worker pids of the supervisor's last "workers ready" line (polling its log file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = READY.findall(server.log_path.read_text(errors="replace"))
        if found:
            return [int(pid) for pid in found[-1][1].split(", ")]
        time.sleep(0.1)  # polling a log file written by another process; no event to wait on
    raise servers.ServerFailed("no 'workers ready' line")


def counts(port: int, pids: set[int], timeout: float = 30.0) -> dict[int, int]:
    """Requests each worker served: GET /count on new connections until every pid answered."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while set(seen) != pids and time.monotonic() < deadline:
        conn = http.client.HTTPConnection(servers.HOST, port, timeout=10)
        try:
            conn.request("GET", "/count")
            info = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        seen[info["pid"]] = info["count"]
    return seen


def children(pid: int) -> list[int]:
    return [p for p in servers._proc_tree(pid) if p != pid]


def rss_kib(pid: int) -> int:
    return servers._status_kib(pid, "VmRSS")


# -- the measurements ----------------------------------------------------------------------


# Two workers on one core show the supervisor's cost, not its gain; on both cores they share
# wrk's core. Both are measured and named.
BOTH_CPUS = "0,1"


def throughput(
    name: str, argv_of: Any, workers: int, cpus: str, args: Any, log_dir: Path
) -> dict[str, Any]:
    port = servers.free_port()
    server = start(name, argv_of(port, workers), port, log_dir, cpus=cpus)
    try:
        load.run_wrk(port, "/", 64, 2, 1.0)  # warm-up
        result = load.run_wrk(port, "/", 64, 2, args.duration)
        return {"rps": result.requests_per_s, "errors": result.errors, "p99_ms": result.p99_ms}
    finally:
        servers.stop_server(server)


def balance(
    option: str, src: str | None, connections: int, cpus: str, args: Any, log_dir: Path
) -> float:
    """Busiest worker's requests / least busy's, two workers, wrk keep-alive."""
    port = servers.free_port()
    server = start(f"treadle-{option}", treadle_argv(port, 2), port, log_dir, src, cpus)
    try:
        pids = set(wait_ready_line(server))
        before = counts(port, pids)
        load.run_wrk(port, "/", connections, 2, args.duration)
        after = counts(port, pids)
        served = [after[pid] - before[pid] for pid in pids]
        return max(served) / max(1, min(served))
    finally:
        servers.stop_server(server)


def established_to(pid: int, port: int) -> int:
    """Connections ``pid`` holds on ``port`` (ss -tnp), i.e. the most it can have in flight."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, timeout=10, check=False,
    ).stdout  # fmt: skip
    return sum(1 for line in out.splitlines() if f"pid={pid}," in line)


def kill_one(args: Any, log_dir: Path, src: str | None = None) -> dict[str, Any]:
    """kill -9 one of two workers under wrk -c64; wrk's failures vs its open connections."""
    port = servers.free_port()
    server = start("treadle-kill", treadle_argv(port, 2), port, log_dir, src, BOTH_CPUS)
    try:
        pids = wait_ready_line(server)
        victim = pids[0]
        held: dict[str, int] = {}

        def kill_later() -> None:
            time.sleep(args.duration / 3)  # into the measured run (a timer, not a sync)
            held["connections"] = established_to(victim, port)
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_later)
        killer.start()
        result = load.run_wrk(port, "/", 64, 2, args.duration)
        killer.join()
        return {
            "failed": result.errors,
            "victim_connections": held.get("connections", -1),
            "requests": result.requests,
            "detail": result.error_detail,
        }
    finally:
        servers.stop_server(server)


def sighup_under_load(
    args: Any, log_dir: Path, src: str | None = None, reloads: int = 10
) -> dict[str, Any]:
    """wrk -c64 keep-alive while the supervisor gets ``reloads`` SIGHUPs, each sent once
    the previous reload is done (its "reload done" line) plus half a second."""
    port = servers.free_port()
    server = start("treadle-hup", treadle_argv(port, 2), port, log_dir, src, BOTH_CPUS)
    try:
        wait_ready_line(server)

        def reloads_done() -> int:
            return server.log_path.read_text(errors="replace").count("reload done")

        def reload_repeatedly() -> None:
            for number in range(reloads):
                time.sleep(0.5)  # the schedule of the run, not a synchronisation
                os.kill(server.pid, signal.SIGHUP)
                deadline = time.monotonic() + 30
                while reloads_done() <= number and time.monotonic() < deadline:
                    time.sleep(0.1)  # polling a log file written by another process

        hups = threading.Thread(target=reload_repeatedly)
        hups.start()
        result = load.run_wrk(port, "/", 64, 2, args.hup_duration)
        hups.join()
        done = server.log_path.read_text(errors="replace").count("reload done")
        return {
            "requests": result.requests,
            "errors": result.errors,
            "detail": result.error_detail,
            "reloads_done": done,
        }
    finally:
        servers.stop_server(server)


def idle_rss(args: Any, log_dir: Path) -> dict[str, Any]:
    port = servers.free_port()
    server = start("treadle-rss", treadle_argv(port, 2), port, log_dir)
    try:
        pids = wait_ready_line(server)
        counts(port, set(pids))
        workers = [rss_kib(pid) for pid in pids]
        return {"supervisor_kib": rss_kib(server.pid), "worker_kib": workers}
    finally:
        servers.stop_server(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument(
        "--shared-socket-src",
        help="a copy of src/ whose supervisor shares one socket (the baseline for balance)",
    )
    parser.add_argument("--only", default="throughput,balance,kill,rss,sighup")
    parser.add_argument("--src", help="src/ to run treadle from for kill and sighup")
    parser.add_argument("--label", default="slots", help="names the kill and sighup samples")
    parser.add_argument("--hup-duration", type=float, default=45.0)
    parser.add_argument("--out", default=str(servers.BENCH_DIR / "results" / "workers.json"))
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    log_dir = servers.BENCH_DIR / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    samples: dict[str, list[Any]] = {}

    def add(key: str, value: Any) -> None:
        samples.setdefault(key, []).append(value)
        print(key, value, flush=True)

    for round_no in range(args.rounds):
        order = [("treadle", treadle_argv), ("gunicorn", gunicorn_argv)]
        if round_no % 2:
            order.reverse()
        if "throughput" in only:
            for workers, cpus in ((1, "0"), (2, "0"), (2, BOTH_CPUS)):
                for name, argv_of in order:
                    key = f"throughput {name} w{workers} cpus {cpus}"
                    try:
                        add(key, throughput(name, argv_of, workers, cpus, args, log_dir))
                    except (servers.ServerFailed, load.LoadFailed) as error:
                        add(key, {"failed": str(error)})
        if "balance" in only:
            options = [("slots", None)]
            if args.shared_socket_src:
                options.append(("shared", args.shared_socket_src))
            for connections, cpus in itertools.product((64, 1000), ("0", BOTH_CPUS)):
                for option, src in options if round_no % 2 == 0 else options[::-1]:
                    add(f"balance {option} c{connections} cpus {cpus}",
                        balance(option, src, connections, cpus, args, log_dir))  # fmt: skip
        if "kill" in only:
            add(f"kill {args.label}", kill_one(args, log_dir, args.src))
        if "rss" in only:
            add("rss", idle_rss(args, log_dir))
        if "sighup" in only:
            add(f"sighup {args.label}", sighup_under_load(args, log_dir, args.src))
    Path(args.out).write_text(json.dumps(samples, indent=1))
    print()
    for key, values in samples.items():
        if key.startswith("balance"):
            print(f"{key}: {[round(v, 2) for v in values]} median {statistics.median(values):.2f}")
        elif key.startswith("throughput"):
            rps = [v.get("rps", 0) for v in values]
            print(f"{key}: {[round(r) for r in rps]} median {statistics.median(rps):.0f}")
        else:
            print(key, values)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
