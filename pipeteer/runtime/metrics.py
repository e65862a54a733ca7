"""Prometheus metrics of stage services (`pipeteer_…`), on an injected registry.

The names here are a public contract: the compiled Grafana dashboard queries them.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from pipeteer.codec import unknown_writers
from pipeteer.runtime.security import current_reviewer

audit = logging.getLogger("pipeteer.audit")

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)

METRIC_NAMES = (
    "pipeteer_items_consumed_total",
    "pipeteer_items_produced_total",
    "pipeteer_items_failed_total",
    "pipeteer_dead_letters_total",
    "pipeteer_rebalances_total",
    "pipeteer_processing_seconds",
    "pipeteer_commit_seconds",
    "pipeteer_commit_failures_total",
    "pipeteer_pending_items",
    "pipeteer_oldest_pending_age_seconds",
    "pipeteer_consumer_lag",
    "pipeteer_reviewer_completions_total",
    "pipeteer_review_decisions_total",
    "pipeteer_stage_ready",
    "pipeteer_unknown_writer_records_total",
    "pipeteer_held_items",
)
"""Every family carries the labels `workflow` and `stage` (a deployment's namespace and pod are added by
the scraper), so that two workflows with a stage of the same name are never summed together."""

LABELS = ("workflow", "stage")


class Metrics:
    """Every pipeteer metric of one workflow, registered once on `registry` (pass a fresh one per test or process).
    What a backend reports to (`pipeteer.queues.observe.Meters`, checked by mypy where the service gives it).

    >>> m = Metrics(workflow="wf")
    >>> m.stage("validation").consumed.inc()
    >>> m.registry.get_sample_value("pipeteer_items_consumed_total", {"workflow": "wf", "stage": "validation"})
    1.0
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, workflow: str = "") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.workflow = workflow
        r = self.registry
        labels = LABELS
        self.consumed = Counter("pipeteer_items_consumed", "Items a stage finished reading", labels, registry=r)
        self.produced = Counter("pipeteer_items_produced", "Items a stage emitted", labels, registry=r)
        self.failed = Counter("pipeteer_items_failed", "Stage failures (exceptions)", labels, registry=r)
        self.dead_letters = Counter(
            "pipeteer_dead_letters", "Items sent to the dead-letter topic", labels, registry=r
        )
        self.rebalances = Counter("pipeteer_rebalances", "Partition assignments changed", labels, registry=r)
        self.processing = Histogram(
            "pipeteer_processing_seconds", "From read to emit, per item", labels, buckets=LATENCY_BUCKETS, registry=r
        )
        self.commit = Histogram(
            "pipeteer_commit_seconds", "Transaction commit latency", labels, buckets=LATENCY_BUCKETS, registry=r
        )
        self.commit_failures = Counter(
            "pipeteer_commit_failures", "Transactions that failed to commit (their work is redone)", labels, registry=r
        )
        self.pending = Gauge("pipeteer_pending_items", "Items waiting in the stage", labels, registry=r)
        self.oldest_pending = Gauge(
            "pipeteer_oldest_pending_age_seconds", "Age of the oldest pending item", labels, registry=r
        )
        self.lag = Gauge(
            "pipeteer_consumer_lag",
            "Records of the stage's input its consumer group has not committed yet, per partition "
            "(every stage service of the workflow reports every stage's: take the max per partition)",
            (*labels, "partition"),
            registry=r,
        )
        self.completions = Counter(
            "pipeteer_reviewer_completions", "Tasks a person completed", (*labels, "reviewer"), registry=r
        )
        self.decisions = Counter(
            "pipeteer_review_decisions",
            "Decisions made in the review console, by decision (approved, rejected, submitted, undone) and "
            "reason (one the app declares, 'other' for free text, '' for none)",
            (*labels, "decision", "reason"),
            registry=r,
        )
        self.held = Gauge(
            "pipeteer_held_items",
            "Pending items the stage holds because it cannot read them (another version's records, mid-rollout): "
            "kept, not dead-lettered, until a version that can read them takes them",
            labels,
            registry=r,
        )
        self.ready = Gauge(
            "pipeteer_stage_ready", "1 while the stage's service is ready (its /readyz answers 200)", labels, registry=r
        )
        self.stalled = Gauge(
            "pipeteer_stalled_seconds",
            "Seconds the stage has had work waiting (records, a commit, a restore, its start-up) and made no "
            "progress on it; 0 while it works or is idle. At PIPETEER_STALL_SECONDS its /healthz fails",
            labels,
            registry=r,
        )

    def stage(self, stage: str) -> StageMetrics:
        return StageMetrics(self, stage)

    def watch_unknown_writers(self, readers: Callable[[str], list[str]]) -> None:
        """Export `pipeteer_unknown_writer_records_total`: records of this process's stages whose writer
        schema no codec knows (`pipeteer.codec.unknown_writers`); `readers(schema)` names the stages
        reading that schema (`ns.Name (fingerprint …)`)."""
        self.registry.register(_UnknownWriterCollector(self.workflow, readers))


