"""What a backend reports to a service's metrics (`Backend.use_metrics`): exactly the calls backends make.

`pipeteer.runtime.metrics.Metrics` is such metrics (prometheus-client families, labelled by stage);
the queues import nothing of the runtime, and a test may pass anything with these methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Count(Protocol):
    """A counter: how many times something happened."""

    def inc(self, amount: float = 1) -> None: ...


class Timing(Protocol):
    """A histogram of durations, in seconds."""

    def observe(self, amount: float) -> None: ...


class Level(Protocol):
    """A gauge: a value now, set by the backend or computed when scraped."""

    def set(self, value: float) -> None: ...

    def set_function(self, f: Callable[[], float]) -> None: ...


class StageMeters(Protocol):
    """One stage's metrics, as a backend that measures them itself (`Backend.reports_metrics`) reports."""

    @property
    def dead_letters(self) -> Count: ...

    @property
    def rebalances(self) -> Count: ...

    @property
    def commit(self) -> Timing: ...

    @property
    def commit_failures(self) -> Count: ...

    @property
    def oldest_pending(self) -> Level: ...

    def lag(self, partition: int) -> Level: ...

    def export_measured(self) -> None:
        """Export the series of what the backend measures from now on, at 0."""


class Meters(Protocol):
    """A workflow's metrics: each stage's by its name (`'review/manual'`)."""

    def stage(self, stage: str) -> StageMeters: ...
