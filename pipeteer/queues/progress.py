"""Whether a stage instance makes progress on the work waiting for it: the facts a watchdog judges.

A backend's consumer (the Kafka stage engine) tells its `Progress` what waits for it at each turn
of its loop (records on its partitions, finished items to commit, pending items to restore, its own
start-up) and when it made progress (records taken, a commit done, a restore finished). A stage
with nothing waiting is idle, never stalled, however long it waits; a stage with work waiting is
stalled from the later of "work began to wait" and "last progress". The service judges the
figure (`pipeteer.runtime.service`): unready after a short stall, unhealthy (restarted by
Kubernetes, `pipeteer run` exits) after `PIPETEER_STALL_SECONDS`; a stall while the whole cluster
is unreachable is an outage waited out, which a restart would not end: unready only.

This core takes `now` and does no I/O, so the rules are tested without a broker:

>>> p = Progress(now=0.0)
>>> p.waiting("records on partitions [0]", now=1.0); p.stall("s", now=5.0).seconds
4.0
>>> p.made(now=6.0); p.stall("s", now=8.0).seconds
2.0
>>> p.waiting(None, now=9.0); p.stall("s", now=100.0) is None
True
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Stall:
    """A stage instance with work waiting and no progress for `seconds`."""

    stage: str
    seconds: float
    waiting: str
    """What waits, in words: "records on partitions [0, 3] of t.wf.input", "a commit of 120 finished items"."""
    error: str | None = None
    """The last client error met meanwhile, if any."""
    outage: bool = False
    """No broker of the cluster answers this instance: it waits the outage out (a restart would not help)."""

    def describe(self) -> str:
        error = f"; last error: {self.error}" if self.error else ""
        outage = " (the cluster is unreachable)" if self.outage else ""
        return f"stage {self.stage!r}: no progress for {self.seconds:.0f}s with {self.waiting} waiting{outage}{error}"


class Progress:
    """When work began to wait and when progress was last made (set by one thread, read by any)."""

    def __init__(self, now: float) -> None:
        self._lock = threading.Lock()
        self._at = now
        self._what: str | None = None
        self._since = now
        self._error: str | None = None

    def made(self, now: float) -> None:
        """Progress: records taken, a commit done, a restore finished."""
        with self._lock:
            self._at = now
            self._error = None

    def waiting(self, what: str | None, now: float) -> None:
        """What waits for this instance now (None: nothing; it is idle)."""
        with self._lock:
            if what is None:
                self._what = None
            else:
                if self._what is None:
                    self._since = now
                self._what = what

    def failed(self, error: str) -> None:
        """A client error met while the work waits (said with the stall)."""
        with self._lock:
            self._error = error

    def stall(self, stage: str, now: float, *, outage: bool = False) -> Stall | None:
        """The stall of `stage` now (None when nothing waits)."""
        with self._lock:
            if self._what is None:
                return None
            return Stall(stage, now - max(self._at, self._since), self._what, self._error, outage)
