"""The consumer-producer machinery of one Kafka stage instance: exactly-once by transactions.

One engine serves one consumed queue (a stage's input topic) in one process, on two threads:

- The engine's own thread (`thread.EngineThread`) owns the confluent-kafka consumer and drives the
  transactional producer, because the client is synchronous: it consumes, decodes into the
  pending table (`ingest`), decides when to take input (`flow`) and when to commit (`pace`),
  commits, recovers, and answers rebalances.
- The event loop (the stage's coroutine or web page) calls this class: it takes items from the
  pending table and finishes them, handing each output to the open transaction as it is finished,
  so that the client sends it at once. It is woken once per consumed batch, never per record.

Who owns what is written where it is declared: `StageEngine.__init__` lists the state both sides
share (only read or written under `lock`) and the event loop's own; `EngineThread.__init__` lists
the thread's, which the event loop only reads (single assignments: a flag, a count).

The commit: every `Transactions.interval` seconds or `records` finished items, the changelog writes
and input offsets the pending table plans (`pending.PendingTable.plan_commit`) are sent with the
consumer's group metadata (EOS v2), so outputs, pending-table changes and offsets become visible
together or not at all. The transactional producer and its open transaction are
`transactions.StageProducer`; the backend is known through the `StageHost` and `StageQueue`
protocols below (this module imports no backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pipeteer.codec import ValueCodec
from pipeteer.errors import InexistentItem
from pipeteer.plan import TopicNames
from pipeteer.queues.base import Retry
from pipeteer.queues.kafka.config import KafkaSettings
from pipeteer.queues.kafka.deadletters import dead_letter_record
from pipeteer.queues.kafka.health import BrokerWatch
from pipeteer.queues.kafka.pending import Entry, PendingTable, Record
from pipeteer.queues.kafka.thread import EngineThread
from pipeteer.queues.kafka.transactions import UNACKED_BYTES, StageProducer
from pipeteer.queues.notify import Notifier
from pipeteer.queues.observe import StageMeters
from pipeteer.queues.progress import Stall

log = logging.getLogger("pipeteer.kafka")


class StageHost(Protocol):
    """What an engine asks of its backend (`backend.KafkaBackend`); this module imports no backend."""

    settings: KafkaSettings
    names: TopicNames
    watch: BrokerWatch

    def stage_metrics(self, stage: str) -> StageMeters | None: ...

    def known_topics(self) -> set[str]: ...

    def ensure_topics_sync(self, topics: Iterable[str], *, extra_stage: Sequence[str] | None = None) -> None: ...


class StageQueue(Protocol):
    """What an engine asks of the queue it consumes (`backend.KafkaQueue`)."""

    topic: str
    codec: ValueCodec[Any]
    retry: Retry

    def describe(self) -> str: ...


AHEAD_BYTES = UNACKED_BYTES
"""Bytes of outputs a stage loop finishes while the transaction is closed (a commit under way) before
it waits for the engine to produce them. Unbounded, a fast stage finished 6,700 records of 10 KB
during one slow commit, and the engine then needed 200 ms to hand them to the brokers before the next
commit could begin (and the stage's CPU starved the brokers meanwhile)."""
DROPPED_KEPT = 10_000
"""Items of partitions that went away while a stage loop worked on them, remembered at most."""

Waiter = tuple[asyncio.Future[None], int]
"""A future the event loop waits on, and the partition of its item (-1: none)."""


class StageEngine:
    """Consumes one queue's topic for one stage instance, with a pending table and transactions."""

    def __init__(self, backend: StageHost, queue: StageQueue, stage: tuple[str, ...]) -> None:
        names = backend.names
        self.backend = backend
        self.queue = queue
        self.stage = stage
        self.stage_name = "/".join(stage)
        self.topic = queue.topic
        self.changelog = names.changelog(stage)
        self.dead_letters = names.dead_letters(stage)
        self.group = names.group(stage)
        self.transactional_id = names.transactional_id(stage, backend.settings.instance)
        self.retries = queue.retry  # the backend's policy, or the one a service gave the queue

        # --- shared by the event loop and the thread: read and written under `lock` only ---
        self.lock = threading.Lock()
        self.table = PendingTable(self.changelog)
        self.txn = StageProducer(backend.settings, self.transactional_id, self.stage_name, self._producer_error)
        """The event loop offers outputs to its open transaction (only while `open`); all else is the thread's."""
        self.open = False
        """The open transaction takes each output as the stage finishes its item (`finish`), so the
        client sends it while the stage goes on, as a hand-written loop does. Closed (outputs wait in
        the table) from the moment a commit takes its plan, while an abort rewinds, and while
        partitions are handed over; `open_transaction` reopens it."""
        self.full = False
        """The producer held `UNACKED_BYTES` when a finished item's output was offered: it waits in
        the table, and so does the stage loop (on `room`) until the engine has produced it."""
        self.held_bytes = 0
        """Bytes of outputs waiting in the table while the transaction is closed (`AHEAD_BYTES`)."""
        self.room: asyncio.Future[None] | None = None
        """What a stage loop waits on while outputs wait in the table (`_room_waiter`)."""
        self.waiters: list[Waiter] = []
        """Items completed by id, waiting for the next commit (a person must not hear "done" before it)."""
        self.committing: list[Waiter] = []
        """The same, for the commit under way."""
        self.wanted = False
        """The event loop waits for a change: only then does the thread wake it, which costs a system
        call and a hand-over of the GIL."""
        self.starved = False
        """The stage loop asked for an item and found none ready: it has finished what it had."""
        self.streaming = False
        """A stage loop reads this queue (`read()`), as opposed to web pages completing items by id."""
        self.current: str | None = None
        """The item the stage loop read last (what `fail` is about)."""
        self.dropped: dict[str, Entry] = {}
        """Items a stage loop was working on when their partition went away: the loop may still read
        and move them; the move is then dropped (the partition's new owner processes them)."""
        self.assigned: set[int] = set()
        """The partitions this instance holds (the thread also reads it unlocked: it alone writes it)."""
        self.waits_for_room = 0
        """Times the stage loop waited because the producer held `UNACKED_BYTES` (outputs ahead of the brokers)."""

        # --- the event loop's own ---
        self.loop: asyncio.AbstractEventLoop | None = None
        self.notifier = Notifier()
        self.metrics: StageMeters | None = None
        """The stage's metrics (set once, by `start`, before the thread runs)."""

        self.thread = EngineThread(self)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the thread (once) and wait until the producer and consumer are set up."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
            self.metrics = self.backend.stage_metrics(self.stage_name)
            if self.metrics is not None:
                self.metrics.oldest_pending.set_function(self.table.oldest_age)
        await self.thread.started()

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is finished, leave the group, stop the thread."""
        self.thread.stop(timeout)

    def ready(self) -> bool:
        """Assigned (the group was joined), restored, and the broker reachable."""
        return self.unready_reason() is None

    def unready_reason(self) -> str | None:
        """Why this stage instance cannot serve now (None: it can), in words for /readyz and pages."""
        return self.thread.unready_reason()

    def stall(self) -> Stall | None:
        """What waits for this instance and for how long it has made no progress on it (None: nothing
        waits); `outage` when no broker answers it (see `pipeteer.queues.progress`)."""
        return self.thread.stall()

    @property
    def backlog(self) -> int:
        """Records on this instance's partitions it has not fetched yet (what flow control leaves in the topic)."""
        return self.thread.backlog

    @property
    def committed_items(self) -> int:
        """Items finished (emitted, dead-lettered or popped) and committed by this engine so far."""
        return self.thread.committed_items

    # --- the event loop's calls -----------------------------------------------------------------

    def _take(self, e: Entry) -> Entry:
        """`e` handed to the stage loop (caller holds the lock)."""
        e.streamed = True
        self.current = e.id
        self.starved = False
        self.streaming = True
        return e

    def try_next(self) -> Entry | None:
        """The oldest pending item not waiting for a retry, if there is one now."""
        with self.lock:
            e = self.table.first_ready(time.monotonic())
            return None if e is None else self._take(e)

    async def next_item(self) -> Entry:
        """The oldest pending item not waiting for a retry; waits for one (woken by the thread)."""
        while True:
            now = time.monotonic()
            with self.lock:
                e = self.table.first_ready(now)
                if e is not None:
                    return self._take(e)
                retry_at = self.table.next_retry_at()
                self.starved = True
                fut = self._waiter()
            try:
                await asyncio.wait_for(fut, None if retry_at is None else max(retry_at - now, 0.001))
            except TimeoutError:
                pass

    def get(self, id: str) -> Entry:
        with self.lock:
            e = self.table.entries.get(id) or self.dropped.get(id)
        if e is None:
            raise InexistentItem(id, self.queue.describe())
        return e

    def has(self, id: str) -> bool:
        with self.lock:
            return id in self.table.entries or id in self.dropped

    def snapshot(self) -> list[Entry]:
        with self.lock:
            return list(self.table.entries.values())

    def pending_count(self) -> int:
        return len(self.table)

    def count(self, match: str | None = None, older_than: float | None = None, now: float | None = None) -> int:
        """How many items are pending here (O(1) without filters); see `PendingTable.count`."""
        if match is None and older_than is None:
            return len(self.table)
        with self.lock:
            return self.table.count(match, older_than, now)

    def page(self, offset: int, limit: int, match: str | None = None, older_than: float | None = None,
             now: float | None = None) -> list[tuple[str, float]]:
        """`(id, consumed_at)` of pending items `offset` to `offset + limit`; see `PendingTable.page`."""
        with self.lock:
            return self.table.page(offset, limit, match, older_than, now)

    def held(self) -> list[Entry]:
        """The items this instance holds because it cannot read them (another version's), oldest first."""
        with self.lock:
            return self.table.held()

    def unreadable(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are held (see `held`), looked up one by one: a console's page, not the table."""
        entries = self.table.entries
        with self.lock:
            return {id for id in ids if (e := entries.get(id)) is not None and e.held is not None}

    async def wait_change(self, timeout: float = 1.0) -> None:
        with self.lock:
            fut = self._waiter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, timeout)

    def _waiter(self) -> asyncio.Future[None]:
        """A future the thread resolves at the next change (caller holds the lock)."""
        self.wanted = True
        return self.notifier.waiter()

    def finish(self, id: str, topic: str | None, data: bytes | None) -> asyncio.Future[None] | None:
        """Finish `id`, emitting `data` to `topic` (None: no output) in the next transaction.

        Returns a future that resolves when that transaction commits, for items completed by
        id (a web page answering a person must not say "done" before it is durable); None for
        items a stage loop got from `read()` (their durability is the stage's next commit, and
        a crash before it simply processes them again).
        """
        with self.lock:
            table = self.table
            e = table.entries.pop(id, None)
            if e is None:
                if self.dropped.pop(id, None) is not None:
                    return None
                raise InexistentItem(id, self.queue.describe())
            if self.open and topic is not None and not e.logged and self.txn.offer_one(topic, id, data):
                table.finish_entry(e, None)  # (the common case, sent at once: no record is made)
            else:
                table.finish_entry(e, None if topic is None else Record(topic, id, data, None, (), e.partition))
                if self.open:
                    self._produce_finished()
                elif data is not None:
                    self.held_bytes += len(data)
            if self.current == id:
                self.current = None
            if e.streamed:
                return None if self.open else self._room_waiter()
            assert self.loop is not None
            fut: asyncio.Future[None] = self.loop.create_future()
            self.waiters.append((fut, e.partition))
            return fut

    def fail(self, error: BaseException) -> str | None:
        """The stage failed on the item it last read: retry it later, or dead-letter it when out of attempts."""
        with self.lock:
            id = self.current
            e = None if id is None else self.table.entries.get(id)
            if e is None:
                return None
            e.attempts += 1
            again = self.retries.next_try(e.attempts, time.monotonic())
            if again is not None:
                e.not_before = again
                return id
            record = self.dead_letter(e.id, e.raw, error, e.partition, e.offset, e.attempts)
            self.table.finish(e.id, (record,))
            if self.open:
                self._produce_finished()
            self.current = None
        if self.metrics is not None:
            self.metrics.dead_letters.inc()
        log.error(
            "stage %r: item %r dead-lettered after %d attempts: %r", self.stage_name, id, e.attempts, error
        )
        return id

    def dead_letter(
        self, id: str, raw: bytes | None, error: BaseException, partition: int, offset: int, attempts: int
    ) -> Record:
        """The dead-letter record of an input record: its bytes, with headers naming what failed and where."""
        return dead_letter_record(
            self.dead_letters, id, raw, error, self.stage_name, self.topic, partition, offset, attempts
        )

    def _produce_finished(self) -> None:
        """Produce the finished items' records into the open transaction now (caller holds the lock).
        What the client does not take at once stays in the table, first in line, and the
        transaction closes: the engine's thread produces it (or its commit fails and recovers)."""
        records = self.table.take_outputs()
        taken = self.txn.offer(records)
        if taken < len(records):
            self.table.put_back(records[taken:])
            self.open = False
            self.full = True

    def _room_waiter(self) -> asyncio.Future[None] | None:
        """What a stage loop waits on before its next item: None, or while the producer is full (or a
        commit runs and `AHEAD_BYTES` of outputs wait in the table), a future resolved once the
        outputs waiting in the table are produced (caller holds the lock)."""
        if not self.full and self.held_bytes < AHEAD_BYTES:
            return None
        if self.room is None:
            assert self.loop is not None
            self.room = self.loop.create_future()
            self.waits_for_room += 1
        return self.room

    def _producer_error(self, err: Any) -> None:
        self.thread.on_producer_error(err)

    # --- the thread's calls ---------------------------------------------------------------------

    def open_transaction(self) -> None:
        """Produce what was finished while the transaction was closed, then let `finish` produce
        directly (in that order: outputs keep the order in which their items were finished)."""
        while True:
            with self.lock:
                records = self.table.take_outputs()
                if not records:
                    self.open = True
                    room = self.take_room()
                    break
            self.txn.produce(records)
        self.settle(room, None)

    def close_transaction(self) -> None:
        with self.lock:
            self.open = False

    def take_room(self) -> list[Waiter]:
        """The stage loop's wait for room, ended: to settle (caller holds the lock)."""
        room, self.room, self.full, self.held_bytes = self.room, None, False, 0
        return [] if room is None else [(room, -1)]

    def take_wanted(self, changed: bool = True) -> bool:
        """Whether to wake the event loop after a change (`changed`), which it then no longer waits
        for (caller holds the lock)."""
        wake, self.wanted = self.wanted and changed, self.wanted and not changed
        return wake

    def remember_dropped(self, dropped: list[Entry]) -> None:
        """Entries dropped from the table (caller holds the lock): those a stage loop holds stay known."""
        if len(self.dropped) > DROPPED_KEPT:
            self.dropped.clear()
        self.dropped.update((e.id, e) for e in dropped if e.streamed)

    def wake(self) -> None:
        """Wake the event loop's waiters (from the thread)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.notifier.notify)

    def settle(self, waiters: list[Waiter], error: BaseException | None) -> None:
        """Resolve `waiters` on the event loop (from the thread): done, or failed with `error`."""
        loop = self.loop
        if not waiters or loop is None or loop.is_closed():
            return

        def settle() -> None:
            for fut, _ in waiters:
                if fut.done():
                    continue
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle)
