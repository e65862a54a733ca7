"""The pending table of a Kafka stage: items consumed but not finished, and what each commit must write.

Why a table and not just offsets: items may finish out of order (a person validates item 7
before item 3), so "committed offset = N" cannot say which items below N are done. The table
keeps every consumed, unfinished item; a compacted changelog topic, co-partitioned with the
input, makes it durable. At each commit the stage writes, in ONE transaction:

1. the finished items' next states (and dead letters);
2. to the changelog, each item still pending that lies *below* the offset being committed and
   is not there yet, and a tombstone for each finished item that was there;
3. the input offsets.

Which offset is committed for a partition: everything consumed, except the trailing run of
items that are pending and not in the changelog. Those are left uncommitted rather than
written: after a crash they are simply consumed again. An automatic stage that keeps up
therefore writes nothing to its changelog (its pending items are always that trailing run),
and a human stage writes each waiting item once, when something after it finishes.

After a crash, the table is the changelog (every pending item below the committed offset)
plus the input read again from the committed offset (every item above it): no item is lost,
and since each finished item's output was committed with an offset above it, none is re-emitted.

This module is pure (no I/O, no locks); the stage engine calls it under its lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any


@dataclass(slots=True, eq=False)
class Entry:
    """One pending item."""

    id: str
    value: Any
    raw: bytes
    partition: int
    offset: int
    consumed_at: float
    logged: bool = False
    """The changelog holds a live record for this id (so finishing it needs a tombstone)."""
    dirty: bool = True
    """The changelog does not hold the current value yet."""
    streamed: bool = False
    """Handed out by `read()` (a stage loop), as opposed to completed by id (a web page)."""
    attempts: int = 0
    not_before: float = 0.0
    done: bool = False
    """Finished or replaced: its input offset no longer holds a pending item."""
    held: Any = None
    """Why this instance cannot read the item (an `UnreadableRecord`: another version's record), or None.
    A held item is pending like any other (written to the changelog, restored, never dropped) but not
    handed out; `value` is None until it can be read."""


def _done_mark(partition: int, offset: int) -> Entry:
    """The offset of a record finished as soon as consumed (a dead letter)."""
    return Entry("", None, b"", partition, offset, 0.0, dirty=False, done=True)


@dataclass(slots=True)
class Record:
    """A record to produce in the current transaction (not frozen: a frozen dataclass is three times
    slower to make, and one is made per item)."""

    topic: str
    key: str
    value: bytes | None
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    source: int | None = None
    """The input partition of the item this record finishes (dropped with that partition)."""


@dataclass(slots=True)
class CommitPlan:
    """What one transaction commit writes: records (outputs, changelog) and the input offsets."""

    records: list[Record] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)
    finished: int = 0

    def __bool__(self) -> bool:
        return bool(self.records or self.offsets)


class PendingTable:
    """Consumed-but-unfinished items of the partitions one stage instance owns, oldest first."""

    def __init__(self, changelog_topic: str) -> None:
        self.changelog_topic = changelog_topic
        # An OrderedDict, not a dict: finding the oldest item after many removals from the front is
        # O(1) on its linked list, while a dict would step over every removed slot.
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        # Per partition, the consumed entries (in offset order) whose offsets are not committed yet.
        self._marks: dict[int, deque[Entry]] = {}
        self._position: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._outputs: list[Record] = []
        self._finished = 0
        self.bytes = 0
        """Bytes of the pending items' records (references, not blobs: large values are claim-checked)."""

    # --- the consuming side -------------------------------------------------------------------

    def assign(self, partition: int, restored: Iterable[Entry]) -> None:
        """Take a partition, with its pending items restored from the changelog (already logged)."""
        self._marks[partition] = deque()
        self._position.pop(partition, None)
        self._committed.pop(partition, None)
        last = next(reversed(self.entries.values())).consumed_at if self.entries else float("-inf")
        in_order = True
        for e in restored:
            e.logged, e.dirty = True, False
            old = self.entries.pop(e.id, None)
            if old is not None:
                self.bytes -= len(old.raw)
            self.entries[e.id] = e
            self.bytes += len(e.raw)
            in_order = in_order and e.consumed_at >= last
            last = max(last, e.consumed_at)
        if not in_order:
            # Items restored from the changelog were consumed (by the partition's previous owner) before
            # some already here: the table stays in arrival order, so that the oldest item is served
            # first and a page of it (`page`) is a slice of the sorted listing. Rare (a rebalance), and
            # only the order of serving depends on it: commits follow each partition's offsets.
            self.entries = OrderedDict(sorted(self.entries.items(), key=lambda item: item[1].consumed_at))

    def drop(self, partitions: Iterable[int]) -> list[Entry]:
        """Forget partitions (revoked, or reset after an aborted transaction); returns the dropped items."""
        ps = set(partitions)
        dropped = [e for e in self.entries.values() if e.partition in ps]
        for e in dropped:
            del self.entries[e.id]
            self.bytes -= len(e.raw)
        for p in ps:
            self._marks.pop(p, None)
            self._position.pop(p, None)
            self._committed.pop(p, None)
        # Outputs of items finished since the last commit belong to the partition's next owner now.
        self._outputs = [r for r in self._outputs if r.source not in ps]
        return dropped

    def clear(self) -> list[Entry]:
        """Forget everything (after an aborted transaction); returns the dropped items."""
        dropped = self.drop(list(self._marks) + [e.partition for e in self.entries.values()])
        self._outputs = []
        self._finished = 0
        return dropped

    @property
    def partitions(self) -> list[int]:
        return sorted(self._marks)

    def add(self, entry: Entry) -> None:
        """A consumed item. A newer record for a pending id replaces it (queues are keyed by id)."""
        self.add_many((entry,))

    def add_many(self, batch: Iterable[Entry]) -> None:
        """Consumed items, in offset order per partition (the engine's hot path: the lookups hoisted).
        A newer record for a pending id replaces it (queues are keyed by id)."""
        entries, marks_of, position = self.entries, self._marks, self._position
        pop = entries.pop
        marks: deque[Entry] | None = None
        partition = -1
        size = 0
        for entry in batch:
            p = entry.partition
            if p != partition:
                marks = marks_of.get(p)
                if marks is None:
                    marks = marks_of[p] = deque()
                partition = p
            old = pop(entry.id, None)
            if old is not None:
                old.done = True
                entry.logged = old.logged
                size -= len(old.raw)
            marks.append(entry)  # type: ignore[union-attr]  # set on the first entry
            entries[entry.id] = entry
            position[p] = entry.offset + 1
            size += len(entry.raw)
        self.bytes += size

    def consumed_done(self, partition: int, offset: int, records: Iterable[Record] = ()) -> None:
        """A consumed record that is finished at once (undecodable: its dead letter is in `records`)."""
        self._marks.setdefault(partition, deque()).append(_done_mark(partition, offset))
        self._position[partition] = offset + 1
        self._outputs.extend(records)
        self._finished += 1

    # --- the stage side -----------------------------------------------------------------------

    def first_ready(self, now: float) -> Entry | None:
        """The oldest item not waiting for a retry (nor held: unreadable here)."""
        for e in self.entries.values():
            if e.not_before <= now and e.held is None:
                return e
        return None

    def next_retry_at(self) -> float | None:
        waiting = [e.not_before for e in self.entries.values() if e.held is None]
        return min(waiting) if waiting else None

    def held(self) -> list[Entry]:
        """The items held because this instance cannot read them, oldest first."""
        return [e for e in self.entries.values() if e.held is not None]

    def finish(self, id: str, records: Iterable[Record]) -> Entry | None:
        """The item is done; `records` (its next state, or its dead letter) go in the next commit."""
        e = self.entries.pop(id, None)
        if e is None:
            return None
        self.finish_entry(e, None)
        self._outputs.extend(records)
        return e

    def finish_entry(self, e: Entry, record: Record | None) -> None:
        """`finish` for an entry already taken out of `entries` (the stage loop's hot path)."""
        e.done = True
        self.bytes -= len(e.raw)
        if e.logged:
            self._outputs.append(Record(self.changelog_topic, e.id, None, e.partition, source=e.partition))
        if record is not None:
            self._outputs.append(record)
        self._finished += 1

    def take_outputs(self) -> list[Record]:
        """Records finished so far, to produce ahead of the commit (inside the open transaction)."""
        out, self._outputs = self._outputs, []
        return out

    def put_back(self, records: list[Record]) -> None:
        """Records taken by `take_outputs` but not produced: first in line again."""
        self._outputs[:0] = records

    def plan_commit(self) -> CommitPlan:
        """Everything the next commit writes; the table then counts it as written."""
        plan = CommitPlan(records=self.take_outputs(), finished=self._finished)
        self._finished = 0
        for p, marks in self._marks.items():
            i = len(marks)
            while i > 0:
                e = marks[i - 1]
                if e.done or not e.dirty:
                    break
                i -= 1
            commit = marks[i].offset if i < len(marks) else self._position.get(p)
            for _ in range(i):
                e = marks.popleft()
                if not e.done and e.dirty:
                    plan.records.append(Record(self.changelog_topic, e.id, e.raw, p, _changelog_headers(e), source=p))
                    e.logged, e.dirty = True, False
            if commit is not None and commit > self._committed.get(p, -1):
                plan.offsets[p] = commit
                self._committed[p] = commit
        return plan

    # --- reading ------------------------------------------------------------------------------

    @property
    def finished(self) -> int:
        """Items finished (or dead-lettered on arrival) since the last `plan_commit`."""
        return self._finished

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self.entries.values()))

    def _matching(self, match: str | None, older_than: float | None, now: float | None) -> Iterator[Entry]:
        """The pending entries (held ones too, as `pending_since` lists them) whose id contains `match`
        and that were consumed `older_than` seconds before `now` or earlier, in table order."""
        entries: Iterable[Entry] = self.entries.values()
        if match is not None:
            entries = (e for e in entries if match in e.id)
        if older_than is not None:
            cutoff = (time.time() if now is None else now) - older_than
            entries = (e for e in entries if e.consumed_at <= cutoff)
        return iter(entries)

    def count(self, match: str | None = None, older_than: float | None = None, now: float | None = None) -> int:
        """How many items are pending (O(1)), or how many of them pass the filters (one walk).

        >>> t = PendingTable("cl"); t.add_many(Entry(id, None, b"", 0, i, 10.0 * i) for i, id in enumerate("abc"))
        >>> t.count(), t.count(match="b"), t.count(older_than=5, now=20.0)
        (3, 1, 2)
        """
        if match is None and older_than is None:
            return len(self.entries)
        return sum(1 for _ in self._matching(match, older_than, now))

    def page(self, offset: int = 0, limit: int = 50, match: str | None = None, older_than: float | None = None,
             now: float | None = None) -> list[tuple[str, float]]:
        """`(id, consumed_at)` of the pending items `offset` to `offset + limit` (of those passing the
        filters, as `count`), in table order (oldest first): walks only the items up to the page's end.

        >>> t = PendingTable("cl"); t.add_many(Entry(id, None, b"", 0, i, 10.0 * i) for i, id in enumerate("abc"))
        >>> t.page(1, 5)
        [('b', 10.0), ('c', 20.0)]
        """
        if offset < 0 or limit < 0:
            raise ValueError(f"page: offset and limit must be >= 0, got offset={offset}, limit={limit}")
        return [(e.id, e.consumed_at) for e in islice(self._matching(match, older_than, now), offset, offset + limit)]

    def oldest_age(self, now: float | None = None) -> float:
        for e in self.entries.values():
            return max(0.0, (time.time() if now is None else now) - e.consumed_at)
        return 0.0


def _changelog_headers(e: Entry) -> tuple[tuple[str, bytes], ...]:
    return (("pipeteer.offset", str(e.offset).encode()), ("pipeteer.consumed_at", repr(e.consumed_at).encode()))
