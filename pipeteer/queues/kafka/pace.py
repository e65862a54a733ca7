"""When a stage should put off a commit that is due: as its input runs out, one commit, not two.

A transaction commit takes tens of milliseconds (the offsets, then the commit markers), and a
stage has one transaction at a time. When the input stops, the stage is still working through
the items it took ahead. A commit begun while a few of them are left finishes after the last
one: those few then wait for it and for one more commit after it, two commits back to back,
80-170 ms at ~10 KB records on a local broker. Put off, that commit begins once the stage has
finished everything and carries it all, its outputs already sent as they were finished.

`Pace` measures what the choice needs, from the engine's thread: how fast the stage finishes
items now, and how long recent commits took. Pure (no I/O, no clock of its own).
"""

from __future__ import annotations

from collections import deque

WINDOW = 0.05
"""Seconds of finishing over which one rate sample is taken (steps come every few ms or less)."""
COMMITS = 8
"""Recent commits whose slowest is the expected duration of the next."""
LONGEST = 1.0
"""A commit is never put off for more than this many seconds of the stage's remaining work."""


class Pace:
    """How fast the stage finishes items, and how long its commits take."""

    def __init__(self) -> None:
        self.rate = 0.0
        """Items finished per second while the stage was busy (a moving average of samples)."""
        self._since: float | None = None
        self._count = 0
        self._commits: deque[float] = deque(maxlen=COMMITS)

    def finished(self, now: float, count: int, busy: bool) -> None:
        """`count` items were finished since the last call; `busy`: the stage had work all along."""
        if not busy:  # idle time says nothing about how fast it works
            self._since, self._count = None, 0
            return
        if self._since is None:
            self._since, self._count = now, 0
            return
        self._count += count
        span = now - self._since
        if span >= WINDOW:
            sample = self._count / span
            self.rate = sample if self.rate == 0.0 else 0.5 * self.rate + 0.5 * sample
            self._since, self._count = now, 0

    def committed(self, seconds: float) -> None:
        self._commits.append(seconds)

    def expected_commit(self) -> float:
        return max(self._commits, default=0.0)

    def finishing_first(self, left: int) -> bool:
        """Whether the stage will have finished its `left` items before a commit begun now would end."""
        if left <= 0 or self.rate <= 0.0:
            return False
        work = left / self.rate
        return work < min(self.expected_commit(), LONGEST)
