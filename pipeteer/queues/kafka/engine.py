"""The consumer-producer machinery of one Kafka stage instance: exactly-once by transactions.

One engine serves one consumed queue (a stage's input topic) in one process. A dedicated
thread owns the confluent-kafka consumer and drives the transactional producer, because the
client is synchronous; the asyncio side (the stage's coroutine or web page) only touches the
pending table, under a lock, and hands each finished item's output to the producer as it is
finished, so that the client sends it at once. It is woken once per consumed batch, never per record.

The thread's loop: consume a batch -> decode into the pending table (undecodable records go
straight to the dead-letter topic) -> produce what was finished while the transaction was closed
(during a commit) -> every `Transactions.interval` seconds or `records` finished items,
commit: the changelog writes and input offsets the pending table plans
(`pending.PendingTable.plan_commit`), sent with the consumer's group metadata (EOS v2), so
outputs, pending-table changes and offsets become visible together or not at all.

The transactional producer and its open transaction are `transactions.StageProducer`; the backend
is known through the `StageHost` and `StageQueue` protocols below (this module imports no backend).

Errors are answered as `faults.classify` says: a fault of the cluster (a leader or coordinator moving,
a broker away) is retried with the same clients; an abortable one aborts the transaction and rewinds
(the pending table is rebuilt from the changelog and the consumer seeks back to the committed
offsets, so everything since the last commit is consumed and processed again); a fatal one recreates
the producer (fenced by a newer instance with the same transactional id) or the consumer (a static
member fenced after its session expired), which rejoins its group. On partition revocation the
engine commits first, then forgets the partitions; on assignment it restores their pending items
from the changelog before any new input of theirs is read. The thread tells its `Progress` what waits
for it and when it made progress: the service's watchdog judges a stall (`pipeteer.queues.progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from pipeteer.codec import ValueCodec, kafka_source
from pipeteer.errors import BrokerUnreachable, CommitAborted, DecodeError, InexistentItem, UnreadableRecord
from pipeteer.plan import TopicNames
from pipeteer.queues.base import Retry
from pipeteer.queues.kafka.changelog import committed, read_changelog, restore_consumer, stage_consumer
from pipeteer.queues.kafka.config import KafkaSettings
from pipeteer.queues.kafka.deadletters import dead_letter_record
from pipeteer.queues.kafka.faults import Client, Fault, classify, classify_exception, error_of
from pipeteer.queues.kafka.health import BrokerWatch, broker_states, translate
from pipeteer.queues.kafka.pace import Pace
from pipeteer.queues.kafka.pending import Entry, PendingTable, Record
from pipeteer.queues.kafka.transactions import UNACKED_BYTES, StageProducer
from pipeteer.queues.notify import Notifier
from pipeteer.queues.progress import Progress, Stall


class StageHost(Protocol):
    """What an engine asks of its backend (`backend.KafkaBackend`); this module imports no backend."""

    settings: KafkaSettings
    names: TopicNames
    watch: BrokerWatch

    def stage_metrics(self, stage: str) -> Any: ...

    def known_topics(self) -> set[str]: ...

    def ensure_topics_sync(self, topics: Iterable[str], *, extra_stage: Sequence[str] | None = None) -> None: ...


class StageQueue(Protocol):
    """What an engine asks of the queue it consumes (`backend.KafkaQueue`)."""

    topic: str
    codec: ValueCodec[Any]
    retry: Retry

    def describe(self) -> str: ...


log = logging.getLogger("pipeteer.kafka")

BATCH = 2000
"""Records one `consume` takes at most: enough that the stage loop has a reserve to work on while
this thread waits for a commit (its pending table fills ahead of it, up to `max_pending`)."""
LAG_EVERY = 1.0
BUSY_POLL = 0.005
"""How long the engine waits for input while the stage is finishing items (their outputs go out
between waits); an idle stage waits up to the commit interval."""
HOLD = 1.0
"""Seconds a full pending table stops the input before the partitions are paused (`_flow_control`)."""
AHEAD_BYTES = UNACKED_BYTES
"""Bytes of outputs a stage loop finishes while the transaction is closed (a commit under way) before
it waits for the engine to produce them. Unbounded, a fast stage finished 6,700 records of 10 KB
during one slow commit, and the engine then needed 200 ms to hand them to the brokers before the next
commit could begin (and the stage's CPU starved the brokers meanwhile)."""
HELD_RECHECK_SECONDS = 2.0
"""Items held as unreadable (another version's records) are read again this often (`_read_held`)."""
TXN_BYTES = 8 << 20
"""A transaction is committed early once it carries this many bytes: downstream stages see large
records in steps of this size, and an aborted transaction redoes no more than this."""
STATS_INTERVAL_MS = 1000
"""How often the stage consumer reports its statistics (`_on_stats`): which brokers it is connected
to, and per partition the last stable offset beside its position (records waiting)."""
RETRY_PAUSE = 0.5
"""First pause before a start-up or a recovery is tried again after a transient error (a leader or
coordinator moving); it doubles up to `RETRY_PAUSE_MAX`, so a stage resumes within seconds of the
cluster, not after a long backoff that grew while a broker was away."""
RETRY_PAUSE_MAX = 2.0


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
        self.txn = StageProducer(backend.settings, self.transactional_id, self.stage_name, self._on_producer_error)
        self.tx = backend.settings.transactions
        self.retries = queue.retry  # the backend's policy, or the one a service gave the queue
        self.lock = threading.Lock()
        self.table = PendingTable(self.changelog)
        self.notifier = Notifier()
        self._wanted = False
        """The asyncio side waits for a change (set and cleared under the lock): only then does
        the thread wake it, which costs a system call and a hand-over of the GIL."""
        self._starved = False
        """The stage loop asked for an item and found none ready: it has finished what it had."""
        self._streaming = False
        """A stage loop reads this queue (`read()`), as opposed to web pages completing items by id."""
        self._waiters: list[tuple[asyncio.Future[None], int]] = []
        self._committing: list[tuple[asyncio.Future[None], int]] = []
        self._open = False
        """The open transaction takes each output as the stage finishes its item (`finish`, on the
        event loop's thread), so the client sends it while the stage goes on, as a hand-written loop
        does. Closed (outputs wait in the table) from the moment a commit takes its plan, while an
        abort rewinds, and while partitions are handed over; `_open_transaction` reopens it."""
        self._full = False
        """The producer held `UNACKED_BYTES` when a finished item's output was offered: it waits in
        the table, and so does the stage loop (on `_room`) until the engine has produced it."""
        self._held = 0
        """Bytes of outputs waiting in the table while the transaction is closed (`AHEAD_BYTES`)."""
        self._room: asyncio.Future[None] | None = None
        # Items a stage loop was working on when their partition went away: the loop may still read
        # and move them; the move is then dropped (the partition's new owner processes them).
        self._dropped_streamed: dict[str, Entry] = {}
        self._current: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._attempted = threading.Event()  # set after each start-up attempt, failed or not
        self._start_error: BaseException | None = None
        self._consumer: Any = None
        self._restorer: Any = None
        self._busy = False
        self._finished_seen = 0
        self._pace = Pace()
        self._ingested = 0
        self._last_commit = time.monotonic()
        self._last_lag = 0.0
        self._held_checked = 0.0
        self._paused = False
        self._full_since: float | None = None
        self._reassigned = False
        self._assigned: set[int] = set()
        self._ever_assigned = False
        self._restoring = False
        self._broker_down_since: float | None = None
        self.progress = Progress(time.monotonic())
        """What waits for this instance and when it last made progress (`stall`: the watchdog's facts)."""
        self._consumer_fault: KafkaError | None = None
        """A fatal error of the consumer (fenced, `_FATAL`): the thread replaces it at its next turn."""
        self._producer_fault: KafkaError | None = None
        """A fatal error of the producer reported by its `error_cb`: the thread replaces it at its next turn."""
        self._waiting_input: list[int] = []
        self.backlog = 0
        """Records on this instance's partitions it has not fetched yet (from the statistics, every second;
        approximate: transaction markers count): what flow control leaves in the topic."""
        """Assigned partitions whose last stable offset is past the consumer's position (statistics)."""
        self.metrics: Any = None
        self.committed_items = 0
        """Items finished (emitted, dead-lettered or popped) and committed by this engine so far."""
        self.waits_for_room = 0
        """Times the stage loop waited because the producer held `UNACKED_BYTES` (outputs ahead of the brokers)."""

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the thread (once) and wait until the producer and consumer are set up."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self.metrics = self.backend.stage_metrics(self.stage_name)
            if self.metrics is not None:
                self.metrics.oldest_pending.set_function(self._oldest_age)
            self._thread = threading.Thread(
                target=self._run, name=f"pipeteer-kafka:{self.stage_name}", daemon=True
            )
            self._thread.start()
        while not self._started.is_set():
            await asyncio.to_thread(self._attempted.wait, 1.0)
            error = self._start_error
            if self._started.is_set() or error is None or not self._attempted.is_set():
                continue
            if self._stop.is_set():
                raise error
            if isinstance(error, BrokerUnreachable) or classify_exception(error, "producer") is Fault.RETRY:
                # A fault of the cluster (a broker away, a coordinator moving): the thread tries again
                # within seconds; the caller waits for it rather than failing (and backing off) itself.
                self._attempted.clear()
                continue
            raise error  # (the thread keeps trying; a later start() may succeed)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is finished, leave the group, stop the thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def ready(self) -> bool:
        """Assigned (the group was joined), restored, and the broker reachable."""
        return self.unready_reason() is None

    def unready_reason(self) -> str | None:
        """Why this stage instance cannot serve now (None: it can), in words for /readyz and pages."""
        down = self.backend.watch.reason()
        if self._broker_down_since is not None or (down and not self._started.is_set()):
            return f"stage {self.stage_name!r}: " + (down or f"Kafka brokers at {self.backend.watch.bootstrap} unreachable")
        if not self._started.is_set():
            error = f" (last attempt: {self._start_error})" if self._start_error is not None else ""
            return f"stage {self.stage_name!r}: starting on {self.topic}{error}"
        if not self._ever_assigned:
            return f"stage {self.stage_name!r}: waiting for partitions of {self.topic} (consumer group {self.group})"
        if self._restoring:
            return f"stage {self.stage_name!r}: restoring its pending items from {self.changelog}"
        return None

    def stall(self) -> Stall | None:
        """What waits for this instance and for how long it has made no progress on it (None: nothing
        waits); `outage` when no broker answers it (see `pipeteer.queues.progress`)."""
        watch = self.backend.watch
        outage = self._broker_down_since is not None or watch.reason() is not None or watch.all_down()
        return self.progress.stall(self.stage_name, time.monotonic(), outage=outage)

    # --- the asyncio side ---------------------------------------------------------------------

    def try_next(self) -> Entry | None:
        """The oldest pending item not waiting for a retry, if there is one now."""
        with self.lock:
            e = self.table.first_ready(time.monotonic())
            if e is not None:
                e.streamed = True
                self._current = e.id
                self._starved = False
                self._streaming = True
            return e

    async def next_item(self) -> Entry:
        """The oldest pending item not waiting for a retry; waits for one (woken by the thread)."""
        while True:
            now = time.monotonic()
            with self.lock:
                e = self.table.first_ready(now)
                if e is not None:
                    e.streamed = True
                    self._current = e.id
                    self._starved = False
                    self._streaming = True
                    return e
                retry_at = self.table.next_retry_at()
                self._starved = True
                fut = self._waiter()
            try:
                await asyncio.wait_for(fut, None if retry_at is None else max(retry_at - now, 0.001))
            except TimeoutError:
                pass

    def get(self, id: str) -> Entry:
        with self.lock:
            e = self.table.entries.get(id) or self._dropped_streamed.get(id)
        if e is None:
            raise InexistentItem(id, self.queue.describe())
        return e

    def has(self, id: str) -> bool:
        with self.lock:
            return id in self.table.entries or id in self._dropped_streamed

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

    async def wait_change(self, timeout: float = 1.0) -> None:
        with self.lock:
            fut = self._waiter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, timeout)

    def _waiter(self) -> asyncio.Future[None]:
        """A future the thread resolves at the next change (caller holds the lock)."""
        self._wanted = True
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
                if self._dropped_streamed.pop(id, None) is not None:
                    return None
                raise InexistentItem(id, self.queue.describe())
            if self._open and topic is not None and not e.logged and self.txn.offer_one(topic, id, data):
                table.finish_entry(e, None)  # (the common case, sent at once: no record is made)
            else:
                table.finish_entry(e, None if topic is None else Record(topic, id, data, None, (), e.partition))
                if self._open:
                    self._produce_finished()
                elif data is not None:
                    self._held += len(data)
            if self._current == id:
                self._current = None
            if e.streamed:
                return None if self._open else self._room_waiter()
            assert self._loop is not None
            fut: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append((fut, e.partition))
            return fut

    def fail(self, error: BaseException) -> str | None:
        """The stage failed on the item it last read: retry it later, or dead-letter it when out of attempts."""
        with self.lock:
            id = self._current
            e = None if id is None else self.table.entries.get(id)
            if e is None:
                return None
            e.attempts += 1
            if e.attempts < self.retries.attempts:  # attempts in all, as on every backend
                e.not_before = time.monotonic() + self.retries.delay(e.attempts)
                return id
            record = self.dead_letter(e.id, e.raw, error, e.partition, e.offset, e.attempts)
            self.table.finish(e.id, (record,))
            if self._open:
                self._produce_finished()
            self._current = None
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
            self._open = False
            self._full = True

    def _room_waiter(self) -> asyncio.Future[None] | None:
        """What a stage loop waits on before its next item: None, or while the producer is full (or a
        commit runs and `AHEAD_BYTES` of outputs wait in the table), a future resolved once the
        outputs waiting in the table are produced (caller holds the lock)."""
        if not self._full and self._held < AHEAD_BYTES:
            return None
        if self._room is None:
            assert self._loop is not None
            self._room = self._loop.create_future()
            self.waits_for_room += 1
        return self._room

    def _open_transaction(self) -> None:
        """Produce what was finished while the transaction was closed, then let `finish` produce
        directly (in that order: outputs keep the order in which their items were finished)."""
        while True:
            with self.lock:
                records = self.table.take_outputs()
                if not records:
                    self._open = True
                    room = self._take_room()
                    break
            self.txn.produce(records)
        self._settle(room, None)

    def _close_transaction(self) -> None:
        with self.lock:
            self._open = False

    def _take_room(self) -> list[tuple[asyncio.Future[None], int]]:
        """The stage loop's wait for room, ended: to settle (caller holds the lock)."""
        room, self._room, self._full, self._held = self._room, None, False, 0
        return [] if room is None else [(room, -1)]

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.notifier.notify)

    def _settle(self, waiters: list[tuple[asyncio.Future[None], int]], error: BaseException | None) -> None:
        loop = self._loop
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

    def _oldest_age(self) -> float:
        return self.table.oldest_age()

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self.progress.waiting("its start-up (topics, producer, consumer group)", time.monotonic())
            try:
                self._set_up()
                break
            except BaseException as e:
                self._start_error = self._say_failure(e, "producer", f"cannot start on {self.topic}")
                self._attempted.set()
                self._stop.wait(self._pause(e, attempt))
                attempt += 1
        else:  # stopped before it could start
            self._attempted.set()
            for client in (self._consumer, self._restorer):
                with contextlib.suppress(Exception):
                    if client is not None:
                        client.close()
            self._consumer = self._restorer = None
            self.txn.drop()
            return
        self._start_error = None
        self._started.set()
        self._attempted.set()
        self.progress.made(time.monotonic())
        failing = 0
        while not self._stop.is_set():
            try:
                if failing:  # recovery itself failed (a broker away?): retry it after a pause
                    self._stop.wait(min(RETRY_PAUSE * 2 ** (failing - 1), RETRY_PAUSE_MAX))
                    self._recover(fatal=False, error=None)
                    failing = 0
                self._step()
            except KafkaException as e:
                try:
                    self._on_transaction_error(e)
                except Exception as again:
                    failing += 1
                    self.progress.waiting(f"a recovery after {error_of(e) or e}", time.monotonic())
                    self._say_failure(again, "restorer", f"recovering from {error_of(e) or e} failed; retrying")
                    self._fresh_restorer()
            except Exception as e:
                failing += 1
                self.progress.waiting(f"a recovery after {e!r}", time.monotonic())
                log.exception("stage %r: unexpected error in the Kafka loop; rewinding", self.stage_name)
                self._fresh_restorer()
        self._shutdown()

    def _say_failure(self, e: BaseException, client: Client, what: str) -> BaseException:
        """Log a failed start-up or recovery once, in the words its kind calls for (no traceback for a
        fault of the cluster: a broker away, a coordinator moving), and note it for the watchdog."""
        err = error_of(e)
        self.progress.failed(str(err or e))
        if err is not None and classify(err, client) is Fault.RETRY:  # (one broker away, a leader moving: not an outage)
            self.backend.watch.limiter.log(logging.WARNING, f"stage {self.stage_name!r}: {what}: {err.str()}",
                                           key=f"{self.stage_name} {what} {err.code()}")
            return e
        error = translate(e, self.backend.watch.bootstrap)
        if isinstance(error, BrokerUnreachable):  # said once by the watch
            self.backend.watch.down(error.error)
        else:
            log.error("stage %r: %s", self.stage_name, what, exc_info=e)
        return error

    @staticmethod
    def _pause(e: BaseException, attempt: int) -> float:
        """How long to wait before starting again: briefly after a fault of the cluster (it passes in
        seconds), longer after anything else (a setting or a bug: said in the log meanwhile)."""
        cluster = isinstance(e, BrokerUnreachable) or (
            error_of(e) is not None and classify_exception(e, "producer") in (Fault.RETRY, Fault.UNREACHABLE))
        return float(min(RETRY_PAUSE * 2**attempt, RETRY_PAUSE_MAX) if cluster else min(2.0 * 2**attempt, 30.0))

    def _fresh_restorer(self) -> None:
        """A new restorer after a failed restore: its view of the changelog's partitions may be stale (a
        leader moved while it asked), and a new client asks the cluster afresh."""
        old, self._restorer = self._restorer, None
        with contextlib.suppress(Exception):
            if old is not None:
                old.close()
        with contextlib.suppress(Exception):
            self._restorer = restore_consumer(self.backend.settings, self.group)

    def _set_up(self) -> None:
        """Topics, clients, group subscription and transactional producer (each made once, so a retry goes on)."""
        log.info("stage %r: starting on %s as instance %r", self.stage_name, self.topic, self.backend.settings.instance)
        self.backend.ensure_topics_sync(self.backend.known_topics() | {self.topic}, extra_stage=self.stage)
        settings = self.backend.settings
        if self._restorer is None:
            self._restorer = restore_consumer(settings, self.group)
        if self._consumer is None:
            self._consumer = self._make_consumer()
        # The group join proceeds in the client's background threads meanwhile; partitions are
        # only restored (in `_on_assign`, called from `consume`) after the zombie is fenced.
        self.txn.open()
        self._reachable()
        log.info("stage %r: producer %r ready; joining group %s", self.stage_name, self.transactional_id, self.group)

    def _make_consumer(self) -> Any:
        """The stage's group consumer, subscribed (it joins the group at its next `consume`)."""
        consumer = stage_consumer(self.backend.settings, self.group, self._on_consumer_error,
                                  stats=self._on_stats, stats_interval_ms=STATS_INTERVAL_MS)
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        return consumer

    def _on_consumer_error(self, err: KafkaError) -> None:
        if classify(err, "consumer") is Fault.CONSUMER and self._consumer_fault is None:
            self._consumer_fault = err
        self._on_client_error(err)

    def _on_producer_error(self, err: KafkaError) -> None:
        if classify(err, "producer") is Fault.PRODUCER and self._producer_fault is None:
            self._producer_fault = err
        self._on_client_error(err)

    def _on_client_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self._broker_down_since is None:
            self._broker_down_since = time.monotonic()
        self.progress.failed(str(err.str()))
        self.backend.watch.on_error(err)  # logs it, once per broker and state change, or rate-limited

    def _consume_error(self, err: KafkaError) -> None:
        """An error `consume` returned in place of a record: the consumer's own end (replaced at the next
        turn), a fault of the cluster it rides out (said by the watch), or one to say, rate-limited."""
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if classify(err, "consumer") is Fault.CONSUMER:
            if self._consumer_fault is None:
                self._consumer_fault = err
            return
        self.progress.failed(str(err.str()))
        self.backend.watch.limiter.log(logging.WARNING, f"stage {self.stage_name!r}: consume error: {err.str()}",
                                       key=f"{self.stage_name} consume {err.code()}")

    def _on_stats(self, text: str) -> None:
        """The consumer's statistics (every `STATS_INTERVAL_MS`, on this thread): brokers seen up again,
        and the assigned partitions with records waiting (last stable offset past the position: a
        transaction marker at the end is not a record, and the position moves past it)."""
        try:
            stats = json.loads(text)
        except ValueError:
            return
        self.backend.watch.brokers_seen(broker_states(stats))
        parts = stats.get("topics", {}).get(self.topic, {}).get("partitions", {})
        waiting = []
        backlog = 0
        for p in self._assigned:
            d = parts.get(str(p))
            if d is None:
                continue
            end, position = d.get("ls_offset", -1), d.get("app_offset", -1)
            if position < 0:  # nothing fetched since the assignment: from the committed offset
                position = max(d.get("committed_offset", -1), d.get("lo_offset", -1))
            if end >= 0 and end > position >= 0:
                waiting.append(p)
                backlog += end - position
        self._waiting_input = sorted(waiting)
        self.backlog = backlog

    def _rebuild_consumer(self) -> None:
        """The consumer met a fatal error (fenced as a static member whose session expired, `_FATAL`):
        abort what is open, drop the pending table, and make a new consumer, which joins the group again;
        the partitions it is given are restored from the changelog as on any assignment."""
        err, self._consumer_fault = self._consumer_fault, None
        log.warning("stage %r: the consumer of group %s cannot go on (%s): making a new one, which rejoins the group",
                    self.stage_name, self.group, err.str() if err is not None else "?")
        self._close_transaction()
        self.txn.abort(False)
        self._reset_state(CommitAborted(f"{self.queue.describe()}: the stage's consumer was replaced; try again"))
        with self.lock:
            self._assigned.clear()
        self._waiting_input = []
        old, self._consumer = self._consumer, None
        try:
            old.close()
        except Exception as e:  # (a fenced consumer may refuse to leave: it is dropped all the same)
            log.info("stage %r: closing the old consumer: %s", self.stage_name, e)
        self._ever_assigned = False
        self._consumer = self._make_consumer()
        self._last_commit = time.monotonic()

    def _reachable(self) -> None:
        """The cluster answered."""
        self._broker_down_since = None
        self.backend.watch.up()

    def _step(self) -> None:
        # While the stage is finishing items, the engine looks at least every BUSY_POLL whether a
        # commit is due (and produces what was finished while the transaction was closed):
        # `consume` cannot be woken when the stage is done, and with all input already consumed (a
        # backlog within `max_pending`) it would otherwise wait its whole timeout every time.
        if self._consumer_fault is not None:
            self._rebuild_consumer()
        if self._producer_fault is not None:
            err, self._producer_fault = self._producer_fault, None
            log.warning("stage %r: the producer cannot go on (%s): making a new one", self.stage_name, err.str())
            self._recover(fatal=True, error=KafkaException(err))
        timeout = BUSY_POLL if self._busy else min(self.tx.interval, 0.1)
        consuming = self._flow_control()
        if consuming:
            asked = self._batch_size()
            msgs = self._consumer.consume(asked, timeout)
            # fewer than asked: `consume` waited its timeout and no more came (the input ran dry)
            dry = len(msgs) < asked
        else:
            dry = False
            msgs = []
            time.sleep(BUSY_POLL)
        if msgs and self._ingest(msgs):  # (records, not only errors: proof that the cluster answers)
            self._reachable()
            self.progress.made(time.monotonic())
        self.txn.poll()  # (delivery reports: acknowledged records make room in the producer)
        self._open_transaction()
        finished = self.table.finished
        left = len(self.table.entries)
        working = self._streaming and not self._starved and left > 0
        # Busy: the stage loop has just finished items, or has items to work on (input just taken,
        # or left in the table): the commit is due once it has done.
        self._busy = bool(msgs) or finished > self._finished_seen or working
        now = time.monotonic()
        self._pace.finished(now, finished - self._finished_seen, working)
        self._finished_seen = finished
        now_due = (
            # the first items after a start or a rebalance are visible as soon as they are done
            (finished and not self.committed_items)
            # the input ran dry and the stage has finished what it had (or a person waits for the
            # answer): nothing is gained by waiting for the interval
            or (finished and not msgs and (self._starved or self._waiters))
        )
        due = now_due or (
            (
                finished >= self.tx.records
                or self.txn.bytes >= TXN_BYTES
                or (now - self._last_commit >= self.tx.interval and (finished or self._ingested or self.txn.produced))
            )
            # ... unless the input ran dry and the stage will have finished what is left before
            # this commit would end: the last items would then wait for it and for one more
            # (see `pace`); the commit begins when the stage has finished, with everything
            and not (dry and working and self._pace.finishing_first(left))
        )
        if due:
            self._commit()
            self._open_transaction()
        if now - self._held_checked >= HELD_RECHECK_SECONDS:
            self._held_checked = now
            self._read_held()
        self.progress.waiting(self._waiting(), now)
        if now - self._last_lag >= LAG_EVERY:
            self._last_lag = now  # (the lag itself is measured from the cluster: pipeteer.queues.kafka.lag)
            if self._broker_down_since is not None:  # an idle stage learns that the broker is back
                with contextlib.suppress(KafkaException):
                    self._consumer.list_topics(self.topic, timeout=1)
                    self._reachable()

    def _waiting(self) -> str | None:
        """What waits for this instance now, in words (None: nothing; it is idle): finished items to
        commit, or records on its partitions while it takes input (flow control holding the input back,
        for people who are behind, is not a stall)."""
        if self.table.finished or self.txn.produced:
            return f"a commit of {self.table.finished} finished item(s)"
        waiting = self._waiting_input
        held_back = self._paused or self._full_since is not None  # (by `_flow_control`)
        if waiting and not held_back:
            return f"records on partitions {waiting} of {self.topic}"
        return None

    def _batch_size(self) -> int:
        """How many records the next `consume` may take: what is left of both budgets (items and bytes),
        so flow control applies before a batch is decoded, not after."""
        left = self.tx.max_pending - len(self.table)
        room = self.tx.max_pending_bytes - self.table.bytes
        if self.table.entries:
            left = min(left, room * len(self.table) // max(self.table.bytes, 1))
        return max(1, min(BATCH, left))

    def _flow_control(self) -> bool:
        """Whether to take input now: not while `max_pending` items are pending or their records hold
        `max_pending_bytes`, and again once both are below half.

        Input stops first by not calling `consume` (the stage works through its table meanwhile): the
        records the client fetched ahead stay in its queue. Pausing the partitions would drop them
        (librdkafka discards a paused partition's prefetched records and fetches them again on
        resume): an automatic stage whose table filled for a moment then waited for the broker to
        send them again, and ran at a third of its speed. Only a table still full after `HOLD`
        seconds (people are behind) pauses the partitions, so that `consume` goes on serving the
        group (rebalances, and the client's `max.poll.interval.ms`) while no input is taken.

        Re-applied after every assignment: the client keeps a partition's pause across a
        revoke and re-assign, so a stale pause would otherwise stall it for good.
        """
        n, size = len(self.table), self.table.bytes
        limit, byte_limit = self.tx.max_pending, self.tx.max_pending_bytes
        stopped = self._paused or self._full_since is not None
        stop = (n >= limit or size >= byte_limit) or (stopped and (n >= limit // 2 or size >= byte_limit // 2))
        now = time.monotonic()
        if not stop:
            self._full_since = None
        elif self._full_since is None:
            self._full_since = now
        paused = self._full_since is not None and now - self._full_since >= HOLD
        if paused != self._paused or self._reassigned:
            assignment = self._consumer.assignment()
            if assignment:
                (self._consumer.pause if paused else self._consumer.resume)(assignment)
            self._paused = paused
            self._reassigned = False
        return paused or not stop

    def _ingest(self, msgs: list[Any]) -> int:
        """Take a consumed batch into the pending table; returns how many records it held (errors aside)."""
        # The per-record hot path of the engine thread: keep it to decoding and one table insert.
        # Records are decoded before the lock is taken (the stage loop takes it for every item, on
        # the event loop); only this thread changes the assignment, so it can be read unlocked.
        now = time.time()
        decode = self.queue.codec.decode
        assigned = self._assigned
        decoded: list[Entry | Any] = []  # an Entry, or a record that cannot be decoded
        add = decoded.append
        records = 0
        for m in msgs:
            if m.error() is not None:
                self._consume_error(m.error())
                continue
            records += 1
            p = m.partition()
            if p not in assigned:
                continue
            key, raw = m.key(), m.value()
            try:
                add(Entry(key.decode(), decode(raw), raw, p, m.offset(), now))
            except UnreadableRecord:  # another version's record: pending and held, never a dead letter
                add(self._held_entry(m, now) if key is not None else m)
            except Exception:
                add(m)
        dead = sum(1 for e in decoded if e.__class__ is not Entry)
        added = len(decoded) - dead
        with self.lock:
            if dead:
                batch: list[Entry] = []
                for e in decoded:
                    if e.__class__ is Entry:
                        batch.append(e)
                    else:
                        self.table.add_many(batch)  # what came before it, in order
                        batch.clear()
                        self._dead_on_arrival(e)
                self.table.add_many(batch)
            else:
                self.table.add_many(decoded)
            self._ingested += added + dead
            wake, self._wanted = self._wanted and added > 0, self._wanted and not added
        if dead and self.metrics is not None:
            self.metrics.dead_letters.inc(dead)
        if wake:
            self._wake()
        return records

    def _held_entry(self, m: Any, now: float) -> Entry:
        """The pending entry of an input record this instance cannot read (decoded again, naming where it
        is: the record is counted once and said in the error)."""
        p, o, raw = m.partition(), m.offset(), m.value()
        try:
            return Entry(m.key().decode(), self.queue.codec.decode(raw, source=kafka_source(self.topic, p, o)), raw, p, o, now)
        except UnreadableRecord as e:
            return Entry(m.key().decode(), None, raw, p, o, now, held=e)

    def _dead_on_arrival(self, m: Any) -> None:
        """An input record that cannot be decoded: finished at once, as a dead letter (caller holds the lock)."""
        p, o, key, raw = m.partition(), m.offset(), m.key(), m.value()
        id = key.decode(errors="replace") if key is not None else ""
        error: BaseException
        if key is None:
            error = DecodeError(f"record {self.topic}/{p}/{o} has no key (pipeteer keys records by item id)")
        elif raw is None:
            error = DecodeError(f"record {self.topic}/{p}/{o} (item {id!r}) has no value")
        else:
            try:
                key.decode()
                self.queue.codec.decode(raw, source=kafka_source(self.topic, p, o))
                error = DecodeError(f"record {self.topic}/{p}/{o} (item {id!r}) could not be read")
            except Exception as e:  # the decoder's own error, naming the record
                error = e
        self.table.consumed_done(p, o, (self.dead_letter(id, raw, error, p, o, 0),))

    def _read_held(self) -> None:
        """Try again to read the items held as unreadable: their writer schema may be published by now
        (a newer version upstream started), and then they are served like any other."""
        with self.lock:
            held = self.table.held()
        if not held:
            return
        decode = self.queue.codec.decode
        readable = 0
        for e in held:
            try:
                value = decode(e.raw, source=kafka_source(self.topic, e.partition, e.offset))
            except UnreadableRecord:
                continue
            except Exception as exc:  # (bytes no version can read: they stay held, and say so)
                e.held = exc
                continue
            with self.lock:
                if self.table.entries.get(e.id) is e:
                    e.value, e.held = value, None
                    readable += 1
        if readable:
            log.info("stage %r: %d held item(s) can be read now; serving them", self.stage_name, readable)
            with self.lock:
                wake, self._wanted = self._wanted, False
            if wake:
                self._wake()

    def held(self) -> list[Entry]:
        """The items this instance holds because it cannot read them (another version's), oldest first."""
        with self.lock:
            return self.table.held()

    def unreadable(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are held (see `held`), looked up one by one: a console's page, not the table."""
        entries = self.table.entries
        with self.lock:
            return {id for id in ids if (e := entries.get(id)) is not None and e.held is not None}

    def _commit(self) -> None:
        """Commit the open transaction: outputs, changelog writes and input offsets, atomically."""
        with self.lock:
            self._open = False
            plan = self.table.plan_commit()
            self._finished_seen = 0
            self._committing, self._waiters = self._waiters, []
        if plan.finished or plan.records or plan.offsets:
            self.progress.waiting(f"a commit of {plan.finished} finished item(s)", time.monotonic())
        self.txn.produce(plan.records)
        started = time.monotonic()
        took = self.txn.commit(self.topic, plan.offsets, self._consumer.consumer_group_metadata)
        self.progress.made(time.monotonic())
        if took is not None:
            self._pace.committed(time.monotonic() - started)  # (the offsets included)
            self._reachable()  # (a commit with nothing in it asks nothing of the brokers: it proves nothing)
            if self.metrics is not None:
                self.metrics.commit.observe(took)
        self.committed_items += plan.finished
        self._ingested = 0
        self._last_commit = time.monotonic()
        waiters, self._committing = self._committing, []
        self._settle(waiters, None)

    def _on_transaction_error(self, e: KafkaException) -> None:
        """A client call of the loop failed (`faults.classify` says what to do): the producer is replaced
        after a fatal error, the consumer too when it is the one fenced; otherwise the transaction is
        aborted. Either way the input is rewound to the last commit: nothing is lost or duplicated."""
        err = error_of(e)
        fault = classify_exception(e, "producer")
        if fault is Fault.CONSUMER:  # (e.g. the offsets refused: this member was fenced)
            self._consumer_fault = err
        if self.metrics is not None:
            self.metrics.commit_failures.inc()
        self.progress.failed(str(err or e))
        # A fault of the cluster that outlasted the commit's tries: a new producer looks for the transaction
        # coordinator afresh (and its start aborts the open transaction); an abort would ask the old one.
        fatal = fault in (Fault.PRODUCER, Fault.RETRY, Fault.UNREACHABLE)
        how = "recreating the producer" if fatal else "aborting"
        if fault in (Fault.RETRY, Fault.UNREACHABLE):  # a fault of the cluster: said per broker by the watch
            self.backend.watch.limiter.log(logging.WARNING, f"stage {self.stage_name!r}: transaction failed ({err}); {how}",
                                           key=f"{self.stage_name} transaction {err.code() if err else e}")
        else:
            log.warning("stage %r: transaction failed (%s); %s", self.stage_name, err, how)
        self._recover(fatal=fatal, error=e)

    def _recover(self, *, fatal: bool, error: BaseException | None) -> None:
        """Abort (or recreate the producer), then rewind: restore from the changelog, seek to committed offsets."""
        self.progress.waiting(f"a recovery after {error_of(error) or error}" if error else "a recovery", time.monotonic())
        self._close_transaction()
        self.txn.abort(fatal)
        self._reset_state(CommitAborted(f"{self.queue.describe()}: transaction aborted ({error}); try again"))
        assignment = [tp.partition for tp in self._consumer.assignment()]
        self._restore(assignment)
        if assignment:
            self._ever_assigned = True  # a restore that failed in `_on_assign` is done now
            self._wake()
            for tp in committed(self._consumer, self.topic, assignment):
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                try:
                    self._consumer.seek(TopicPartition(self.topic, tp.partition, offset))
                except KafkaException as e:
                    log.warning(
                        "stage %r: seek %s/%d failed: %s", self.stage_name, self.topic, tp.partition, e
                    )
        self._ingested = 0
        self._last_commit = time.monotonic()

    def _reset_state(self, error: BaseException) -> None:
        with self.lock:
            dropped = self.table.clear()
            self._remember_dropped(dropped)
            waiters = self._committing + self._waiters
            self._committing, self._waiters = [], []
            self._finished_seen = 0  # (the table's count starts again from nothing)
            room = self._take_room()
        self._settle(waiters, error)
        self._settle(room, None)  # (the stage goes on: what it had finished is rewound and read again)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        log.info("stage %r: assigned %s partitions %s", self.stage_name, self.topic, ps)
        self._reassigned = True
        if self.metrics is not None:
            self.metrics.rebalances.inc()
        try:
            self._restore(ps)
        except Exception:
            # The partitions stay assigned (the client assigns them whatever this callback does):
            # the error reaches the loop, whose recovery restores them again (`_recover`).
            log.exception("stage %r: restoring the pending table failed", self.stage_name)
            raise
        self._ever_assigned = True
        self.progress.made(time.monotonic())
        self._wake()

    def _restore(self, partitions: list[int]) -> None:
        """Read the changelog partitions to their end (read_committed) into the pending table."""
        self._restoring = True
        self.progress.waiting(f"the restore of partitions {sorted(partitions)} from {self.changelog}", time.monotonic())
        try:
            restored = read_changelog(self._restorer, self.changelog, partitions, self.queue.codec, self.stage_name)
            with self.lock:
                for p in partitions:
                    self.table.assign(p, restored.get(p, {}).values())
                self._assigned.update(partitions)
        finally:
            self._restoring = False

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        log.info("stage %r: revoked %s partitions %s", self.stage_name, self.topic, ps)
        try:
            self._commit()
        except KafkaException as e:
            log.warning("stage %r: commit on revocation failed (%s); aborting", self.stage_name, e)
            err = e.args[0] if e.args else None
            self._close_transaction()
            self.txn.abort(isinstance(err, KafkaError) and err.fatal())
            self._reset_state(
                CommitAborted(f"{self.queue.describe()}: partitions revoked before the commit; try again")
            )
            with self.lock:
                self._assigned.difference_update(ps)
            return
        self._forget(ps)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        log.warning("stage %r: lost partitions %s", self.stage_name, ps)
        self._close_transaction()
        self.txn.abort(False)
        self._reset_state(CommitAborted(f"{self.queue.describe()}: partitions lost; try again"))
        with self.lock:
            self._assigned.difference_update(ps)
        self._waiting_input = []

    def _forget(self, ps: list[int]) -> None:
        with self.lock:
            dropped = self.table.drop(ps)
            self._remember_dropped(dropped)
            keep = [(f, p) for f, p in self._waiters if p not in ps]
            lost = [(f, p) for f, p in self._waiters if p in ps]
            self._waiters = keep
            self._assigned.difference_update(ps)
        self._settle(
            lost, CommitAborted(f"{self.queue.describe()}: partition moved to another instance; try again")
        )

    def _remember_dropped(self, dropped: list[Entry]) -> None:
        if len(self._dropped_streamed) > 10_000:
            self._dropped_streamed.clear()
        self._dropped_streamed.update((e.id, e) for e in dropped if e.streamed)

    def _shutdown(self) -> None:
        try:
            self._commit()
        except KafkaException as e:
            log.warning("stage %r: final commit failed: %s", self.stage_name, e)
            with contextlib.suppress(Exception):
                self.txn.producer.abort_transaction(10)
        with self.lock:
            room = self._take_room()
        self._settle(room, None)  # (a stage loop still waiting for room goes on, to its end)
        for close in (self._consumer.close, self._restorer.close):
            try:
                close()
            except Exception as e:  # closing must go on whatever the broker says
                log.warning("stage %r: close: %s", self.stage_name, e)
        # Drop the clients now: a librdkafka handle keeps reconnecting (and logging) until destroyed,
        # and something may keep this engine alive (its metrics' callback does).
        self.txn.drop()
        self._consumer = self._restorer = None


Callback = Callable[[], None]
