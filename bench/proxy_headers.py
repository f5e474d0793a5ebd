"""What proxy headers and the PROXY protocol cost treadle: hello at 64 connections.

Benchmark tooling, run by hand (``bench/.venv/bin/python -m bench.proxy_headers``); prints a
Markdown table of requests/s per case (median of interleaved rounds) and its ratio to the
first case. treadle runs pinned to CPU 0, wrk (and HAProxy, for the PROXY cases) to CPU 1,
all on 127.0.0.1. Every server is its own process group, stopped with SIGTERM then SIGKILL
(bench/servers.py); HAProxy is stopped by its pid.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import load, servers

FORWARDED = ["-H", "X-Forwarded-For: 203.0.113.9", "-H", "X-Forwarded-Proto: https"]

# (name, treadle flags, wrk header flags, through HAProxy: None, "plain" or "send-proxy")
CASES: list[tuple[str, list[str], list[str], str | None]] = [
    ("off (--forwarded-allow-ips ''), no header", ["--forwarded-allow-ips", ""], [], None),
    ("off, X-Forwarded-For and -Proto sent", ["--forwarded-allow-ips", ""], FORWARDED, None),
    ("default (127.0.0.1,::1 trusted), no header", [], [], None),
    ("default, X-Forwarded-For and -Proto sent", [], FORWARDED, None),
    ("HAProxy mode tcp in front", [], [], "plain"),
    ("HAProxy send-proxy, --proxy-protocol", ["--proxy-protocol"], [], "send-proxy"),
]

HAPROXY_CONF = """\
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend bench
    bind 127.0.0.1:{port}
    default_backend treadle
backend treadle
    server treadle 127.0.0.1:{upstream} {option}
"""


def start_haproxy(directory: Path, upstream: int, option: str) -> tuple[subprocess.Popen, int]:
    port = servers.free_port()
    conf = directory / f"haproxy-{port}.cfg"
    conf.write_text(HAPROXY_CONF.format(port=port, upstream=upstream, option=option))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    proc = subprocess.Popen(
        ["taskset", "-c", load.LOAD_CPU, haproxy, "-f", str(conf), "-db"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((servers.HOST, port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("haproxy did not start") from None
            time.sleep(0.05)  # polling the port: haproxy has no readiness signal


def start_unsmoked(log_dir: Path, flags: list[str]) -> servers.RunningServer:
    """treadle pinned to CPU 0, waited on until it accepts (wrk's warm-up checks answers)."""
    port = servers.free_port()
    argv = ["taskset", "-c", servers.SERVER_CPU]
    argv += servers.server_argv("treadle", "hello", port, log_dir, flags)
    log_path = log_dir / f"treadle-proxy-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=servers.REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = servers.RunningServer("treadle", "hello", port, proc, log_path)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((servers.HOST, port), timeout=1).close()
            return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                servers.stop_server(server)
                raise RuntimeError("treadle did not start: " + server.log_tail()) from None
            time.sleep(0.05)  # polling the port: the bench has no pipe to its log line


def wrk(port: int, headers: list[str], duration_s: float) -> load.WrkResult:
    argv = load.wrk_argv(f"http://{servers.HOST}:{port}/", 64, 2, duration_s)
    argv = argv[:-1] + headers + argv[-1:]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr[:200]}")
    return load.parse_wrk(done.stdout)


def measure(
    case: tuple[str, list[str], list[str], str | None], log_dir: Path, duration_s: float
) -> tuple[load.WrkResult, float]:
    _, flags, headers, through = case
    if "--proxy-protocol" in flags:
        server = start_unsmoked(log_dir, flags)  # a direct GET would be refused
    else:
        server = servers.start_server("treadle", "hello", log_dir, "/", extra=flags)
    haproxy = None
    try:
        port = server.port
        if through is not None:
            option = "send-proxy" if through == "send-proxy" else ""
            haproxy, port = start_haproxy(log_dir, server.port, option)
        warm = wrk(port, headers, 2.0)  # errors here are a slow start on a busy machine
        if not warm.requests:
            raise RuntimeError(f"{case[0]}: warm-up failed: {warm}")
        cpu_before = servers.tree_cpu_s(server.pid)
        result = wrk(port, headers, duration_s)
        # treadle's own CPU time per request: what contention for the cores cannot inflate
        cpu_us = (servers.tree_cpu_s(server.pid) - cpu_before) / max(result.requests, 1) * 1e6
        return result, cpu_us
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(10)
        servers.stop_server(server)


