"""Turns benchmark samples into docs/benchmarks.md: medians, treadle/peer ratios, issue targets.

Benchmark tooling, pure: it takes the samples and machine facts that bench/run.py collected and
returns Markdown text. It runs nothing and measures nothing.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024
TREADLE = "treadle"


@dataclass
class Summary:
    """Medians over the rounds of one server in one scenario (None where no round succeeded)."""

    server: str
    rounds: int
    ok_rounds: int = 0
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    worst_errors: int | None = None
    worst_unaccepted: int | None = None
    error_detail: str = ""
    peak_rss: float | None = None
    cpu_us: float | None = None  # server CPU (user + system) per request, microseconds
    idle_rss: float | None = None
    idle_peak_rss: float | None = None
    opened: int | None = None
    answered: int | None = None
    open_when_answered: int | None = None
    still_open: int | None = None
    target: int | None = None
    failures: list[str] = field(default_factory=list)
    rps_by_round: dict[int, float] = field(default_factory=dict)  # for paired ratios
    p50_by_round: dict[int, float] = field(default_factory=dict)


def _median(values: list[Any]) -> Any:
    return statistics.median(values) if values else None


def summarize(samples: list[dict[str, Any]]) -> Summary:
    """Summarize the samples of one (scenario, server); each is a dict written by bench/run.py."""
    ok = [s for s in samples if s["ok"]]
    summary = Summary(server=samples[0]["server"], rounds=len(samples), ok_rounds=len(ok))
    summary.failures = [s["reason"] for s in samples if not s["ok"]]
    if not ok:
        return summary
    if "rps" in ok[0]:
        summary.rps = _median([s["rps"] for s in ok])
        summary.p50_ms = _median([s["p50_ms"] for s in ok])
        summary.p99_ms = _median([s["p99_ms"] for s in ok])
        worst = max(ok, key=lambda s: s["errors"])
        summary.worst_errors, summary.error_detail = worst["errors"], worst["error_detail"]
        summary.worst_unaccepted = max(s.get("unaccepted", 0) for s in ok)
        summary.peak_rss = _median([s["peak_rss"] for s in ok])
        summary.cpu_us = _median(
            [s["cpu_us_per_request"] for s in ok if s.get("cpu_us_per_request") is not None]
        )
        summary.rps_by_round = {s["round"]: s["rps"] for s in ok}
        summary.p50_by_round = {s["round"]: s["p50_ms"] for s in ok}
    else:
        summary.idle_rss = _median([s["rss_bytes"] for s in ok])
        summary.idle_peak_rss = _median([s["peak_rss_bytes"] for s in ok])
        # The worst round, for counts: one round that dropped connections is a failure to hold.
        summary.opened = min(s["opened"] for s in ok)
        summary.answered = min(s["answered"] for s in ok)
        summary.open_when_answered = min(s["open_when_answered"] for s in ok)
        summary.still_open = min(s["still_open"] for s in ok)
        summary.target = ok[0]["target"]
    return summary


def summarize_all(
    samples: dict[str, list[dict[str, Any]]], order: tuple[str, ...]
) -> dict[str, dict[str, Summary]]:
    """Summaries per scenario, then per server in `order` (treadle first)."""
    return {
        key: {
            name: summarize([row for row in rows if row["server"] == name])
            for name in order
            if any(row["server"] == name for row in rows)
        }
        for key, rows in samples.items()
    }


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value / MIB:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}x"


def _paired(mine: dict[int, float], peer: dict[int, float]) -> str:
    """min / median / max of the per-round ratios: each round's two runs were back to back."""
    ratios = sorted(mine[r] / peer[r] for r in mine.keys() & peer.keys() if peer[r])
    if not ratios:
        return "—"
    return f"{ratios[0]:.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}"


def _status(summary: Summary) -> str:
    if summary.ok_rounds == summary.rounds:
        return f"{summary.ok_rounds}/{summary.rounds}"
    return f"**{summary.ok_rounds}/{summary.rounds}**"


