"""Who works on which task of a human stage: leases and decisions waiting out their undo window.

A pure core (no I/O, no clock of its own: every call takes `now`), so its rules are tested
directly and the console only turns HTTP requests into calls:

- Opening a task leases it to that reviewer for `lease_seconds`; others see it as taken and
  "next" skips it, so two reviewers never get the same task. A lease lapses on its own, or is
  released (by its holder, or when they take another task).
- A decision is held for `undo_seconds` before it is applied, and can be taken back until then.
  It is applied once: the console pushes it through the stage's `Qout`, whose atomic move is
  the last word across processes (the loser of a race gets `InexistentItem`, never a second
  emission). A second decision on a task someone has already decided is refused here, naming who.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class TaskTaken(Exception):
    """The task is leased to, or was decided by, someone else (`by`)."""

    def __init__(self, id: str, by: str, decided: bool = False) -> None:
        self.id, self.by, self.decided = id, by, decided
        what = "was already completed by" if decided else "is being worked on by"
        super().__init__(f"task {id!r} {what} {by}")


class NothingToUndo(Exception):
    """No decision of this reviewer on this task is still waiting (it was applied, or never made)."""


@dataclass
class Lease:
    reviewer: str
    until: float


@dataclass
class Decision:
    """A decision waiting out its undo window; `value` is what the stage's `Qout` will receive."""

    id: str
    reviewer: str
    value: Any
    due: float
    label: str


def candidates(reviewer: str, listed: Sequence[tuple[str, str | None]], after: str | None = None) -> list[str]:
    """The tasks to offer `reviewer`, in order: oldest first, free or already theirs, starting after `after`.

    `listed` is (id, holder) of every undecided task, oldest first. `after` wraps around, so
    skipping the last task comes back to the first one still free (the skipped one last).

    >>> candidates("bob", [("t0", "alice"), ("t1", None), ("t2", "bob")], after="t1")
    ['t2', 't1']
    """
    order = [id for id, holder in listed if holder is None or holder == reviewer]
    ids = [id for id, _ in listed]
    if after is not None and after in ids:
        position = {id: i for i, id in enumerate(ids)}
        pivot = position[after]
        order.sort(key=lambda id: (position[id] <= pivot, position[id]))
    return order


class Desk:
    """Leases and waiting decisions of one human stage, in this process."""

    def __init__(self, lease_seconds: float = 300.0, undo_seconds: float = 5.0) -> None:
        self.lease_seconds, self.undo_seconds = lease_seconds, undo_seconds
        self.leases: dict[str, Lease] = {}
        self.waiting: dict[str, Decision] = {}
        self.version = 0  # bumped on every change others should see (the live view polls it)

    def holder(self, id: str, now: float) -> str | None:
        """Who the task is leased to or decided by, if anyone."""
        if (d := self.waiting.get(id)) is not None:
            return d.reviewer
        lease = self.leases.get(id)
        if lease is None:
            return None
        if lease.until <= now:
            del self.leases[id]
            self.version += 1
            return None
        return lease.reviewer

    def lease(self, id: str, reviewer: str, now: float) -> Lease:
        """Lease the task to `reviewer` (renewing their own lease), releasing their other one."""
        if (d := self.waiting.get(id)) is not None:
            raise TaskTaken(id, d.reviewer, decided=True)
        by = self.holder(id, now)
        if by is not None and by != reviewer:
            raise TaskTaken(id, by)
        for other in [k for k, v in self.leases.items() if v.reviewer == reviewer and k != id]:
            del self.leases[other]
        lease = self.leases[id] = Lease(reviewer, now + self.lease_seconds)
        self.version += 1
        return lease

    def release(self, id: str, reviewer: str) -> bool:
        lease = self.leases.get(id)
        if lease is None or lease.reviewer != reviewer:
            return False
        del self.leases[id]
        self.version += 1
        return True

    def next_for(self, reviewer: str, ids: Iterable[str], now: float, after: str | None = None) -> str | None:
        """The first task (in `ids` order, oldest first) free for `reviewer`, starting after `after` if given."""
        listed = [(id, self.holder(id, now)) for id in ids if id not in self.waiting]
        return next(iter(candidates(reviewer, listed, after)), None)

    def listing(self, ids: Iterable[str], now: float) -> list[tuple[str, str | None, bool]]:
        """(id, who holds it, whether a decision on it is waiting) for each of `ids`."""
        return [(id, self.holder(id, now), id in self.waiting) for id in ids]

    def decide(self, id: str, reviewer: str, value: Any, label: str, now: float) -> Decision:
        """Hold `reviewer`'s decision on `id`; it is due after the undo window."""
        self.lease(id, reviewer, now)  # raises TaskTaken if someone else has it
        decision = self.waiting[id] = Decision(id, reviewer, value, now + self.undo_seconds, label)
        self.leases.pop(id, None)
        self.version += 1
        return decision

    def undo(self, id: str, reviewer: str, now: float) -> Decision:
        """Take back a waiting decision; the task goes back to its reviewer's lease."""
        d = self.waiting.get(id)
        if d is None or d.reviewer != reviewer:
            raise NothingToUndo(id)
        del self.waiting[id]
        self.leases[id] = Lease(reviewer, now + self.lease_seconds)
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

    def forget(self, ids: Iterable[str]) -> None:
        """Drop leases of tasks that are no longer pending (completed elsewhere)."""
        for id in ids:
            if self.leases.pop(id, None) is not None:
                self.version += 1
