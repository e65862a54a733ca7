"""The numbers a review team runs on, from the ledger of decisions: pure functions of entries and `now`.

- Per stage: pending, done today, the rate over the last hour, and the time to empty the stage
  at that rate.
- Per reviewer: decisions today and over 7 days, and the median seconds a task was open
  before its decision.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass

from pipeteer.queues.ledger import Decided

HOUR = 3600.0
WEEK = 7 * 24 * HOUR
UNDONE = "undone"


def day_start(now: float) -> float:
    """Midnight of `now`'s day, in the server's local time."""
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


@dataclass(frozen=True)
class StageProgress:
    """How a human stage is doing: `rate_per_hour` over the last hour; `empty_in`: seconds to empty it at that rate."""

    stage: str
    pending: int
    done_today: int
    rate_per_hour: float
    empty_in: float | None

    @classmethod
    def of(cls, stage: str, pending: int, done_today: int, last_hour: int) -> StageProgress:
        """
        >>> StageProgress.of("validation", pending=120, done_today=300, last_hour=60).empty_in
        7200.0
        >>> StageProgress.of("validation", pending=5, done_today=0, last_hour=0).empty_in is None
        True
        """
        rate = float(last_hour)
        empty_in = pending / rate * HOUR if rate > 0 else (0.0 if pending == 0 else None)
        return cls(stage, pending, done_today, rate, empty_in)


@dataclass(frozen=True)
class ReviewerStats:
    reviewer: str
    today: int
    week: int
    median_seconds: float | None
    """Median seconds a task was open before this reviewer's decision, over 7 days (None: unknown)."""


def reviewers(entries: Iterable[Decided], now: float) -> list[ReviewerStats]:
    """Per reviewer, from the ledger entries of the last 7 days (undos do not count), busiest first.

    >>> from pipeteer.queues.ledger import Decided
    >>> now = 1_000_000.0
    >>> es = [Decided("s", "1", "alice", "approved", now - 10, 4.0), Decided("s", "2", "alice", "rejected", now - 5, 6.0),
    ...       Decided("s", "3", "bob", "approved", now - 8 * 86400, 1.0)]
    >>> [(r.reviewer, r.week, r.median_seconds) for r in reviewers(es, now)]
    [('alice', 2, 5.0)]
    """
    today, week_start = day_start(now), now - WEEK
    counts: dict[str, list[int]] = {}
    seconds: dict[str, list[float]] = {}
    for e in entries:
        if e.decision == UNDONE or e.at < week_start:
            continue
        c = counts.setdefault(e.reviewer, [0, 0])
        c[1] += 1
        c[0] += e.at >= today
        if e.seconds is not None:
            seconds.setdefault(e.reviewer, []).append(e.seconds)
    out = [ReviewerStats(r, c[0], c[1], statistics.median(seconds[r]) if seconds.get(r) else None)
           for r, c in counts.items()]
    return sorted(out, key=lambda s: (-s.week, s.reviewer))


def reasons(entries: Iterable[Decided]) -> dict[str, int]:
    """How often each reject reason was given (undos do not count), most frequent first."""
    counts: dict[str, int] = {}
    for e in entries:
        if e.reason and e.decision != UNDONE:
            counts[e.reason] = counts.get(e.reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
