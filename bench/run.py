"""Benchmark runner: interleaved rounds of every scenario against treadle and its peers.

Benchmark tooling, not part of the test suite: `bench/.venv/bin/python -m bench.run [--quick]`.
It starts each server fresh per (scenario, round), loads it from another CPU, records a failed
sample (never aborts) when a server or load generator fails, and writes docs/benchmarks.md plus
raw JSON under bench/results/. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import load, report, servers
from bench.djstatic import STATIC_URL_PATH, ensure_static_file

WARMUP_S = 1.0
IDLE_DEADLINE_S = 60.0  # to open all idle connections and get every answer
NOFILE_WANTED = 65_536  # 10k idle connections on each side of loopback, plus slack

# Each scenario: the app, the load, and which servers take part by default.
SCENARIOS: list[dict[str, Any]] = [
    {
        "key": "hello64",
        "title": "hello, 64 keep-alive connections",
        "kind": "wrk",
        "app": "hello",
        "path": "/",
        "connections": 64,
        "threads": 2,
        "servers": servers.PEERS,
    },
    {
        "key": "hello1",
        "title": "hello, 1 connection (latency)",
        "kind": "wrk",
        "app": "hello",
        "path": "/",
        "connections": 1,
        "threads": 1,
        "servers": (*servers.PEERS, "treadle-spin"),
    },
    {
        "key": "mib",
        "title": "1 MiB responses, 16 connections",
        "kind": "wrk",
        "app": "mib",
        "path": "/",
        "connections": 16,
        "threads": 2,
        "servers": servers.PEERS,
    },
    {
        "key": "c1000",
        "title": "hello, 1000 connections",
        "kind": "wrk",
        "app": "hello",
        "path": "/",
        "connections": 1000,
        "threads": 2,
        "servers": servers.PEERS,
    },
    {
        "key": "idle10k",
        "title": "10,000 idle keep-alive connections",
        "kind": "idle",
        "app": "hello",
        "path": "/",
        "connections": 10_000,
        "threads": 0,
        "servers": ("treadle", "waitress", "gunicorn"),
    },
    {
        # A CPU-bound app: what treadle's reactor-plus-pool design must not make unfair
        # (an app thread starved of the GIL mid-request shows in p99).
        "key": "djpage64",
        "title": "Django page (template, no database), 64 connections",
        "kind": "wrk",
        "app": "djpage",
        "path": "/",
        "connections": 64,
        "threads": 2,
        "servers": servers.PEERS,
    },
    {
        "key": "static",
        "title": "static file, 100 KiB, 64 connections",
        "kind": "wrk",
        "app": "static",
        "path": STATIC_URL_PATH,
        "connections": 64,
        "threads": 2,
        "servers": ("treadle", "gunicorn"),
    },
]
SCENARIO_KEYS = [s["key"] for s in SCENARIOS]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s (a smoke run)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; 1 if --quick)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (10; 3 if --quick)")
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIO_KEYS))
    parser.add_argument(
        "--servers", help="comma-separated servers: " + ",".join(servers.ALL_SERVERS)
    )
    parser.add_argument("--idle-count", type=int, default=10_000, help="idle connections")
    parser.add_argument("--idle-hold", type=float, default=5.0, help="seconds to hold them idle")
    parser.add_argument("--out", default=str(servers.REPO_ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    for name, allowed in (("only", SCENARIO_KEYS), ("servers", servers.ALL_SERVERS)):
        value = getattr(args, name)
        chosen = value.split(",") if value else list(allowed)
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            parser.error(f"--{name}: unknown {', '.join(unknown)}")
        setattr(args, name, chosen)
    return args


def raise_nofile() -> int:
    """Lift RLIMIT_NOFILE for this process and every child (servers and load generators)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, NOFILE_WANTED)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _extra(scenario: dict[str, Any], server_name: str) -> list[str]:
    return servers.IDLE_FLAGS.get(server_name, []) if scenario["kind"] == "idle" else []


