"""Load generators: wrk (parsed from its --latency report) and the 10k idle-connection client.

Benchmark tooling. Both run pinned to CPU 1 with `taskset`, only against 127.0.0.1, and each
subprocess has a hard timeout; a load generator that fails yields a failed measurement, never a
hang.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOAD_CPU = "1"
HOST = "127.0.0.1"
WRK_TIMEOUT = "2s"  # wrk's own default, stated so the docs can quote it

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


class LoadFailed(Exception):
    """The load generator could not run or its output could not be read."""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reports; latencies in milliseconds."""

    requests_per_s: float
    requests: int
    p50_ms: float
    p99_ms: float
    socket_errors: int  # connect + read + write + timeout
    non_2xx: int  # wrk counts statuses >= 400 ("Non-2xx or 3xx responses")
    error_detail: str
    unaccepted: int = 0  # median accept-queue length while wrk ran: connections never served

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


def wrk_argv(url: str, connections: int, threads: int, duration_s: float) -> list[str]:
    return [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "--latency",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        WRK_TIMEOUT,
        url,
    ]


def run_wrk(port: int, path: str, connections: int, threads: int, duration_s: float) -> WrkResult:
    """Run wrk for duration_s against http://127.0.0.1:port/path and parse its report.

    While wrk runs, the server's accept queue is sampled every 0.5 s: wrk does not count a
    connection that the server never accepts (waitress past its connection limit leaves them in
    the listen backlog) as an error, so `unaccepted` reports it.
    """
    argv = wrk_argv(f"http://{HOST}:{port}{path}", connections, threads, duration_s)
    limit = duration_s + 60
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise LoadFailed(f"could not run wrk: {exc}") from exc
    queue_samples: list[int] = []
    deadline = time.monotonic() + limit
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.kill()
                proc.communicate(timeout=10)
                raise LoadFailed(f"wrk did not finish within {limit:.0f}s") from None
            queue = listen_queue(port)
            if queue is not None:
                queue_samples.append(queue)
    if proc.returncode != 0:
        raise LoadFailed(f"wrk exited {proc.returncode}: {stderr.strip()[:200]}")
    result = parse_wrk(stdout)
    unaccepted = round(statistics.median(queue_samples)) if queue_samples else 0
    return dataclasses.replace(result, unaccepted=unaccepted)


def listen_queue(port: int) -> int | None:
    """Connections waiting in the accept queue of the socket listening on 127.0.0.1:port.

    For a LISTEN socket, the rx_queue column of /proc/net/tcp is the accept backlog.
    """
    local = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as table:
            for line in table:
                fields = line.split()
                if len(fields) > 4 and fields[1] == local and fields[3] == "0A":
                    return int(fields[4].split(":")[1], 16)
    except OSError:
        return None
    return None


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk 4.x output produced with --latency."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ", text, re.M)
    pcts = {
        pct: _to_ms(num, unit)
        for pct, num, unit in re.findall(
            r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\b", text, re.M
        )
    }
    if rps is None or total is None or "50" not in pcts or "99" not in pcts:
        raise LoadFailed("could not parse wrk output: " + text.strip()[-300:])
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    socket_errors, detail = 0, ""
    if sock:
        counts = [int(n) for n in sock.groups()]
        socket_errors = sum(counts)
        detail = "connect {}, read {}, write {}, timeout {}".format(*counts)
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non_2xx = int(non.group(1)) if non else 0
    if non_2xx:
        detail = (detail + "; " if detail else "") + f"non-2xx {non_2xx}"
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        requests=int(total.group(1)),
        p50_ms=pcts["50"],
        p99_ms=pcts["99"],
        socket_errors=socket_errors,
        non_2xx=non_2xx,
        error_detail=detail,
    )


@dataclass(frozen=True)
class IdleResult:
    """What the idle-connection client saw, and the server's RSS while they were all open."""

    target: int
    opened: int
    answered: int
    open_when_answered: int
    still_open: int  # after the hold
    rss_bytes: int  # after the hold, process tree
    peak_rss_bytes: int  # VmHWM summed over the process tree
    elapsed_s: float

    @property
    def all_answered(self) -> bool:
        return self.answered == self.target


def run_idle(
    port: int, server_pid: int, count: int, hold_s: float, deadline_s: float
) -> IdleResult:
    """Open `count` keep-alive connections, one GET each, hold them, read the server's RSS."""
    argv = [
        "taskset",
        "-c",
        LOAD_CPU,
        sys.executable,
        "-m",
        "bench.idle_client",
        *("--port", str(port), "--pid", str(server_pid), "--count", str(count)),
        *("--hold", str(hold_s), "--deadline", str(deadline_s)),
    ]
    limit = deadline_s + hold_s + 60
    try:
        done = subprocess.run(
            argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=limit, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadFailed(f"idle client did not finish within {limit:.0f}s") from exc
    if done.returncode != 0:
        raise LoadFailed(f"idle client exited {done.returncode}: {done.stderr.strip()[-300:]}")
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise LoadFailed(f"idle client printed no result: {done.stdout[-200:]!r}") from exc
    return IdleResult(**data)
