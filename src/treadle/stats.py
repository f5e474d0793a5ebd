"""Per-request timings: in-flight requests, totals and histograms per view.

Thread-bridge layer: threading only, no Twisted, no I/O. The reactor begins a request, any
thread finishes it; readers (the Prometheus collector, /stats, the dashboard) take JSON-able
copies. finish() is on every request's path: one lock, a few increments, no allocation spree.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from treadle.timing import RequestRecord

# Upper bounds (seconds, inclusive, as Prometheus's `le`) of the histogram buckets. Prometheus's
# default buckets (5 ms..10 s) widened both ways: sub-millisecond app responses and 30 s
# requests (a common proxy timeout) both need their own buckets.
BUCKET_BOUNDS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# The four durations kept per request, in this order (see RequestRecord).
HISTOGRAMS: tuple[str, ...] = ("queue_s", "service_s", "wait_s", "total_s")
# Key of requests without a view name, and of views past MAX_VIEWS (keeps a path-like view
# name from growing the table without bound).
NO_VIEW = "-"
OTHER_VIEWS = "(other)"
MAX_VIEWS = 500

_STATUS_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")  # "none": no response was sent


def status_class(status: int) -> str:
    """``"2xx"`` for 204; ``"none"`` for 0 (the client left first) or a nonsense status."""
    return _STATUS_CLASSES[status // 100] if 100 <= status < 600 else "none"


def cumulative_buckets(histogram: dict[str, Any]) -> list[tuple[str, int]]:
    """A snapshot histogram as Prometheus ``le`` pairs: ``("0.001", n)`` ... ``("+Inf", count)``."""
    pairs: list[tuple[str, int]] = []
    running = 0
    for bound, count in zip(BUCKET_BOUNDS_S, histogram["buckets"], strict=False):
        running += count
        pairs.append((repr(bound), running))
    pairs.append(("+Inf", histogram["count"]))
    return pairs


class _Aggregate:
    """Counters for one view (or all): mutated only under Stats._lock."""

    __slots__ = ("count", "status", "bytes_sent", "wait_count", "buckets", "sums", "counts")

    def __init__(self) -> None:
        self.count = 0
        self.status = dict.fromkeys(_STATUS_CLASSES, 0)
        self.bytes_sent = 0
        self.wait_count = 0
        # Per histogram: len(BUCKET_BOUNDS_S) + 1 non-cumulative counts (the last is > 30 s).
        self.buckets = [[0] * (len(BUCKET_BOUNDS_S) + 1) for _ in HISTOGRAMS]
        self.sums = [0.0] * len(HISTOGRAMS)
        self.counts = [0] * len(HISTOGRAMS)

    def add(
        self,
        status: str,
        bytes_sent: int,
        waits: int,
        queue_s: float,
        service_s: float | None,
        wait_s: float,
        total_s: float,
    ) -> None:
        """One finished request; service_s None when no app thread ran it (hot path)."""
        self.count += 1
        self.status[status] += 1
        self.bytes_sent += bytes_sent
        self.wait_count += waits
        buckets, sums, counts = self.buckets, self.sums, self.counts
        buckets[0][bisect_left(BUCKET_BOUNDS_S, queue_s)] += 1
        sums[0] += queue_s
        counts[0] += 1
        buckets[3][bisect_left(BUCKET_BOUNDS_S, total_s)] += 1
        sums[3] += total_s
        counts[3] += 1
        if service_s is not None:
            buckets[1][bisect_left(BUCKET_BOUNDS_S, service_s)] += 1
            sums[1] += service_s
            counts[1] += 1
            buckets[2][bisect_left(BUCKET_BOUNDS_S, wait_s)] += 1
            sums[2] += wait_s
            counts[2] += 1

    def merge(self, other: _Aggregate) -> None:
        self.count += other.count
        for key, value in other.status.items():
            self.status[key] += value
        self.bytes_sent += other.bytes_sent
        self.wait_count += other.wait_count
        for which in range(len(HISTOGRAMS)):
            self.sums[which] += other.sums[which]
            self.counts[which] += other.counts[which]
            mine = self.buckets[which]
            for index, value in enumerate(other.buckets[which]):
                mine[index] += value

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "count": self.count,
            "status": dict(self.status),
            "bytes_sent": self.bytes_sent,
            "wait_count": self.wait_count,
        }
        for which, name in enumerate(HISTOGRAMS):
            result[name] = {
                "count": self.counts[which],
                "sum": self.sums[which],
                "buckets": list(self.buckets[which]),
            }
        return result


class Stats:
    """Requests in flight and what finished ones took, in total and per view.

    Reading API (stable; the Prometheus collector and dashboard use only this):
    ``inflight()`` lists live requests, ``snapshot()`` returns the aggregates, and the
    module constants give the bucket bounds and names.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._inflight: dict[RequestRecord, None] = {}  # insertion order = oldest first
        self._views: dict[str, _Aggregate] = {}

    def begin(self, record: RequestRecord) -> None:
        """The request is queued: it is in flight from now on. Called in the reactor thread."""
        # No lock: one dict store is atomic, and readers copy the dict in one C call.
        self._inflight[record] = None

    def finish(self, record: RequestRecord) -> None:
        """Aggregate a finished request and drop it from the in-flight list.

        Call once per request, after ``finished_at``, ``status`` and ``bytes_sent`` are set.
        Durations feed their histograms: queue and total always; service and wait only if an
        app thread ran the request (a request dropped from the queue, or answered by the
        reactor, has no service time). Called in any thread.
        """
        finished_at = record.finished_at or self._clock()
        started_at = record.started_at
        queued_at = record.queued_at
        total_s = finished_at - queued_at
        if total_s < 0.0:
            total_s = 0.0
        if started_at:
            queue_s = started_at - queued_at
            service_s: float | None = finished_at - started_at
            if queue_s < 0.0:
                queue_s = 0.0
            if service_s < 0.0:  # type: ignore[operator]
                service_s = 0.0
        else:
            queue_s, service_s = total_s, None
        status = status_class(record.status)
        view = record.view or NO_VIEW
        self._inflight.pop(record, None)
        with self._lock:
            # Totals are the sum of the views, computed by snapshot(): one aggregate
            # per request keeps this cheap.
            aggregate = self._views.get(view)
            if aggregate is None:
                if len(self._views) >= MAX_VIEWS:
                    view = OTHER_VIEWS
                aggregate = self._views.setdefault(view, _Aggregate())
            aggregate.add(
                status,
                record.bytes_sent,
                record.wait_count,
                queue_s,
                service_s,
                record.wait_s,
                total_s,
            )

    def inflight(self) -> list[dict[str, Any]]:
        """Live requests, oldest first.

        Each: ``request_id``, ``method``, ``path``, ``elapsed_s`` (since queued), ``state``
        (``"queued"`` or ``"running"``), ``thread``, ``waiting_on`` (what a pending
        treadle.wait waits on, or None) and ``view``. Called in any thread.
        """
        records = list(self._inflight)
        now = self._clock()
        return [
            {
                "request_id": record.request_id,
                "method": record.method,
                "path": record.path,
                "elapsed_s": max(now - record.queued_at, 0.0),
                "state": "running" if record.started_at else "queued",
                "thread": record.thread,
                "waiting_on": record.waiting_on,
                "view": record.view,
            }
            for record in records
        ]

    def snapshot(self) -> dict[str, Any]:
        """Aggregates since start, JSON-able. Called in any thread.

        ``{"bucket_bounds_s": [...], "inflight": {"queued": n, "running": n},
        "totals": AGG, "views": {view: AGG}}`` where AGG is ``{"count", "status":
        {"none"|"1xx".."5xx": n}, "bytes_sent", "wait_count", "queue_s"|"service_s"|"wait_s"|
        "total_s": {"count", "sum", "buckets"}}``. ``buckets`` are non-cumulative: bucket i
        counts durations in (bound[i-1], bound[i]]; the extra last one, those above 30 s
        (cumulative_buckets() gives Prometheus's form). Requests without a view are under
        NO_VIEW.
        """
        records = list(self._inflight)  # one C call: safe against concurrent begin()
        running = sum(1 for record in records if record.started_at)
        queued = len(records) - running
        with self._lock:
            total = _Aggregate()
            for aggregate in self._views.values():
                total.merge(aggregate)
            totals = total.to_dict()
            views = {name: aggregate.to_dict() for name, aggregate in self._views.items()}
        return {
            "bucket_bounds_s": list(BUCKET_BOUNDS_S),
            "inflight": {"queued": queued, "running": running},
            "totals": totals,
            "views": views,
        }