def measure(
    scenario: dict[str, Any], server_name: str, args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    """One sample: start the server, warm it, load it, read its RSS, stop it."""
    sample: dict[str, Any] = {"server": server_name, "ok": False, "reason": ""}
    try:
        server = servers.start_server(
            server_name, scenario["app"], log_dir, scenario["path"], _extra(scenario, server_name)
        )
    except servers.ServerFailed as exc:
        sample["reason"] = _one_line(f"did not start: {exc}")
        sample["start_failed"] = True
        return sample
    try:
        if scenario["kind"] == "idle":
            idle = load.run_idle(
                server.port, server.pid, args.idle_count, args.idle_hold, IDLE_DEADLINE_S
            )
            sample.update(vars(idle))
        else:
            conns, threads = scenario["connections"], scenario["threads"]
            load.run_wrk(server.port, scenario["path"], conns, threads, WARMUP_S)
            cpu_before = servers.tree_cpu_s(server.pid)
            result = load.run_wrk(server.port, scenario["path"], conns, threads, args.duration)
            cpu_s = servers.tree_cpu_s(server.pid) - cpu_before
            sample.update(
                rps=result.requests_per_s,
                p50_ms=result.p50_ms,
                p99_ms=result.p99_ms,
                errors=result.errors,
                error_detail=result.error_detail,
                unaccepted=result.unaccepted,
                requests=result.requests,
                cpu_s=cpu_s,
                cpu_us_per_request=cpu_s * 1e6 / result.requests if result.requests else None,
                peak_rss=servers.tree_rss_bytes(server.pid, peak=True),
            )
        if server.proc.poll() is not None:
            sample["reason"] = f"server exited with status {server.proc.returncode} under load"
        else:
            sample["ok"] = True
    except load.LoadFailed as exc:
        sample["reason"] = _one_line(f"load failed: {exc}")
    finally:
        servers.stop_server(server)
    if not sample["ok"] and server.log_tail():
        sample["reason"] += " — server log: " + _one_line(server.log_tail(3), 400)
    return sample


def _progress(sample: dict[str, Any]) -> str:
    if not sample["ok"]:
        return "FAILED: " + sample["reason"][:160]
    if "rps" in sample:
        return (
            f"{sample['rps']:,.0f} req/s, p50 {sample['p50_ms']:.2f} ms,"
            f" p99 {sample['p99_ms']:.2f} ms, errors {sample['errors']},"
            f" CPU/req {sample['cpu_us_per_request'] or 0:.1f} us,"
            f" unaccepted {sample['unaccepted']}"
        )
    return (
        f"answered {sample['answered']}/{sample['target']}, {sample['still_open']} open"
        f" after hold, peak RSS {sample['peak_rss_bytes'] / report.MIB:.1f} MiB"
    )


def run_all(args: argparse.Namespace, log_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Samples per scenario: round r runs every server once, rotating the order each round."""
    samples: dict[str, list[dict[str, Any]]] = {}
    for scenario in SCENARIOS:
        if scenario["key"] not in args.only:
            continue
        names = [n for n in scenario["servers"] if n in args.servers]
        skipped: set[str] = set()
        rows = samples.setdefault(scenario["key"], [])
        for round_no in range(args.rounds):
            shift = round_no % max(1, len(names))
            for name in names[shift:] + names[:shift]:
                if name in skipped:
                    rows.append(
                        {
                            "server": name,
                            "ok": False,
                            "round": round_no + 1,
                            "reason": "skipped: did not start in round 1",
                        }
                    )
                    continue
                started = time.monotonic()
                sample = measure(scenario, name, args, log_dir)
                sample["round"] = round_no + 1
                rows.append(sample)
                if sample.get("start_failed") and round_no == 0:
                    skipped.add(name)
                elapsed = time.monotonic() - started
                print(
                    f"[{scenario['key']} r{round_no + 1}] {name}: {_progress(sample)}"
                    f" ({elapsed:.1f}s)",
                    flush=True,
                )
    return samples


def machine_facts() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    venv_python = servers.VENV_BIN / "python"
    probe = (
        "import sys; from importlib.metadata import version as v\n"
        "print('python', sys.version.split()[0])\n"
        "for n in ('treadle','twisted','gunicorn','waitress','granian','django','whitenoise'):\n"
        "    try: print(n, v(n))\n"
        "    except Exception: print(n, 'not installed')\n"
    )
    facts = {"nproc": str(os.cpu_count()), "CPU": cpu, "kernel": platform.release()}
    try:
        done = subprocess.run(
            [str(venv_python), "-c", probe], capture_output=True, text=True, timeout=60, check=False
        )
        for line in done.stdout.splitlines():
            name, _, version = line.partition(" ")
            facts[name] = version
    except (OSError, subprocess.TimeoutExpired) as exc:
        facts["packages"] = f"could not be read: {exc}"
    try:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
        facts["wrk"] = (wrk.stdout or wrk.stderr).splitlines()[0].strip()
    except (OSError, subprocess.TimeoutExpired, IndexError):
        facts["wrk"] = "not found"
    return facts


def describe(scenario: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Scenario dict for the report: how the load was made and each server's command line."""
    if scenario["kind"] == "idle":
        how = (
            f"`python -m bench.idle_client` pinned to CPU 1 opens {args.idle_count} connections"
            f" (at most 500 connecting at once), sends one `GET /` on each, holds them all"
            f" idle for {args.idle_hold:g} s, then reads the server's RSS and peak RSS"
            " (VmHWM, summed over its process tree) from /proc while they are still open."
            f" Opening and answering all of them has a {IDLE_DEADLINE_S:g} s deadline."
            " Each server gets the flags that lift its idle-timeout and connection-count"
            " limits (shown below); with defaults none of them can hold 10k idle connections."
        )
    else:
        argv = load.wrk_argv(
            f"http://127.0.0.1:PORT{scenario['path']}",
            scenario["connections"],
            scenario["threads"],
            args.duration,
        )
        how = (
            f"`{shlex.join(argv)}` after a {WARMUP_S:g} s warm-up. Errors are wrk's socket"
            " errors (connect, read, write, timeout) plus responses with status >= 400."
            " Unaccepted is the median length of the server's accept queue while wrk ran"
            " (read from /proc/net/tcp every 0.5 s): connections the server left waiting"
            " and never served, which wrk does not count as errors."
        )
    names = [n for n in scenario["servers"] if n in args.servers]
    return {
        **scenario,
        "how": how,
        "argv": [servers.describe_argv(n, scenario["app"], _extra(scenario, n)) for n in names],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if shutil.which("wrk") is None or not (servers.VENV_BIN / "python").exists():
        print("run bench/setup.sh first (wrk and bench/.venv are needed)", file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print(
            "warning: fewer than 2 CPUs; server and load generator will share one", file=sys.stderr
        )
    nofile = raise_nofile()
    ensure_static_file()
    command = shlex.join(["bench/.venv/bin/python", "-m", "bench.run", *sys.argv[1:]])
    settings = (
        f"{args.rounds} round(s) of {args.duration:g} s per wrk run, RLIMIT_NOFILE {nofile},"
        f" {args.idle_count} idle connections"
    )
    results_dir = servers.BENCH_DIR / "results"
    results_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="treadle-bench-") as tmp:
        samples = run_all(args, Path(tmp))
        # Keep the server logs of this run next to the raw samples, for post-mortems.
        logs = results_dir / "logs"
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(tmp, logs, ignore=shutil.ignore_patterns("*.ctl"))
    summaries = report.summarize_all(samples, servers.ALL_SERVERS)
    machine = machine_facts()
    scenarios = [describe(s, args) for s in SCENARIOS if s["key"] in samples]
    text = report.render(scenarios, summaries, machine, command, settings)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    raw = {"command": command, "machine": machine, "samples": samples}
    (results_dir / f"{stamp}.json").write_text(json.dumps(raw, indent=1))
    (results_dir / "latest.json").write_text(json.dumps(raw, indent=1))
    print(f"wrote {args.out} and {results_dir / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
