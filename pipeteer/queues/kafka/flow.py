"""When a stage instance takes input: flow control of the engine's thread, pure (no client, no clock).

A stage instance keeps the items it has consumed and not finished in its pending table. The table is
bounded twice, by items (`max_pending`) and by the bytes of their records (`max_pending_bytes`):
a stage of people (a human stage) falls behind by hours, an automatic one by milliseconds, and
neither may hold a topic's backlog in memory.

Input stops first by not calling `consume` (the stage works through its table meanwhile): the
records the client fetched ahead stay in its queue. Pausing the partitions would drop them
(librdkafka discards a paused partition's prefetched records and fetches them again on resume): an
automatic stage whose table filled for a moment then waited for the broker to send them again, and
ran at a third of its speed. Only a table still full after `HOLD` seconds (people are behind)
pauses the partitions, so that `consume` goes on serving the group (rebalances, and the client's
`max.poll.interval.ms`) while no input is taken. Input resumes once both bounds are below half.

The pause is applied again after every assignment: the client keeps a partition's pause across a
revoke and re-assign, so a stale pause would otherwise stall it for good.
"""

from __future__ import annotations

from typing import NamedTuple

BATCH = 2000
"""Records one `consume` takes at most: enough that the stage loop has a reserve to work on while
the engine waits for a commit (its pending table fills ahead of it, up to `max_pending`)."""
HOLD = 1.0
"""Seconds a full pending table stops the input before the partitions are paused."""


def batch_size(pending: int, size: int, max_pending: int, max_pending_bytes: int) -> int:
    """How many records the next `consume` may take: what is left of both budgets (items, and bytes at
    the table's mean record size), so flow control applies before a batch is decoded, not after.

    >>> batch_size(0, 0, 10_000, 64 << 20)
    2000
    >>> batch_size(100, 1_000_000, 10_000, 2_000_000)  # 10 KB records, 1 MB of room left: 100 more
    100
    >>> batch_size(10_000, 0, 10_000, 64 << 20)  # full: one, which `intake` keeps from being taken
    1
    """
    left = max_pending - pending
    if pending:
        left = min(left, (max_pending_bytes - size) * pending // max(size, 1))
    return max(1, min(BATCH, left))


class Intake(NamedTuple):
    """What the engine does with its input now."""

    consume: bool
    """Call `consume`: to take records, or (partitions paused) to serve the group while taking none."""
    pause: bool | None
    """Pause (True) or resume (False) the assigned partitions now; None: leave them as they are."""


class FlowControl:
    """Whether a stage instance takes input, from its pending table's size and the time it has been full.

    >>> flow = FlowControl(max_pending=4, max_pending_bytes=1 << 20)
    >>> flow.intake(4, 400, now=0.0)  # full: stop taking input, keep the prefetched records
    Intake(consume=False, pause=None)
    >>> flow.intake(3, 300, now=0.5)  # not below half yet
    Intake(consume=False, pause=None)
    >>> flow.intake(3, 300, now=1.0)  # full for HOLD seconds: pause, and go on serving the group
    Intake(consume=True, pause=True)
    >>> flow.intake(1, 100, now=1.5)  # below half: resume
    Intake(consume=True, pause=False)
    """

    def __init__(self, max_pending: int, max_pending_bytes: int) -> None:
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.paused = False
        """The assigned partitions are paused (as last applied)."""
        self.full_since: float | None = None
        """When input last stopped (None: it is taken)."""

    @property
    def holding(self) -> bool:
        """Input is held back (people are behind): records waiting in the topic are not a stall."""
        return self.paused or self.full_since is not None

    def intake(self, pending: int, size: int, *, now: float, reassigned: bool = False) -> Intake:
        """The decision for a table of `pending` items holding `size` bytes; `reassigned`: partitions
        were assigned since the last decision (the pause is applied to them again)."""
        items, room = self.max_pending, self.max_pending_bytes
        stop = pending >= items or size >= room or (self.holding and (pending >= items // 2 or size >= room // 2))
        if not stop:
            self.full_since = None
        elif self.full_since is None:
            self.full_since = now
        paused = self.full_since is not None and now - self.full_since >= HOLD
        change = paused if paused != self.paused or reassigned else None
        self.paused = paused
        return Intake(paused or not stop, change)