def wrk_table(summaries: list[Summary]) -> list[str]:
    lines = [
        "| server | req/s (median) | p50 ms | p99 ms | errors (worst round) "
        "| unaccepted (worst round) | server CPU µs/req | peak RSS MiB | rounds ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        errors = "—" if s.worst_errors is None else str(s.worst_errors)
        if s.error_detail:
            errors += f" ({s.error_detail})"
        lines.append(
            f"| {s.server} | {_num(s.rps, ',.0f')} | {_num(s.p50_ms, '.2f')} | "
            f"{_num(s.p99_ms, '.2f')} | {errors} | {_num(s.worst_unaccepted, 'd')} | "
            f"{_num(s.cpu_us, '.1f')} | {_mib(s.peak_rss)} | {_status(s)} |"
        )
    return lines


def idle_table(summaries: list[Summary]) -> list[str]:
    lines = [
        "| server | opened | answered | open when all answered | open after hold | "
        "RSS MiB after hold | peak RSS MiB | rounds ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        target = f" / {s.target}" if s.target else ""
        lines.append(
            f"| {s.server} | {_num(s.opened, 'd')}{target} | {_num(s.answered, 'd')} | "
            f"{_num(s.open_when_answered, 'd')} | {_num(s.still_open, 'd')} | "
            f"{_mib(s.idle_rss)} | {_mib(s.idle_peak_rss)} | {_status(s)} |"
        )
    return lines


def ratio_table(summaries: list[Summary]) -> list[str]:
    """treadle/peer per metric: above 1 is better for req/s, below 1 is better for the rest."""
    mine = next((s for s in summaries if s.server == TREADLE), None)
    peers = [s for s in summaries if s.server != TREADLE]
    if mine is None or not peers:
        return []
    if mine.ok_rounds == 0:
        return ["No treadle round succeeded, so there are no treadle/peer ratios."]
    if mine.idle_peak_rss is not None:
        lines = ["| treadle / peer | peak RSS (lower is better) |", "|---|---:|"]
        for p in peers:
            held = "" if p.still_open == p.target else f" ({p.server} held only {p.still_open})"
            lines.append(f"| {p.server} | {_ratio(mine.idle_peak_rss, p.idle_peak_rss)}{held} |")
        return lines
    lines = [
        "| treadle / peer | req/s (higher is better) | p50 (lower is better) | "
        "p99 (lower is better) | CPU per request (lower is better) | "
        "peak RSS (lower is better) | "
        "req/s per round: min / median / max | p50 per round: min / median / max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in peers:
        lines.append(
            f"| {p.server} | {_ratio(mine.rps, p.rps)} | {_ratio(mine.p50_ms, p.p50_ms)} | "
            f"{_ratio(mine.p99_ms, p.p99_ms)} | {_ratio(mine.cpu_us, p.cpu_us)} | "
            f"{_ratio(mine.peak_rss, p.peak_rss)} | "
            f"{_paired(mine.rps_by_round, p.rps_by_round)} | "
            f"{_paired(mine.p50_by_round, p.p50_by_round)} |"
        )
    return lines


# The issue's targets: (scenario, text, check). A check returns True/False, or None when a
# figure it needs was not measured.
def _get(results: dict[str, dict[str, Summary]], scenario: str, server: str) -> Summary | None:
    return results.get(scenario, {}).get(server)


def _at_least(a: float | None, factor: float, b: float | None) -> bool | None:
    return None if a is None or b is None else a >= factor * b


def _at_most(a: float | None, factor: float, b: float | None) -> bool | None:
    return None if a is None or b is None else a <= factor * b


def _attr(summary: Summary | None, name: str) -> Any:
    return None if summary is None else getattr(summary, name)


def evaluate_targets(results: dict[str, dict[str, Summary]]) -> list[tuple[str, str, str]]:
    """Each target as (target, figures, verdict) with verdict 'met', 'missed' or 'not measured'."""

    def fig(scenario: str, server: str, name: str) -> Any:
        return _attr(_get(results, scenario, server), name)

    def show(value: Any, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    t_rps, w_rps = fig("hello64", TREADLE, "rps"), fig("hello64", "waitress", "rps")
    tw_rps = fig("hello64", "twist", "rps")
    t_p99, w_p99 = fig("hello64", TREADLE, "p99_ms"), fig("hello64", "waitress", "p99_ms")
    t1, w1 = fig("hello1", TREADLE, "p50_ms"), fig("hello1", "waitress", "p50_ms")
    spin1 = fig("hello1", "treadle-spin", "p50_ms")
    spin1_cpu = fig("hello1", "treadle-spin", "cpu_us")
    t1_cpu = fig("hello1", TREADLE, "cpu_us")
    tm, gm = fig("mib", TREADLE, "rps"), fig("mib", "gunicorn", "rps")
    tk, wk = fig("c1000", TREADLE, "rps"), fig("c1000", "waitress", "rps")
    tk_err = fig("c1000", TREADLE, "worst_errors")
    tk_unacc = fig("c1000", TREADLE, "worst_unaccepted")
    idle = _get(results, "idle10k", TREADLE)
    ts, gs = fig("static", TREADLE, "rps"), fig("static", "gunicorn", "rps")

    idle_ok: bool | None = None
    idle_fig = "—"
    if idle is not None and idle.idle_peak_rss is not None:
        idle_ok = idle.idle_peak_rss < 200e6 and idle.still_open == idle.target
        idle_fig = (
            f"peak {idle.idle_peak_rss / 1e6:.0f} MB; {idle.answered}/{idle.target} answered,"
            f" {idle.still_open} still open after the hold"
        )
    rows = [
        (
            "hello, 64 conns: req/s >= 2.5x waitress",
            _at_least(t_rps, 2.5, w_rps),
            f"{show(t_rps, ',.0f')} vs {show(w_rps, ',.0f')} ({_ratio(t_rps, w_rps)})",
        ),
        (
            "hello, 64 conns: req/s >= 5x twist web",
            _at_least(t_rps, 5, tw_rps),
            f"{show(t_rps, ',.0f')} vs {show(tw_rps, ',.0f')} ({_ratio(t_rps, tw_rps)})",
        ),
        (
            "hello, 64 conns: p99 <= half of waitress's",
            _at_most(t_p99, 0.5, w_p99),
            f"{show(t_p99, '.2f')} ms vs {show(w_p99, '.2f')} ms",
        ),
        (
            "hello, 1 conn: median latency <= waitress's (idle spin off, the default)",
            _at_most(t1, 1.0, w1),
            f"{show(t1, '.3f')} ms vs {show(w1, '.3f')} ms; with --idle-spin-us 50:"
            f" {show(spin1, '.3f')} ms at {show(spin1_cpu, '.1f')} µs CPU/req"
            f" (off: {show(t1_cpu, '.1f')} µs CPU/req)",
        ),
        (
            "1 MiB responses: req/s >= gunicorn gthread",
            _at_least(tm, 1.0, gm),
            f"{show(tm, ',.0f')} vs {show(gm, ',.0f')} ({_ratio(tm, gm)})",
        ),
        (
            "1000 conns: zero errors (and every connection accepted)",
            None if tk_err is None else tk_err == 0 and tk_unacc == 0,
            f"{show(tk_err, 'd')} errors, {show(tk_unacc, 'd')} unaccepted in the worst round",
        ),
        (
            "1000 conns: req/s >= 2x waitress",
            _at_least(tk, 2, wk),
            f"{show(tk, ',.0f')} vs {show(wk, ',.0f')} ({_ratio(tk, wk)})",
        ),
        ("10k idle conns: peak RSS < 200 MB, all answered and held", idle_ok, idle_fig),
        (
            "static 100 KiB: req/s >= 3x gunicorn + whitenoise",
            _at_least(ts, 3, gs),
            f"{show(ts, ',.0f')} vs {show(gs, ',.0f')} ({_ratio(ts, gs)})",
        ),
    ]
    verdict = {True: "**met**", False: "**missed**", None: "not measured"}
    return [(text, figures, verdict[ok]) for text, ok, figures in rows]


def render(
    scenarios: list[dict[str, Any]],
    results: dict[str, dict[str, Summary]],
    machine: dict[str, str],
    command: str,
    settings: str,
) -> str:
    """The whole of docs/benchmarks.md."""
    out = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py`; do not edit by hand. Re-run it to refresh (see",
        "bench/README.md).",
        "",
        "**Read the ratios, not the absolute numbers.** Absolute figures are noisy on shared or",
        "virtual machines (neighbours, CPU frequency, the load generator sharing the box); the",
        "treadle/peer ratios from interleaved rounds on the same machine are what to read.",
        "Every server runs as one process pinned to CPU 0 (`taskset -c 0`), the load generator",
        "is pinned to CPU 1, all traffic is on 127.0.0.1, and each figure is the median over",
        "rounds. Ratios and target verdicts compare those medians. The ratio tables also give",
        "the spread of the per-round ratios (each round runs the servers back to back, so a",
        "round's ratio is the fairest single comparison when the machine's speed drifts).",
        "",
        "## Machine and command",
        "",
        f"- command: `{command}`",
        f"- settings: {settings}",
    ]
    out += [f"- {key}: {value}" for key, value in machine.items()]
    out += [
        "",
        "## Targets (from the issue)",
        "",
        "| target | figures (treadle vs peer) | verdict |",
    ]
    out += ["|---|---|---|"]
    out += [f"| {t} | {f} | {v} |" for t, f, v in evaluate_targets(results)]
    out += [
        "",
        "A peer with unaccepted connections in a scenario's table served fewer connections than",
        "wrk opened (waitress serves 100 at a time by default and leaves the rest in the listen",
        "backlog), so its req/s there is not for the full load.",
    ]
    for scenario in scenarios:
        summaries = list(results.get(scenario["key"], {}).values())
        if not summaries:
            continue
        out += ["", f"## {scenario['title']}", "", scenario["how"], ""]
        out += ["Servers:", ""]
        out += [f"- `{argv}`" for argv in scenario["argv"]]
        out.append("")
        out += idle_table(summaries) if scenario["kind"] == "idle" else wrk_table(summaries)
        ratios = ratio_table(summaries)
        if ratios:
            out += ["", *ratios]
        failures = [(s.server, reason) for s in summaries for reason in s.failures]
        if failures:
            out += ["", "Failed rounds:", ""]
            out += [f"- {server}: {reason}" for server, reason in failures]
    return "\n".join(out) + "\n"