def in_memory(rounds: int, requests: int) -> None:
    """The reactor-side path of one keep-alive request (parse, dispatch, the app run inline,
    framing) driven in memory through the real HTTP/1.1 stack, as tests/unit/test_proxied.py
    wires it: the setting's cost without wrk, the kernel or other processes' noise. Cases
    alternate within each round; the best round of each is kept."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from bench.apps import hello
    from treadle.config import Config
    from treadle.deadlines import Deadlines
    from treadle.dispatch import Dispatcher
    from treadle.http import forwarded
    from treadle.http.protocol import HTTPFactory
    from treadle.timing import RequestRecord
    from treadle.wsgi import body as bodies
    from treadle.wsgi.container import WSGIContainer

    plain = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
    with_headers = plain[:-2] + b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n"

    def connection(allow: str) -> tuple[Any, StringTransport]:
        config = Config.from_settings({"forwarded_allow_ips": allow})
        deadlines = Deadlines(MemoryReactorClock())
        container = WSGIContainer(hello, call_from_thread=lambda f, *args: f(*args))

        def submit(exchange: Any) -> bool:
            container.job(exchange).run()
            return True

        dispatch: Any = Dispatcher(submit=submit)
        proxy_headers = forwarded.from_settings(allow)
        if proxy_headers is not None:
            dispatch = proxy_headers.wrap(dispatch)
        factory = HTTPFactory(
            config, deadlines=deadlines, dispatch=dispatch, bodies=bodies, records=RequestRecord
        )
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        return protocol, transport

    cases = [
        ("off, no header", "", plain),
        ("off, headers sent", "", with_headers),
        ("default, no header", "127.0.0.1,::1", plain),
        ("default, headers sent", "127.0.0.1,::1", with_headers),
    ]
    best = {name: float("inf") for name, _, _ in cases}
    for _ in range(rounds):
        for name, allow, request in cases:
            protocol, transport = connection(allow)
            started = time.perf_counter()
            for _ in range(requests):
                protocol.dataReceived(request)
                transport.clear()
            best[name] = min(best[name], (time.perf_counter() - started) / requests)
    base = best[cases[0][0]]
    print("\n| in memory | us/request (best round) | vs first |\n|---|---|---|")
    for name, _, _ in cases:
        print(f"| {name} | {best[name] * 1e6:.2f} | {best[name] / base:.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--in-memory", action="store_true", help="only the in-memory figures")
    args = parser.parse_args()
    if args.in_memory:
        in_memory(rounds=max(args.rounds, 5) * 4, requests=2000)
        return 0
    log_dir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    rates: dict[str, list[float]] = {name: [] for name, *_ in CASES}
    cpu: dict[str, list[float]] = {name: [] for name, *_ in CASES}
    errors: dict[str, int] = {name: 0 for name, *_ in CASES}
    for round_number in range(args.rounds):
        order = CASES[round_number % len(CASES) :] + CASES[: round_number % len(CASES)]
        for case in order:
            result, cpu_us = measure(case, log_dir, args.duration)
            rates[case[0]].append(result.requests_per_s)
            cpu[case[0]].append(cpu_us)
            errors[case[0]] = max(errors[case[0]], result.errors)
            print(
                f"round {round_number + 1}: {case[0]}: {result.requests_per_s:.0f}/s, "
                f"{cpu_us:.1f} us CPU/request",
                flush=True,
            )
    base = statistics.median(rates[CASES[0][0]])
    base_cpu = statistics.median(cpu[CASES[0][0]])
    print(
        "\n| case | requests/s (median) | vs first | treadle CPU us/request | vs first | errors |"
        "\n|---|---|---|---|---|---|"
    )
    for name, *_ in CASES:
        median = statistics.median(rates[name])
        cpu_us = statistics.median(cpu[name])
        print(
            f"| {name} | {median:.0f} | {median / base:.3f} | {cpu_us:.1f} | "
            f"{cpu_us / base_cpu:.3f} | {errors[name]} |"
        )
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
