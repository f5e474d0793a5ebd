"""Requests/s through nginx: nginx -> treadle against nginx -> gunicorn gthread.

Benchmark tooling, run by hand (``bench/.venv/bin/python -m bench.behind_nginx``); prints a
Markdown table. Each server runs one process with 8 app threads pinned to CPU 0 (bench/servers.py);
nginx runs with the configuration the integration tests use (tests/integration/proxies.py:
upstream keepalive over TCP) pinned to CPU 1 with wrk (-t2 -c64). Rounds are interleaved and
the server order rotates; figures are medians over rounds. Everything listens on 127.0.0.1 and
is stopped (server process group, nginx) before the next run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import load, servers
from tests.integration.proxies import NGINX, NGINX_CONF, free_port, wait_accepting

SERVERS = ("treadle", "gunicorn")


def start_nginx(directory: Path, upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    assert NGINX is not None, "nginx is not installed"
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(dir=directory, upstream=f"127.0.0.1:{upstream_port}", port=port)
    )
    log = directory / "error.log"
    argv = ["taskset", "-c", load.LOAD_CPU, NGINX, "-p", str(directory), "-c", str(conf)]
    proc = subprocess.Popen([*argv, "-e", str(log)], stdin=subprocess.DEVNULL)
    wait_accepting("127.0.0.1", port, proc, log, 15)
    return proc, port


def stop_nginx(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def one_run(name: str, duration_s: float) -> load.WrkResult:
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        directory = Path(tmp)
        server = servers.start_server(name, "hello", directory, "/")
        try:
            nginx, port = start_nginx(directory, server.port)
            try:
                load.run_wrk(port, "/", 64, 2, 1.0)  # warm-up
                return load.run_wrk(port, "/", 64, 2, duration_s)
            finally:
                stop_nginx(nginx)
        finally:
            servers.stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    results: dict[str, list[load.WrkResult]] = {name: [] for name in SERVERS}
    for round_number in range(args.rounds):
        order = SERVERS[round_number % 2 :] + SERVERS[: round_number % 2]
        for name in order:
            result = one_run(name, args.duration)
            results[name].append(result)
            print(f"round {round_number + 1} {name}: {result.requests_per_s:.0f} req/s, "
                  f"p99 {result.p99_ms:.1f} ms, errors {result.errors}", flush=True)  # fmt: skip
    medians = {
        name: statistics.median(r.requests_per_s for r in runs) for name, runs in results.items()
    }
    print()
    print("| through nginx (wrk -t2 -c64) | req/s (median) | p99 ms (median) | errors |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        p99 = statistics.median(r.p99_ms for r in runs)
        errors = max(r.errors for r in runs)
        print(f"| {name} | {medians[name]:.0f} | {p99:.1f} | {errors} |")
    print(f"\ntreadle / gunicorn gthread: {medians['treadle'] / medians['gunicorn']:.2f}")


if __name__ == "__main__":
    main()
