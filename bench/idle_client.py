"""Idle keep-alive client: opens N connections to 127.0.0.1, one GET on each, and holds them open.

Benchmark tooling, run as `python -m bench.idle_client` by bench/load.py pinned to CPU 1. While
every connection is held it reads the server's RSS from /proc and prints one JSON line. Bounded:
every step has a deadline, and it only ever connects to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

from bench.servers import tree_rss_bytes

HOST = "127.0.0.1"
CONNECTS_IN_FLIGHT = 500  # stay under every server's listen backlog so SYNs are not dropped
CONNECT_TIMEOUT_S = 10.0

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _read_response(reader: asyncio.StreamReader) -> bool:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    ok = lines[0].split(" ")[1:2] == ["200"]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return ok


async def _one(port: int, request: bytes, gate: asyncio.Semaphore, deadline: float):
    async with gate:
        # The overall deadline bounds the connect phase too: a server that stops accepting
        # (waitress past its connection limit) must not stretch the run to count/500 timeouts.
        budget = min(CONNECT_TIMEOUT_S, deadline - time.monotonic())
        if budget <= 0:
            return None, False
        try:
            conn = await asyncio.wait_for(asyncio.open_connection(HOST, port), budget)
        except (OSError, TimeoutError):
            return None, False
    reader, writer = conn
    writer.write(request)
    remaining = max(0.1, deadline - time.monotonic())
    try:
        answered = await asyncio.wait_for(_read_response(reader), remaining)
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
        answered = False  # reset, closed, timed out or garbled: not answered
    return conn, answered


def _count_open(conns: list[Conn]) -> int:
    """Connections the server has neither closed (EOF) nor reset."""
    return sum(1 for reader, writer in conns if not (reader.at_eof() or writer.is_closing()))


async def run(port: int, pid: int, count: int, hold_s: float, deadline_s: float) -> dict:
    started = time.monotonic()
    deadline = started + deadline_s
    request = f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    results = await asyncio.gather(*(_one(port, request, gate, deadline) for _ in range(count)))
    conns: list[Conn] = [conn for conn, _ in results if conn is not None]
    answered = sum(1 for _, ok in results if ok)
    open_when_answered = _count_open(conns)
    # Hold every connection idle for a while: a server that drops idle keep-alive connections
    # (gunicorn's 2 s keepalive) shows it in still_open.
    await asyncio.sleep(hold_s)
    rss = tree_rss_bytes(pid)
    peak_rss = tree_rss_bytes(pid, peak=True)
    still_open = _count_open(conns)
    elapsed = time.monotonic() - started
    for _, writer in conns:
        writer.close()
    return {
        "target": count,
        "opened": len(conns),
        "answered": answered,
        "open_when_answered": open_when_answered,
        "still_open": still_open,
        "rss_bytes": rss,
        "peak_rss_bytes": peak_rss,
        "elapsed_s": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="server pid whose RSS to read")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to hold them idle")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds to open and ask")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    result = asyncio.run(run(args.port, args.pid, args.count, args.hold, args.deadline))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
