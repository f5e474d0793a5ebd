"""treadle.stats: aggregation per view, histogram buckets, the in-flight list, thread safety."""

from __future__ import annotations

import json
import threading

import pytest

from treadle.stats import (
    BUCKET_BOUNDS_S,
    MAX_VIEWS,
    NO_VIEW,
    OTHER_VIEWS,
    Stats,
    cumulative_buckets,
    status_class,
)
from treadle.timing import RequestRecord


class Clock:
    """A settable clock for Stats (elapsed times in inflight())."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def finished(
    *,
    queued_s: float = 0.0,
    service_s: float = 0.0,
    wait_s: float = 0.0,
    waits: int = 0,
    status: int = 200,
    bytes_sent: int = 0,
    view: str | None = None,
    started: bool = True,
) -> RequestRecord:
    record = RequestRecord("GET", "/", queued_at=100.0)
    if started:
        record.started_at = 100.0 + queued_s
        record.finished_at = record.started_at + service_s
    else:
        record.finished_at = 100.0 + queued_s
    record.wait_s, record.wait_count = wait_s, waits
    record.status, record.bytes_sent, record.view = status, bytes_sent, view
    return record


def run(stats: Stats, record: RequestRecord) -> None:
    stats.begin(record)
    stats.finish(record)


def test_totals_and_views_are_aggregated_separately() -> None:
    stats = Stats()
    run(stats, finished(view="shop.views.cart", status=200, bytes_sent=100, waits=2))
    run(stats, finished(view="shop.views.cart", status=404, bytes_sent=10))
    run(stats, finished(view="shop.views.home", status=500, bytes_sent=1))
    run(stats, finished(status=0))  # no view, and the client left before a response

    snap = stats.snapshot()
    assert snap["totals"]["count"] == 4
    assert snap["totals"]["bytes_sent"] == 111
    assert snap["totals"]["wait_count"] == 2
    assert snap["totals"]["status"] == {"none": 1, "1xx": 0, "2xx": 1, "3xx": 0, "4xx": 1, "5xx": 1}
    cart = snap["views"]["shop.views.cart"]
    assert cart["count"] == 2
    assert cart["bytes_sent"] == 110
    assert cart["status"]["2xx"] == 1 and cart["status"]["4xx"] == 1
    assert snap["views"]["shop.views.home"]["status"]["5xx"] == 1
    assert snap["views"][NO_VIEW]["count"] == 1
    assert set(snap["views"]) == {"shop.views.cart", "shop.views.home", NO_VIEW}


def test_snapshot_is_json_and_bounds_are_prometheus_style() -> None:
    stats = Stats()
    run(stats, finished(view="v", queued_s=0.002, service_s=0.2))
    snap = json.loads(json.dumps(stats.snapshot()))
    assert snap["bucket_bounds_s"] == list(BUCKET_BOUNDS_S)
    assert snap["bucket_bounds_s"][0] == 0.001 and snap["bucket_bounds_s"][-1] == 30.0
    assert snap["bucket_bounds_s"] == sorted(snap["bucket_bounds_s"])
    for name in ("queue_s", "service_s", "wait_s", "total_s"):
        assert len(snap["totals"][name]["buckets"]) == len(BUCKET_BOUNDS_S) + 1


def bucket_of(snap: dict, name: str) -> list[float | str]:
    """The upper bounds of the buckets holding observations ("+Inf" for the overflow one)."""
    bounds: list[float | str] = [*BUCKET_BOUNDS_S, "+Inf"]
    counts = snap["totals"][name]["buckets"]
    return [bound for bound, count in zip(bounds, counts, strict=True) for _ in range(count)]


@pytest.mark.parametrize(
    ("seconds", "bound"),
    [(0.0, 0.001), (0.001, 0.001), (0.0011, 0.0025), (0.3, 0.5), (30.0, 30.0), (31.0, "+Inf")],
)
def test_durations_land_in_the_bucket_whose_bound_is_the_first_not_below(
    seconds: float, bound: float | str
) -> None:
    stats = Stats()
    # started at t and finished at 2t (or both at 1.0): the difference is exactly `seconds`.
    start = seconds or 1.0
    record = RequestRecord(
        "GET", "/", queued_at=start, started_at=start, finished_at=2 * seconds or 1.0
    )
    run(stats, record)
    snap = stats.snapshot()
    assert bucket_of(snap, "service_s") == [bound]
    assert snap["totals"]["service_s"]["sum"] == pytest.approx(seconds)


def test_each_duration_feeds_its_own_histogram() -> None:
    stats = Stats()
    run(stats, finished(queued_s=0.004, service_s=2.0, wait_s=0.7, waits=3))
    snap = stats.snapshot()
    assert bucket_of(snap, "queue_s") == [0.005]
    assert bucket_of(snap, "service_s") == [2.5]
    assert bucket_of(snap, "wait_s") == [1.0]
    assert bucket_of(snap, "total_s") == [2.5]
    assert snap["totals"]["total_s"]["sum"] == pytest.approx(2.004)
    assert snap["totals"]["wait_s"]["sum"] == pytest.approx(0.7)


def test_a_request_dropped_from_the_queue_has_queue_and_total_time_only() -> None:
    stats = Stats()
    run(stats, finished(queued_s=0.02, started=False, status=503))
    totals = stats.snapshot()["totals"]
    assert totals["queue_s"]["count"] == 1 and totals["total_s"]["count"] == 1
    assert totals["queue_s"]["sum"] == pytest.approx(0.02)
    assert totals["service_s"]["count"] == 0 and totals["wait_s"]["count"] == 0
    assert totals["status"]["5xx"] == 1


def test_cumulative_buckets_give_prometheus_le_pairs() -> None:
    stats = Stats()
    for seconds in (0.0005, 0.002, 0.002, 100.0):
        run(stats, finished(service_s=seconds))
    pairs = cumulative_buckets(stats.snapshot()["totals"]["service_s"])
    assert pairs[0] == ("0.001", 1)
    assert pairs[1] == ("0.0025", 3)
    assert pairs[-2] == ("30.0", 3)
    assert pairs[-1] == ("+Inf", 4)
    assert [count for _, count in pairs] == sorted(count for _, count in pairs)


def test_status_classes() -> None:
    assert [status_class(s) for s in (0, 101, 204, 304, 499, 503, 600, 42)] == [
        "none", "1xx", "2xx", "3xx", "4xx", "5xx", "none", "none",
    ]  # fmt: skip


def test_views_past_the_limit_are_folded_into_one() -> None:
    stats = Stats()
    for n in range(MAX_VIEWS + 5):
        run(stats, finished(view=f"view{n}"))
    views = stats.snapshot()["views"]
    assert len(views) == MAX_VIEWS + 1
    assert views[OTHER_VIEWS]["count"] == 5
    run(stats, finished(view="view0"))  # a known view keeps counting under its own name
    assert stats.snapshot()["views"]["view0"]["count"] == 2


def test_inflight_lists_queued_and_running_requests_oldest_first() -> None:
    clock = Clock(now=1000.0)
    stats = Stats(clock=clock)
    first = RequestRecord("POST", "/upload", queued_at=990.0, request_id=7)
    second = RequestRecord("GET", "/report", queued_at=999.5, request_id=8)
    stats.begin(first)
    stats.begin(second)
    first.started_at, first.thread, first.view = 991.0, "treadle-3", "files.upload"
    first.waiting_on = "coroutine fetch_quota"

    listing = stats.inflight()
    assert listing == [
        {
            "request_id": 7,
            "method": "POST",
            "path": "/upload",
            "elapsed_s": pytest.approx(10.0),
            "state": "running",
            "thread": "treadle-3",
            "waiting_on": "coroutine fetch_quota",
            "view": "files.upload",
        },
        {
            "request_id": 8,
            "method": "GET",
            "path": "/report",
            "elapsed_s": pytest.approx(0.5),
            "state": "queued",
            "thread": None,
            "waiting_on": None,
            "view": None,
        },
    ]
    assert stats.snapshot()["inflight"] == {"queued": 1, "running": 1}

    first.finished_at, first.status = 1000.0, 200
    stats.finish(first)
    assert [entry["path"] for entry in stats.inflight()] == ["/report"]
    assert stats.snapshot()["inflight"] == {"queued": 1, "running": 0}


def test_finish_without_finished_at_uses_the_clock() -> None:
    clock = Clock(now=100.25)
    stats = Stats(clock=clock)
    record = RequestRecord("GET", "/", queued_at=100.0)
    stats.begin(record)
    stats.finish(record)
    assert stats.snapshot()["totals"]["total_s"]["sum"] == pytest.approx(0.25)
    assert stats.inflight() == []


def test_concurrent_finishes_keep_exact_totals() -> None:
    stats = Stats()
    threads, per_thread = 4, 2000
    records = [
        [
            finished(view=f"v{t % 2}", bytes_sent=3, waits=1, service_s=0.01)
            for _ in range(per_thread)
        ]
        for t in range(threads)
    ]
    for batch in records:
        for record in batch:
            stats.begin(record)
    assert len(stats.inflight()) == threads * per_thread
    start = threading.Barrier(threads)

    def finish_all(batch: list[RequestRecord]) -> None:
        start.wait(timeout=10)
        for record in batch:
            stats.finish(record)

    workers = [threading.Thread(target=finish_all, args=(batch,)) for batch in records]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert not worker.is_alive()

    snap = stats.snapshot()
    total = threads * per_thread
    assert snap["totals"]["count"] == total
    assert snap["totals"]["bytes_sent"] == 3 * total
    assert snap["totals"]["wait_count"] == total
    assert snap["totals"]["service_s"]["count"] == total
    assert sum(snap["totals"]["service_s"]["buckets"]) == total
    assert snap["totals"]["service_s"]["sum"] == pytest.approx(0.01 * total)
    assert snap["views"]["v0"]["count"] == snap["views"]["v1"]["count"] == total // 2
    assert snap["inflight"] == {"queued": 0, "running": 0}
    assert stats.inflight() == []
