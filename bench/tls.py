"""HTTPS: HTTP/1.1 keep-alive hello over TLS and the TLS handshake rate, treadle vs gunicorn.

Benchmark tooling, run by hand (``bench/.venv/bin/python -m bench.tls``); it prints Markdown
and writes raw samples to bench/results/tls.json. Both servers are one process with 8 app
threads, pinned to CPU 0 with ``taskset``, serving ``bench.apps:hello`` with the same ECDSA
P-256 certificate (made here); treadle with ``--certfile/--keyfile`` on a tcp bind, gunicorn
``-k gthread`` with the same flags. Load generators are pinned to CPU 1, on 127.0.0.1:

- keep-alive: ``wrk -t2 -c64`` over https (one handshake per connection, then requests);
- handshakes: ``h2load --h1 -c N -n N`` (each client makes one connection and one request, so
  the rate is new TLS connections per second), repeated ``HANDSHAKE_REPEATS`` times per round.

Rounds are interleaved and the order rotates; figures are medians. Every server is its own
process group, stopped with SIGTERM then SIGKILL (bench/servers.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import socket
import ssl
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench import load, servers

APP = "bench.apps:hello"
HANDSHAKE_CLIENTS = 500
HANDSHAKE_REPEATS = 3
H2LOAD_TIMEOUT_S = 120.0


def make_pair(directory: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def argv_for(name: str, port: int, cert: Path, key: Path) -> list[str]:
    if name == "treadle":
        return [
            str(servers.VENV_BIN / "python"), "-m", "treadle", "serve", APP,
            "--bind", f"tcp:{port}:interface={servers.HOST}", "--threads", "8",
            "--certfile", str(cert), "--keyfile", str(key),
        ]  # fmt: skip
    return [
        str(servers.VENV_BIN / "gunicorn"), "-k", "gthread", "-w", "1", "--threads", "8",
        "-b", f"{servers.HOST}:{port}", "--certfile", str(cert), "--keyfile", str(key),
        "--log-level", "warning", APP,
    ]  # fmt: skip


def start(name: str, cert: Path, key: Path, log_dir: Path) -> servers.RunningServer:
    port = servers.free_port()
    log_path = log_dir / f"tls-{name}-{port}.log"
    env = dict(os.environ, PYTHONPATH=str(servers.REPO_ROOT), PYTHONDONTWRITEBYTECODE="1")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["taskset", "-c", servers.SERVER_CPU, *argv_for(name, port, cert, key)],
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
        smoke(server.port)
    except (servers.ServerFailed, OSError) as exc:
        servers.stop_server(server)
        raise servers.ServerFailed(f"{name}: {exc}; log: {server.log_tail(4)}") from exc
    return server


def smoke(port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((servers.HOST, port), timeout=10)
    with raw, context.wrap_socket(raw) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = sock.recv(64)
    if not head.startswith(b"HTTP/1.1 200"):
        raise servers.ServerFailed(f"smoke GET answered {head[:40]!r}")


def keep_alive(port: int, duration_s: float) -> load.WrkResult:
    argv = load.wrk_argv(f"https://{servers.HOST}:{port}/", 64, 2, duration_s)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    if result.returncode != 0:
        raise load.LoadFailed(f"wrk exited {result.returncode}: {result.stderr[:200]}")
    return load.parse_wrk(result.stdout)


def handshakes(port: int, clients: int) -> tuple[float, int]:
    """(new connections per second, failed requests) of one h2load batch."""
    argv = [
        "taskset", "-c", load.LOAD_CPU, "h2load", "--h1", "-t1",
        f"-c{clients}", f"-n{clients}", f"https://{servers.HOST}:{port}/",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=H2LOAD_TIMEOUT_S)
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", result.stdout)
    failed = re.search(r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed",
                       result.stdout)  # fmt: skip
    if result.returncode != 0 or rate is None or failed is None:
        raise load.LoadFailed(f"h2load: {result.stdout[-300:]} {result.stderr[-200:]}")
    return float(rate[1]), int(failed[1])


def run(rounds: int, duration_s: float, out: Path) -> dict[str, Any]:
    names = ["treadle", "gunicorn"]
    samples: dict[str, dict[str, list[float]]] = {
        name: {"rps": [], "p99_ms": [], "errors": [], "handshakes": [], "hs_failed": []}
        for name in names
    }
    log_dir = servers.BENCH_DIR / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_pair(Path(tmp))
        for round_index in range(rounds):
            order = names[round_index % 2 :] + names[: round_index % 2]
            for name in order:
                server = start(name, cert, key, log_dir)
                try:
                    keep_alive(server.port, 1.0)  # warm-up
                    result = keep_alive(server.port, duration_s)
                    samples[name]["rps"].append(result.requests_per_s)
                    samples[name]["p99_ms"].append(result.p99_ms)
                    samples[name]["errors"].append(result.socket_errors + result.non_2xx)
                    for _ in range(HANDSHAKE_REPEATS):
                        rate, failed = handshakes(server.port, HANDSHAKE_CLIENTS)
                        samples[name]["handshakes"].append(rate)
                        samples[name]["hs_failed"].append(failed)
                finally:
                    servers.stop_server(server)
                last = samples[name]
                print(
                    f"round {round_index + 1} {name}: {last['rps'][-1]:.0f} req/s, "
                    f"{last['handshakes'][-1]:.0f} handshakes/s",
                    flush=True,
                )
    medians = {
        name: {metric: statistics.median(values) for metric, values in by_metric.items()}
        for name, by_metric in samples.items()
    }
    report = {"rounds": rounds, "duration_s": duration_s, "samples": samples, "medians": medians}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    return report


def markdown(report: dict[str, Any]) -> str:
    t, g = report["medians"]["treadle"], report["medians"]["gunicorn"]
    ratio = t["rps"] / g["rps"]
    lines = [
        f"HTTPS hello, {report['rounds']} interleaved rounds, medians; servers on CPU 0, "
        "load on CPU 1; ECDSA P-256 certificate.",
        "",
        "| server | keep-alive req/s (wrk -c64) | p99 ms | errors | new TLS connections/s "
        f"(h2load --h1 -c{HANDSHAKE_CLIENTS} -n{HANDSHAKE_CLIENTS}) |",
        "|---|---|---|---|---|",
    ]
    for name, m in (("treadle --certfile", t), ("gunicorn -k gthread --certfile", g)):
        lines.append(
            f"| {name} | {m['rps']:,.0f} | {m['p99_ms']:.1f} | {m['errors']:.0f} | "
            f"{m['handshakes']:,.0f} |"
        )
    lines += [
        "",
        f"Keep-alive ratio treadle/gunicorn: {ratio:.2f}x (target >= 2x: "
        f"{'met' if ratio >= 2 else 'missed'}); handshake rate ratio: "
        f"{t['handshakes'] / g['handshakes']:.2f}x.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=servers.BENCH_DIR / "results" / "tls.json")
    args = parser.parse_args()
    started = time.monotonic()
    report = run(args.rounds, args.duration, args.out)
    print(markdown(report))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
