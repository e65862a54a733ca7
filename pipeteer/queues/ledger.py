"""The ledger of reviewers' decisions: what each reviewer decided on which task of a human stage, and
when, for the review console's team statistics (decisions per hour, time per task, a reviewer's
recent work). It records; it decides nothing: a decision takes effect through the queues.

`Backend.ledger()` gives the backend's: `SqliteLedger` in the queues' SQLite file (every process
writes to it, so the statistics are the whole team's), else a `MemoryLedger` of this process.

>>> ledger = MemoryLedger()
>>> ledger.record(Decided("validation", "photo-09", "alice", "approved", at=100.0, seconds=12.5))
>>> ledger.record(Decided("validation", "photo-10", "alice", "rejected", at=130.0, seconds=3.0, reason="blurry"))
>>> [d.id for d in ledger.recent("alice")], ledger.count("validation", 0.0, 120.0)
(['photo-10', 'photo-09'], 1)
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Decided:
    """`reviewer` decided `decision` ('approved', 'rejected', 'submitted', 'undone', ...) on task `id` of
    `stage` at `at` (wall clock), after having it open `seconds` (None: unknown), for `reason` if given."""

    stage: str
    id: str
    reviewer: str
    decision: str
    at: float
    seconds: float | None
    reason: str | None = None


class Ledger(ABC):
    """Where decisions are recorded. Times are wall clock seconds; a span `start`..`end` includes
    `start` and excludes `end` (consecutive spans count each decision once)."""

    @abstractmethod
    def record(self, entry: Decided) -> None:
        """Keep `entry` (a decision just made)."""

    @abstractmethod
    def between(self, start: float, end: float, stage: str | None = None) -> list[Decided]:
        """The decisions made from `start` to `end` (of `stage`, or of every stage), oldest first."""

    @abstractmethod
    def recent(self, reviewer: str, limit: int = 20, stage: str | None = None) -> list[Decided]:
        """The last `limit` decisions of `reviewer` (in `stage`, or in any), newest first."""

    @abstractmethod
    def count(self, stage: str, start: float, end: float) -> int:
        """How many decisions were made in `stage` from `start` to `end`."""


MEMORY_ENTRIES = 200_000
"""A `MemoryLedger` keeps this many decisions, forgetting the oldest."""


class MemoryLedger(Ledger):
    """The decisions made in this process, the last `MEMORY_ENTRIES`, in the order they were recorded
    (which is the order they were made: a decision is recorded as it is made). Thread-safe."""

    def __init__(self, capacity: int = MEMORY_ENTRIES) -> None:
        self._entries: deque[Decided] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def record(self, entry: Decided) -> None:
        with self._lock:
            self._entries.append(entry)

    def between(self, start: float, end: float, stage: str | None = None) -> list[Decided]:
        with self._lock:
            found = [d for d in self._entries if start <= d.at < end and (stage is None or d.stage == stage)]
        return sorted(found, key=lambda d: d.at)

    def recent(self, reviewer: str, limit: int = 20, stage: str | None = None) -> list[Decided]:
        found: list[Decided] = []
        if limit <= 0:
            return found
        with self._lock:
            for d in reversed(self._entries):
                if d.reviewer == reviewer and (stage is None or d.stage == stage):
                    found.append(d)
                    if len(found) == limit:
                        break
        return found

    def count(self, stage: str, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for d in self._entries if d.stage == stage and start <= d.at < end)