class _UnknownWriterCollector(Collector):
    def __init__(self, workflow: str, readers: Callable[[str], list[str]]) -> None:
        self.workflow, self.readers = workflow, readers

    def collect(self) -> Any:
        family = CounterMetricFamily(
            "pipeteer_unknown_writer_records",
            "Records a stage could not read: their writer schema is neither its own nor a registered older one",
            labels=(*LABELS, "writer_fingerprint"),
        )
        for seen in unknown_writers.snapshot():
            for stage in self.readers(seen.reader):
                family.add_metric((self.workflow, stage, seen.writer_fingerprint), seen.records)
        yield family

    def describe(self) -> Any:
        return []


class StageMetrics:
    """One stage's view of `Metrics` (labels bound).

    What every backend reports is bound at once (its series exist from start-up, at 0); what only
    some backends measure (commit latency and failures, rebalances, oldest pending age, consumer lag, dead letters) is bound on
    first use, so a backend that cannot measure it exports no series rather than a misleading 0 or NaN.
    """

    def __init__(self, metrics: Metrics, stage: str) -> None:
        self.metrics = metrics
        self.name = stage
        self.key = (metrics.workflow, stage)
        self.consumed = metrics.consumed.labels(*self.key)
        self.produced = metrics.produced.labels(*self.key)
        self.failed = metrics.failed.labels(*self.key)
        self.processing = metrics.processing.labels(*self.key)
        self.pending = metrics.pending.labels(*self.key)

    @property
    def dead_letters(self) -> Counter:
        return self.metrics.dead_letters.labels(*self.key)

    @property
    def rebalances(self) -> Counter:
        return self.metrics.rebalances.labels(*self.key)

    @property
    def commit(self) -> Histogram:
        return self.metrics.commit.labels(*self.key)

    @property
    def commit_failures(self) -> Counter:
        return self.metrics.commit_failures.labels(*self.key)

    @property
    def oldest_pending(self) -> Gauge:
        return self.metrics.oldest_pending.labels(*self.key)

    def lag(self, partition: int) -> Gauge:
        return self.metrics.lag.labels(*self.key, str(partition))

    def completions(self, reviewer: str) -> Counter:
        return self.metrics.completions.labels(*self.key, reviewer)

    def decisions(self, decision: str, reason: str) -> Counter:
        return self.metrics.decisions.labels(*self.key, decision, reason)

    def export_measured(self) -> None:
        """For a backend that measures commits, rebalances and dead letters: export their series from now on, at 0
        (a series born at its first increment hides that increment from `rate` and `increase`)."""
        for family in (self.metrics.commit, self.metrics.commit_failures, self.metrics.rebalances,
                       self.metrics.dead_letters):
            family.labels(*self.key)

    def count_dead_letter(self, id: str) -> None:
        """A queue set item `id` aside as a dead letter (backends whose queues count them here)."""
        self.dead_letters.inc()

    def watch_pending(self, count: Callable[[], float]) -> None:
        """Compute the pending gauge at scrape time (backends that can count their queue)."""
        self.pending.set_function(count)

    def watch_held(self, count: Callable[[], float]) -> None:
        """Compute the held gauge at scrape time (`BaseQueue.held`)."""
        self.metrics.held.labels(*self.key).set_function(count)

    def watch_ready(self, ready: Callable[[], bool]) -> None:
        """Compute the readiness gauge at scrape time."""
        self.metrics.ready.labels(*self.key).set_function(lambda: float(ready()))

    def watch_stalled(self, seconds: Callable[[], float]) -> None:
        """Compute the stalled-seconds gauge at scrape time (`Backend.stalls`)."""
        self.metrics.stalled.labels(*self.key).set_function(seconds)


