"""Who works on which task of a human stage: locks, skips, and decisions waiting out their undo window.

No I/O of its own and no clock (every call takes `now`), so its rules are tested directly and
the console only turns HTTP requests into calls:

- Opening a task locks it to that reviewer for `lease_seconds` in the backend's `Locks`: on
  SQLite a table every process serving the stage shares, on Kafka the instance owning the
  task's partition. Every way of completing a task honours the same locks (the console, the
  app's own pages, scripts over HTTP: see `LockGuard`), so two reviewers never complete one
  task. A lock lapses on its own, or is released: by its holder, when they take another task,
  skip it, log out or close the page.
- A decision is held for `undo_seconds` before it is applied, and can be taken back until
  then; while it waits, the task stays locked to its reviewer, marked decided, everywhere.
  It is applied once: the console pushes it through the stage's `Qout`, whose atomic move is
  the last word across processes (the loser of a race gets `InexistentItem`, never a second
  emission).
- A task a reviewer skipped stays behind every task they have not skipped, until nothing else
  is left for them (then the ones they skipped come back, oldest skip first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeteer.errors import TaskLocked
from pipeteer.queues.locks import Lock, Locks

SKIPS_KEPT = 1000
"""Skipped tasks remembered per reviewer (the oldest skip is forgotten first)."""
DECIDED_GRACE = 60.0
"""How long past its undo window a decided task stays locked, should applying it be slow."""


class NothingToUndo(Exception):
    """No decision of this reviewer on this task is still waiting (it was applied, or never made)."""


@dataclass
class Decision:
    """A decision waiting out its undo window; `value` is what the stage's `Qout` will receive."""

    id: str
    reviewer: str
    value: Any
    due: float
    label: str
    reason: str | None = None
    """One of the reasons the app declares for the stage, if the reviewer picked one."""
    comment: str | None = None
    """What the reviewer wrote, if anything."""
    seconds: float | None = None
    """How long the reviewer had the task open before deciding."""


def candidates(reviewer: str, listed: Sequence[tuple[str, str | None]], skipped: Iterable[str] = ()) -> list[str]:
    """The tasks to offer `reviewer`, in order: oldest first, free or already theirs, the ones they skipped last.

    `listed` is (id, holder) of undecided tasks, oldest first.

    >>> candidates("bob", [("t0", "alice"), ("t1", None), ("t2", "bob"), ("t3", None)], skipped=["t1"])
    ['t2', 't3', 't1']
    """
    skips = set(skipped)
    free = [id for id, holder in listed if holder is None or holder == reviewer]
    return [id for id in free if id not in skips] + [id for id in free if id in skips]


