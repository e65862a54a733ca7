"""Task locks of human stages: which reviewer works on which task, shared by every process serving it.

A review console hands a task to one reviewer at a time: opening it takes a lock until a
deadline (renewed while the page stays open), deciding it turns the lock into a *decided* one
that lasts the decision's undo window, and completing it drops the lock. The locks live where
every process serving the stage sees them: in the queues' SQLite file (`sqlite.review.SqliteLocks`), or in
this process (`MemoryLocks`: `memory://`, and Kafka, where the instance owning a task's
partition is the only one that serves it). `Backend.locks()` gives the backend's.

Every method takes the wall clock (`now`) from its caller rather than reading it, so that a
console and its tests decide expiry on one clock. A lock whose `until` is not after `now` is
expired: it holds nothing back and is removed in passing.

>>> locks = MemoryLocks()
>>> locks.take("validation", "photo-09", "alice", until=160.0, now=100.0).reviewer
'alice'
>>> locks.take("validation", "photo-09", "bob", until=170.0, now=110.0)  # doctest: +ELLIPSIS
Traceback (most recent call last):
pipeteer.errors.TaskLocked: task 'photo-09' of validation is being worked on by alice (locked until ...)
>>> locks.take("validation", "photo-09", "bob", until=230.0, now=170.0).reviewer  # alice's ran out
'bob'
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from pipeteer.errors import TaskLocked


@dataclass(frozen=True)
class Lock:
    """`reviewer` holds task `id` of `stage` until `until` (wall clock, `time.time()`); `decided`: their
    decision on it is waiting out its undo window (and is applied when the lock ends)."""

    stage: str
    id: str
    reviewer: str
    until: float
    decided: bool


class Locks(ABC):
    """Who works on which task of a human stage; every method takes `now` (wall clock seconds)."""

    @abstractmethod
    def take(self, stage: str, id: str, reviewer: str, until: float, now: float, *, decided: bool = False,
             exclusive: bool = True) -> Lock:
        """Lock `id` for `reviewer` until `until` (renewing/replacing their own lock on it). Raises `TaskLocked`
        if another reviewer holds an unexpired lock on it. `exclusive`: also release `reviewer`'s other
        undecided locks in this stage (a reviewer works one task at a time). Atomic across processes."""

    @abstractmethod
    def get(self, stage: str, id: str, now: float) -> Lock | None:
        """The unexpired lock on `id`, or None."""

    @abstractmethod
    def of(self, stage: str, ids: Sequence[str], now: float) -> dict[str, Lock]:
        """The unexpired locks among `ids` (a page of a listing), by id."""

    @abstractmethod
    def release(self, stage: str, id: str, reviewer: str) -> bool:
        """Drop `reviewer`'s own lock on `id` (decided or not); whether they had one (expired or not)."""

    @abstractmethod
    def drop(self, stage: str, id: str) -> None:
        """Drop the lock on `id`, whoever held it (the task was completed)."""

    @abstractmethod
    def release_all(self, reviewer: str) -> int:
        """Drop every undecided lock of `reviewer`, in every stage (they logged out); how many there were.
        Their decided locks stay: those decisions are still applied after their undo window."""

    @abstractmethod
    def count(self, stage: str, now: float) -> int:
        """How many unexpired locks the stage has (decided ones included)."""

    @abstractmethod
    def held_by(self, stage: str, reviewer: str, now: float) -> list[Lock]:
        """The unexpired locks of `reviewer` in `stage`, by id."""


def _refuse(current: Lock | None, reviewer: str, now: float) -> None:
    """Raise `TaskLocked` when `current` is another reviewer's unexpired lock."""
    if current is not None and current.reviewer != reviewer and current.until > now:
        raise TaskLocked(current.stage, current.id, current.reviewer, current.until, current.decided)


PURGE_SECONDS = 60.0
"""At most this often (by the callers' clock), taking a lock also removes the expired ones."""


class MemoryLocks(Locks):
    """The locks of one process, in a dict guarded by a lock (console requests may run in threads).

    A stage has as many locks as reviewers at work (and decisions in their undo window), so the
    questions about one reviewer look through the stage's locks rather than keep an index.
    """

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], Lock] = {}
        self._mutex = threading.Lock()
        self._purged = float("-inf")

    def take(self, stage: str, id: str, reviewer: str, until: float, now: float, *, decided: bool = False,
             exclusive: bool = True) -> Lock:
        lock = Lock(stage, id, reviewer, until, decided)
        with self._mutex:
            _refuse(self._locks.get((stage, id)), reviewer, now)
            if now - self._purged >= PURGE_SECONDS:
                self._purged = now
                for key in [key for key, held in self._locks.items() if held.until <= now]:
                    del self._locks[key]
            if exclusive:
                for key in [key for key, held in self._locks.items()
                            if key[0] == stage and held.reviewer == reviewer and not held.decided and key[1] != id]:
                    del self._locks[key]
            self._locks[stage, id] = lock
        return lock

    def get(self, stage: str, id: str, now: float) -> Lock | None:
        with self._mutex:
            lock = self._locks.get((stage, id))
        return lock if lock is not None and lock.until > now else None

    def of(self, stage: str, ids: Sequence[str], now: float) -> dict[str, Lock]:
        with self._mutex:
            found = [self._locks.get((stage, id)) for id in ids]
        return {lock.id: lock for lock in found if lock is not None and lock.until > now}

    def release(self, stage: str, id: str, reviewer: str) -> bool:
        with self._mutex:
            lock = self._locks.get((stage, id))
            if lock is None or lock.reviewer != reviewer:
                return False
            del self._locks[stage, id]
            return True

    def drop(self, stage: str, id: str) -> None:
        with self._mutex:
            self._locks.pop((stage, id), None)

    def release_all(self, reviewer: str) -> int:
        with self._mutex:
            mine = [key for key, lock in self._locks.items() if lock.reviewer == reviewer and not lock.decided]
            for key in mine:
                del self._locks[key]
        return len(mine)

    def count(self, stage: str, now: float) -> int:
        with self._mutex:
            return sum(1 for (s, _), lock in self._locks.items() if s == stage and lock.until > now)

    def held_by(self, stage: str, reviewer: str, now: float) -> list[Lock]:
        with self._mutex:
            mine = [lock for (s, _), lock in self._locks.items()
                    if s == stage and lock.reviewer == reviewer and lock.until > now]
        return sorted(mine, key=lambda lock: lock.id)