def observe_many(histogram: Histogram, amounts: list[float]) -> None:
    """`histogram.observe(a)` for each amount, taking each bucket's lock once per call rather than
    per amount (prometheus-client's `observe` takes two locks per call: 2.3% of a fast Kafka
    stage's samples). Falls back to `observe` if prometheus-client's histogram changes shape.

    >>> h = Histogram("h", "doc", buckets=(0.1, 1), registry=None)
    >>> observe_many(h, [0.05, 0.5, 0.7, 3.0])
    >>> [(s.name, s.labels.get("le"), s.value) for s in h.collect()[0].samples][:4]
    [('h_bucket', '0.1', 1.0), ('h_bucket', '1.0', 3.0), ('h_bucket', '+Inf', 4.0), ('h_count', None, 4.0)]
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets) or len(amounts) < 2:
        for a in amounts:
            histogram.observe(a)
        return
    counts: dict[int, int] = {}
    for a in amounts:
        if a != a:  # NaN: in no bucket, as `observe` does
            continue
        i = bisect_left(bounds, a)  # the first bucket whose bound is >= a, as `observe` picks it
        counts[i] = counts.get(i, 0) + 1
    total.inc(sum(amounts))
    for i, n in counts.items():
        buckets[i].inc(n)


current_decision: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "pipeteer_decision", default=None)
"""What the console is applying (decision, reason, comment), for the audit line of the move it makes."""


def audit_event(event: str, stage: str, id: str, reviewer: str, **more: Any) -> None:
    """One line of the audit log (logger `pipeteer.audit`, JSON): who did what to which task, and when."""
    line = {"event": event, "stage": stage, "id": id, "reviewer": reviewer, **more,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    audit.info(json.dumps({k: v for k, v in line.items() if v is not None}))


class StageProgress:
    """Wiring hook: counts items as stages move them and times read-to-emit.

    On an event loop, the counts are handed to prometheus-client in batches, by a callback the loop
    runs as soon as the stage loop lets it (every few milliseconds while it works through a
    backlog): its counters take a lock per increment, which cost a fast stage a fifth of its time
    per item. A scrape is served by the same loop, so it never sees an item moved but not counted
    for longer than the stage loop holds the loop.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._stages: dict[str, StageMetrics] = {}
        self._read_at: dict[tuple[str, str], float] = {}
        self._moved: dict[str, list[float | None]] = {}
        """Per stage, the items moved since the last flush: their read-to-emit seconds (None: unknown)."""
        self._flushing = False

    def of(self, stage: str) -> StageMetrics:
        m = self._stages.get(stage)
        if m is None:
            m = self._stages[stage] = self.metrics.stage(stage)
        return m

    def read(self, stage: str, id: str) -> None:
        if len(self._read_at) > 100_000:  # ids read by a web page and never completed
            self._read_at.clear()
        self._read_at.setdefault((stage, id), time.monotonic())

    def completing(self, stage: str, id: str) -> None:
        pass

    def moved(self, stage: str, id: str, target: str) -> None:
        started = self._read_at.pop((stage, id), None)
        reviewer = current_reviewer.get()
        if reviewer is not None:  # a person completed it (authenticated request, or a console decision)
            self.of(stage).completions(reviewer).inc()
            audit_event("completed", stage, id, reviewer, to=target, **(current_decision.get() or {"via": "app"}))
        moved = self._moved.get(stage)
        if moved is None:
            moved = self._moved[stage] = []
        moved.append(None if started is None else time.monotonic() - started)
        if not self._flushing:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
                self._flushing = True
            except RuntimeError:  # no event loop: at once
                self.flush()

    def flush(self) -> None:
        """Hand the items moved so far to the metrics."""
        self._flushing = False
        for stage, moved in self._moved.items():
            if moved:
                m = self.of(stage)
                m.consumed.inc(len(moved))
                m.produced.inc(len(moved))
                observe_many(m.processing, [seconds for seconds in moved if seconds is not None])
                moved.clear()