class Desk:
    """The locks (shared), skips and waiting decisions (this process's) of one human stage."""

    def __init__(self, stage: str, locks: Locks, lease_seconds: float = 300.0, undo_seconds: float = 5.0) -> None:
        self.stage, self.locks = stage, locks
        self.lease_seconds, self.undo_seconds = lease_seconds, undo_seconds
        self.waiting: dict[str, Decision] = {}
        self.opened: dict[tuple[str, str], float] = {}
        """(reviewer, id) -> when the reviewer opened it (for seconds per decision)."""
        self.skipped: dict[str, OrderedDict[str, None]] = {}
        self.version = 0  # bumped on every change of this process others should see

    def holder(self, id: str, now: float) -> Lock | None:
        """The lock on the task (a waiting decision of this process counts), if any."""
        d = self.waiting.get(id)
        if d is not None:
            return Lock(self.stage, id, d.reviewer, d.due + DECIDED_GRACE, True)
        return self.locks.get(self.stage, id, now)

    def holders(self, ids: Sequence[str], now: float) -> dict[str, Lock]:
        """The locks among `ids`, in one question to the lock store."""
        out = self.locks.of(self.stage, ids, now)
        for id in ids:
            d = self.waiting.get(id)
            if d is not None:
                out[id] = Lock(self.stage, id, d.reviewer, d.due + DECIDED_GRACE, True)
        return out

    def lease(self, id: str, reviewer: str, now: float) -> Lock:
        """Lock the task to `reviewer` (renewing their own lock), releasing their other undecided one."""
        d = self.waiting.get(id)
        if d is not None and d.reviewer != reviewer:
            raise TaskLocked(self.stage, id, d.reviewer, d.due, True)
        if d is not None:
            return Lock(self.stage, id, reviewer, d.due + DECIDED_GRACE, True)
        lock = self.locks.take(self.stage, id, reviewer, now + self.lease_seconds, now)
        self.opened.setdefault((reviewer, id), now)
        if len(self.opened) > 10_000:  # opened and never decided (lapsed leases): forget the oldest
            for key in list(self.opened)[:1000]:
                del self.opened[key]
        self.version += 1
        return lock

    def release(self, id: str, reviewer: str) -> bool:
        """Release `reviewer`'s lock on the task, unless a decision of theirs on it waits."""
        if id in self.waiting:
            return False
        self.opened.pop((reviewer, id), None)
        released = self.locks.release(self.stage, id, reviewer)
        self.version += released
        return released

    def skip(self, id: str, reviewer: str) -> None:
        """`reviewer` passes on the task: it is released and offered to them again only when nothing else is left."""
        self.release(id, reviewer)
        skips = self.skipped.setdefault(reviewer, OrderedDict())
        skips.pop(id, None)
        skips[id] = None
        while len(skips) > SKIPS_KEPT:
            skips.popitem(last=False)

    def skips_of(self, reviewer: str) -> list[str]:
        """The tasks `reviewer` skipped, oldest skip first."""
        return list(self.skipped.get(reviewer, ()))

    def unskip(self, reviewer: str, id: str) -> None:
        skips = self.skipped.get(reviewer)
        if skips is not None:
            skips.pop(id, None)

    def decide(self, id: str, reviewer: str, value: Any, label: str, now: float, reason: str | None = None,
               comment: str | None = None) -> Decision:
        """Hold `reviewer`'s decision on `id`; it is due after the undo window, and the task stays theirs till then."""
        if (d := self.waiting.get(id)) is not None:
            raise TaskLocked(self.stage, id, d.reviewer, d.due, True)
        due = now + self.undo_seconds
        self.locks.take(self.stage, id, reviewer, due + DECIDED_GRACE, now, decided=True, exclusive=False)
        opened = self.opened.pop((reviewer, id), None)
        seconds = None if opened is None else max(0.0, now - opened)
        decision = self.waiting[id] = Decision(id, reviewer, value, due, label, reason, comment, seconds)
        self.forget_skip(id)
        self.version += 1
        return decision

    def undo(self, id: str, reviewer: str, now: float) -> Decision:
        """Take back a waiting decision: the task is the reviewer's again (their other lock is released)."""
        d = self.waiting.get(id)
        if d is None or d.reviewer != reviewer:
            raise NothingToUndo(id)
        del self.waiting[id]
        self.locks.take(self.stage, id, reviewer, now + self.lease_seconds, now)
        self.opened[(reviewer, id)] = now - (d.seconds or 0.0)
        self.version += 1
        return d

    def due(self, now: float) -> list[Decision]:
        """The decisions whose undo window has passed, removed from the waiting list (apply them)."""
        ready = [d for d in self.waiting.values() if d.due <= now]
        for d in ready:
            del self.waiting[d.id]
        if ready:
            self.version += 1
        return ready

    def take(self, id: str) -> Decision | None:
        """Remove a waiting decision to apply it now (its window was zero, or the service is stopping)."""
        d = self.waiting.pop(id, None)
        if d is not None:
            self.version += 1
        return d

    def done(self, id: str) -> None:
        """The task left the stage (applied here or completed elsewhere): no lock, no skip stays on it."""
        self.locks.drop(self.stage, id)
        self.forget_skip(id)
        self.version += 1

    def forget_skip(self, id: str) -> None:
        for skips in self.skipped.values():
            skips.pop(id, None)

    def logged_out(self, reviewer: str) -> None:
        """Forget what `reviewer` had open here (their locks are released by the caller, for every stage at once)."""
        for key in [k for k in self.opened if k[0] == reviewer]:
            del self.opened[key]
        self.skipped.pop(reviewer, None)
        self.version += 1
