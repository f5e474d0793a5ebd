"""HTTP/2 over TLS: treadle against gunicorn gthread (h2 beta) and `twist web --wsgi`, with h2load.

Benchmark tooling, not part of the test suite. Each server is one process pinned to CPU 0 with
8 app threads where it has the knob; h2load (and `openssl s_time`) run pinned to CPU 1; all on
127.0.0.1 with a certificate made for the run. Scenarios:

- ``h2``: h2load, 16 connections x 10 concurrent streams, the 14-byte hello (the issue's anchor);
- ``h1``: h2load --h1, 64 connections, hello over HTTP/1.1 + TLS (treadle and gunicorn);
- ``handshakes``: `openssl s_time -new`, full TLS handshakes per second (treadle and gunicorn).

Rounds are interleaved, the server order rotates; figures are medians. Run from the repository
root: ``bench/.venv/bin/python -m bench.h2 [--rounds 3] [--requests 5000]``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.servers import HOST, SERVER_CPU, VENV_BIN, free_port
from tests.integration.tlscerts import make_certs

LOAD_CPU = "1"
REPO = Path(__file__).resolve().parent.parent
START_DEADLINE_S = 30.0


def server_argv(name: str, port: int, key: Path, cert: Path) -> list[str]:
    ssl_bind = f"ssl:{port}:interface={HOST}:privateKey={key}:certKey={cert}"
    if name == "treadle":
        return [str(VENV_BIN / "treadle"), "serve", "bench.apps:hello", "--bind", ssl_bind,
                "--threads", "8"]  # fmt: skip
    if name == "gunicorn":
        return [str(VENV_BIN / "gunicorn"), "-k", "gthread", "-w", "1", "--threads", "8",
                "--bind", f"{HOST}:{port}", "--certfile", str(cert), "--keyfile", str(key),
                "--http-protocols", "h2,h1", "--log-level", "warning",
                "bench.apps:hello"]  # fmt: skip
    if name == "twist":
        return [str(VENV_BIN / "twist"), "web", "--wsgi", "bench.apps.hello", "--listen", ssl_bind]
    raise ValueError(name)


def start(name: str, key: Path, cert: Path, log_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *server_argv(name, port, key, cert)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},  # twist imports bench.apps from here
        start_new_session=True,
    )
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start; see {log_dir / (name + '.log')}")
        probe = subprocess.run(
            ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-brief"],
            input=b"",
            capture_output=True,
            timeout=10,
        )
        if probe.returncode == 0:
            return proc, port
        time.sleep(0.2)  # polling a starting server: nothing to wait on
    stop(proc)
    raise RuntimeError(f"{name} did not listen in {START_DEADLINE_S} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def h2load(port: int, requests: int, h1: bool) -> tuple[float, int]:
    """(requests per second, failed requests) for ``requests`` requests after a warm-up.

    By count, not by time: h2load's duration mode (-D) waits forever at its end against
    gunicorn's HTTP/2.
    """
    shape = ["--h1", "-c", "64", "-m", "1"] if h1 else ["-c", "16", "-m", "10"]
    url = f"https://{HOST}:{port}/"
    for count in (max(requests // 10, 320), requests):  # the first run warms up
        result = subprocess.run(
            ["taskset", "-c", LOAD_CPU, "h2load", *shape, "-n", str(count), url],
            capture_output=True,
            text=True,
            timeout=300,
        )
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", result.stdout)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed",
                       result.stdout)  # fmt: skip
    if rate is None or counts is None or int(counts[1]) == 0:
        raise RuntimeError(f"h2load failed: {result.stdout[-800:]} {result.stderr[-400:]}")
    return float(rate[1]), int(counts[2])


def handshakes(port: int, duration_s: float) -> float:
    """Full TLS handshakes per second (a new session each time)."""
    result = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CPU,
            "openssl",
            "s_time",
            "-connect",
            f"{HOST}:{port}",
            "-new",
            "-time",
            str(int(duration_s)),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
    )
    match = re.search(r"(\d+) connections in ([\d.]+)s", result.stdout)
    if match is None:
        raise RuntimeError(f"s_time failed: {result.stdout[-400:]} {result.stderr[-400:]}")
    return int(match[1]) / float(match[2])


SCENARIOS = {
    "h2": ("treadle", "gunicorn", "twist"),
    "h1": ("treadle", "gunicorn"),
    "handshakes": ("treadle", "gunicorn"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="s_time seconds")
    parser.add_argument("--requests", type=int, default=5000, help="h2load requests per run")
    parser.add_argument("--only", default=",".join(SCENARIOS))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="treadle-bench-h2-"))
    certs = make_certs(work)
    samples: dict[tuple[str, str], list[float]] = {}
    failures: dict[tuple[str, str], int] = {}
    for round_index in range(args.rounds):
        for scenario in args.only.split(","):
            servers = list(SCENARIOS[scenario])
            shift = round_index % len(servers)
            for name in servers[shift:] + servers[:shift]:
                try:
                    proc, port = start(name, certs.key, certs.cert, work)
                except RuntimeError as error:
                    print(f"round {round_index + 1} {scenario} {name}: {error}", flush=True)
                    continue
                try:
                    if scenario == "handshakes":
                        value, failed = handshakes(port, args.duration), 0
                    else:
                        value, failed = h2load(port, args.requests, h1=scenario == "h1")
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    print(f"round {round_index + 1} {scenario} {name}: {error}", flush=True)
                    continue
                finally:
                    stop(proc)
                samples.setdefault((scenario, name), []).append(value)
                failures[(scenario, name)] = max(failures.get((scenario, name), 0), failed)
                print(f"round {round_index + 1} {scenario} {name}: {value:,.0f}/s", flush=True)
    print()
    print("| scenario | server | median /s | rounds | failed | treadle / server |")
    print("|---|---|---|---|---|---|")
    for scenario in args.only.split(","):
        ours = samples.get((scenario, "treadle"))
        for name in SCENARIOS[scenario]:
            values = samples.get((scenario, name))
            if not values:
                print(f"| {scenario} | {name} | failed | 0 | - | - |")
                continue
            median = statistics.median(values)
            ratio = f"{statistics.median(ours) / median:.2f}x" if ours and name != "treadle" else ""
            failed = failures[(scenario, name)]
            print(f"| {scenario} | {name} | {median:,.0f} | {len(values)} | {failed} | {ratio} |")


if __name__ == "__main__":
    main()
