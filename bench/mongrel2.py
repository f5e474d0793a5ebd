"""Requests/s through Mongrel2 to treadle (1 and 2 handler processes), beside treadle direct.

Benchmark tooling, run by hand (``bench/.venv/bin/python -m bench.mongrel2``); prints a
Markdown table. The hello app (bench/apps.py), or with ``--app djpage`` a Django template
page (bench/djpage), with ``wrk -t2 -c64`` pinned to CPU 1; the servers (treadle direct; or
Mongrel2 and its handlers) pinned to CPU 0. Also a single-threaded handler loop like
m2wsgi's (blocking recv, a full environ, the app, send), to compare with. Rounds are
interleaved and the order rotates; figures are medians over rounds. CPU seconds used by
Mongrel2 and by the handlers during the measured run say which one saturates. Mongrel2
comes from Debian's mongrel2-core (tests/integration/mongrel2_server.py starts it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import load, servers
from tests.integration.mongrel2_server import Mongrel2, wait_until

SETUPS = ("direct", "m2-treadle-1", "m2-treadle-2", "m2-loop")
VENV_BIN = Path(sys.executable).parent

# m2wsgi's model in a few lines: one thread, blocking recv, a full environ, the app, one
# send. It reuses treadle's parser so that only the serving model differs.
LOOP = """
import io, importlib, sys, zmq
from treadle.mongrel2.message import Request, parse_message, request_head, response_messages
module, _, name = sys.argv[3].partition(":")
app = getattr(importlib.import_module(module), name)
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL); pull.connect(sys.argv[1])
pub = ctx.socket(zmq.PUB); pub.connect(sys.argv[2])
print("Handling for Mongrel2", flush=True)
while True:
    message = parse_message(pull.recv())
    if type(message) is not Request:
        continue
    head, origin = request_head(message)
    script = origin.script_name
    environ = {
        "REQUEST_METHOD": head.method.decode(), "SCRIPT_NAME": script,
        "PATH_INFO": head.path.decode("latin-1")[len(script):],
        "QUERY_STRING": head.query.decode("latin-1"), "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(message.body), "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for key, value in head.headers:
        environ["HTTP_" + key.decode("latin-1").upper().replace("-", "_")] = value.decode("latin-1")
    got = []
    result = app(environ, lambda status, headers, exc_info=None: got.append((status, headers)))
    body = b"".join(result)
    if hasattr(result, "close"):
        result.close()
    status, headers = got[0]
    lines = "".join(f"{k}: {v}\\r\\n" for k, v in headers)
    data = f"HTTP/1.1 {status}\\r\\n{lines}\\r\\n".encode("latin-1") + body
    for out in response_messages(message.sender, [message.conn_id], data):
        pub.send(out)
"""


def start_handlers(
    m2: Mongrel2, setup: str, app: str, log_dir: Path
) -> list[subprocess.Popen[bytes]]:
    count = {"m2-treadle-1": 1, "m2-treadle-2": 2, "m2-loop": 1}[setup]
    procs = []
    for n in range(count):
        if setup == "m2-loop":
            argv = [sys.executable, "-c", LOOP, m2.send_spec, m2.recv_spec, servers.APPS[app][0]]
        else:
            argv = [
                str(VENV_BIN / "treadle"), "mongrel2", servers.APPS[app][0],
                m2.send_spec, m2.recv_spec, "--threads", "8",
            ]  # fmt: skip
        log = open(log_dir / f"{setup}-{n}.log", "wb")  # noqa: SIM115 - the child keeps it
        procs.append(
            subprocess.Popen(
                ["taskset", "-c", servers.SERVER_CPU, *argv],
                cwd=servers.REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        wait_until(
            lambda n=n: b"Handling for Mongrel2" in (log_dir / f"{setup}-{n}.log").read_bytes(),
            30,
            f"{setup} handler {n}",
        )
    return procs


def one_run(setup: str, app: str, duration_s: float) -> tuple[load.WrkResult, float, float]:
    """(wrk's result, Mongrel2's CPU s, the handlers' CPU s) for one measured run."""
    with tempfile.TemporaryDirectory(prefix="bench-m2-") as tmp:
        directory = Path(tmp)
        if setup == "direct":
            server = servers.start_server("treadle", app, directory, "/")
            try:
                load.run_wrk(server.port, "/", 64, 2, 1.0)  # warm-up
                before = servers.tree_cpu_s(server.proc.pid)
                result = load.run_wrk(server.port, "/", 64, 2, duration_s)
                return result, 0.0, servers.tree_cpu_s(server.proc.pid) - before
            finally:
                servers.stop_server(server)
        m2 = Mongrel2(directory, prefix=["taskset", "-c", servers.SERVER_CPU])
        handlers: list[subprocess.Popen[bytes]] = []
        try:
            handlers = start_handlers(m2, setup, app, directory)
            time.sleep(0.5)  # let every handler's PULL join Mongrel2's round-robin
            load.run_wrk(m2.port, "/app/", 64, 2, 1.0)  # warm-up
            pid = m2.pid() or m2.proc.pid
            m2_before = servers.tree_cpu_s(pid)
            handler_before = sum(servers.tree_cpu_s(h.pid) for h in handlers)
            result = load.run_wrk(m2.port, "/app/", 64, 2, duration_s)
            m2_cpu = servers.tree_cpu_s(pid) - m2_before
            handler_cpu = sum(servers.tree_cpu_s(h.pid) for h in handlers) - handler_before
            return result, m2_cpu, handler_cpu
        finally:
            for proc in handlers:
                proc.terminate()
            for proc in handlers:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            m2.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--only", default=",".join(SETUPS))
    parser.add_argument(
        "--app",
        choices=("hello", "djpage"),
        default="hello",
        help="hello (14 bytes) or djpage (a Django template page)",
    )
    args = parser.parse_args()
    setups = tuple(s for s in SETUPS if s in args.only.split(","))
    results: dict[str, list[tuple[load.WrkResult, float, float]]] = {s: [] for s in setups}
    for round_number in range(args.rounds):
        shift = round_number % len(setups)
        for setup in setups[shift:] + setups[:shift]:
            result = one_run(setup, args.app, args.duration)
            results[setup].append(result)
            wrk, m2_cpu, handler_cpu = result
            print(f"round {round_number + 1} {setup}: {wrk.requests_per_s:.0f} req/s, "
                  f"p99 {wrk.p99_ms:.1f} ms, errors {wrk.errors}, CPU s: mongrel2 "
                  f"{m2_cpu:.1f}, handlers {handler_cpu:.1f}", flush=True)  # fmt: skip
    direct = statistics.median(r[0].requests_per_s for r in results.get("direct", [])) or 1.0
    print()
    print(f"| {args.app}, wrk -t2 -c64 | req/s (median) | vs direct | p99 ms | errors | "
          "CPU s mongrel2 / handlers | CPU µs per request mongrel2 / handlers |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for setup, runs in results.items():
        rps = statistics.median(r[0].requests_per_s for r in runs)
        p99 = statistics.median(r[0].p99_ms for r in runs)
        errors = max(r[0].errors for r in runs)
        m2_cpu = statistics.median(r[1] for r in runs)
        handler_cpu = statistics.median(r[2] for r in runs)
        # Per request, which saturates first does not depend on how the core is shared.
        m2_us = statistics.median(1e6 * r[1] / max(r[0].requests, 1) for r in runs)
        handler_us = statistics.median(1e6 * r[2] / max(r[0].requests, 1) for r in runs)
        print(f"| {setup} | {rps:.0f} | {rps / direct:.2f}x | {p99:.1f} | {errors} | "
              f"{m2_cpu:.1f} / {handler_cpu:.1f} | {m2_us:.0f} / {handler_us:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
