"""Prometheus metrics of stage services (`pipeteer_…`), on an injected registry.

The names here are a public contract: the compiled Grafana dashboard queries them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
    "pipeteer_pending_items",
    "pipeteer_oldest_pending_age_seconds",
    "pipeteer_consumer_lag",
    "pipeteer_reviewer_completions_total",
)


class Metrics:
    """Every pipeteer metric, registered once on `registry` (pass a fresh one per test or process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "pipeteer_items_consumed", "Items a stage finished reading", ["stage"], registry=r
        )
        self.produced = Counter("pipeteer_items_produced", "Items a stage emitted", ["stage"], registry=r)
        self.failed = Counter("pipeteer_items_failed", "Stage failures (exceptions)", ["stage"], registry=r)
        self.dead_letters = Counter(
            "pipeteer_dead_letters", "Items sent to the dead-letter topic", ["stage"], registry=r
        )
        self.rebalances = Counter(
            "pipeteer_rebalances", "Partition assignments changed", ["stage"], registry=r
        )
        self.processing = Histogram(
            "pipeteer_processing_seconds",
            "From read to emit, per item",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit = Histogram(
            "pipeteer_commit_seconds",
            "Transaction commit latency",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pending = Gauge("pipeteer_pending_items", "Items waiting in the stage", ["stage"], registry=r)
        self.oldest_pending = Gauge(
            "pipeteer_oldest_pending_age_seconds", "Age of the oldest pending item", ["stage"], registry=r
        )
        self.lag = Gauge(
            "pipeteer_consumer_lag", "Records behind the end of the input", ["stage", "partition"], registry=r
        )
        self.completions = Counter(
            "pipeteer_reviewer_completions", "Tasks a person completed", ["stage", "reviewer"], registry=r
        )

    def stage(self, stage: str) -> StageMetrics:
        return StageMetrics(self, stage)


class StageMetrics:
    """One stage's view of `Metrics` (labels bound)."""

    def __init__(self, metrics: Metrics, stage: str) -> None:
        self.metrics = metrics
        self.name = stage
        self.consumed = metrics.consumed.labels(stage)
        self.produced = metrics.produced.labels(stage)
        self.failed = metrics.failed.labels(stage)
        self.dead_letters = metrics.dead_letters.labels(stage)
        self.rebalances = metrics.rebalances.labels(stage)
        self.processing = metrics.processing.labels(stage)
        self.commit = metrics.commit.labels(stage)
        self.pending = metrics.pending.labels(stage)
        self.oldest_pending = metrics.oldest_pending.labels(stage)

    def lag(self, partition: int) -> Any:
        return self.metrics.lag.labels(self.name, str(partition))

    def watch_pending(self, count: Callable[[], float]) -> None:
        """Compute the pending gauge at scrape time (backends that can count their queue)."""
        self.pending.set_function(count)


class StageProgress:
    """Wiring hook: counts items as stages move them and times read-to-emit."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._stages: dict[str, StageMetrics] = {}
        self._read_at: dict[tuple[str, str], float] = {}

    def of(self, stage: str) -> StageMetrics:
        m = self._stages.get(stage)
        if m is None:
            m = self._stages[stage] = self.metrics.stage(stage)
        return m

    def read(self, stage: str, id: str) -> None:
        if len(self._read_at) > 100_000:  # ids read by a web page and never completed
            self._read_at.clear()
        self._read_at.setdefault((stage, id), time.monotonic())

    def moved(self, stage: str, id: str, target: str) -> None:
        m = self.of(stage)
        m.consumed.inc()
        m.produced.inc()
        started = self._read_at.pop((stage, id), None)
        if started is not None:
            m.processing.observe(time.monotonic() - started)
        reviewer = current_reviewer.get()
        if reviewer is not None:  # a person completed it (authenticated request, or a console decision)
            self.metrics.completions.labels(stage, reviewer).inc()
            audit.info(json.dumps({"event": "completed", "stage": stage, "id": id, "to": target,
                                   "reviewer": reviewer, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
