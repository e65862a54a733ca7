"""One lock layer for every way a person's task is completed.

`LockGuard` is a wiring hook (see `pipeteer.wiring.StageHooks`): every push to a human stage's
`Qout`, whichever route made it (the console, the app's own FastAPI page, a script over HTTP),
first takes the task's lock for whoever sent the request (`current_reviewer`). If someone else
holds it, the push raises `TaskLocked` (the service answers 409 naming the holder) and nothing
moves; once the item has moved, its lock is dropped. The lock store is the backend's
(`Backend.locks()`): on SQLite a table shared by every process serving the stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from pipeteer.queues.locks import Locks
from pipeteer.runtime.security import current_reviewer

ANONYMOUS = "anonymous"
"""Who a request is when authentication is off."""
COMPLETING_SECONDS = 30.0
"""How long the lock a completion takes lasts, should the process die before the item moves."""


def reviewer() -> str:
    """Who sent the request being served."""
    return current_reviewer.get() or ANONYMOUS


class LockGuard:
    """Wiring hook: a human stage's item moves only for the holder of its lock, or when nobody holds it."""

    def __init__(self, human: Iterable[str]) -> None:
        self.human = frozenset(human)
        self.locks: Locks | None = None
        """Set once the backend is connected (the hook is made before the queues)."""
        self.targets: dict[tuple[str, str], str] = {}
        """(stage, id) -> where the item went, for the console to note (it takes its own decisions' entries)."""

    def read(self, stage: str, id: str) -> None:
        pass

    def completing(self, stage: str, id: str) -> None:
        """Take the task's lock for the sender (raises `TaskLocked` if another reviewer holds it)."""
        if self.locks is None or stage not in self.human:
            return
        now = time.time()
        self.locks.take(stage, id, reviewer(), now + COMPLETING_SECONDS, now, decided=True, exclusive=False)

    def moved(self, stage: str, id: str, target: str) -> None:
        if self.locks is not None and stage in self.human:
            self.locks.drop(stage, id)
            if len(self.targets) > 1000:  # moves the console did not ask about (the app's own pages)
                self.targets.clear()
            self.targets[(stage, id)] = target
