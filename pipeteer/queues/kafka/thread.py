"""The thread of a Kafka stage engine: start-up, the consume-commit loop, recovery and rebalances.

The client is synchronous, so one thread per engine owns the consumer (and the restorer that reads
the changelog) and drives the transactional producer. Its loop: consume a batch -> decode it into the
pending table (`ingest`; undecodable records go straight to the dead-letter topic) -> produce what
was finished while the transaction was closed (during a commit) -> commit when due.

Errors are answered as `faults.classify` says: a fault of the cluster (a leader or coordinator
moving, a broker away) is retried with the same clients; an abortable one aborts the transaction
and rewinds (the pending table is rebuilt from the changelog and the consumer seeks back to the
committed offsets, so everything since the last commit is consumed and processed again); a fatal one
recreates the producer (fenced by a newer instance with the same transactional id) or the consumer
(a static member fenced after its session expired), which rejoins its group. On partition
revocation the engine commits first, then forgets the partitions; on assignment it restores their
pending items from the changelog before any new input of theirs is read. The thread tells its
`Progress` what waits for it and when it made progress: the service's watchdog judges a stall
(`pipeteer.queues.progress`).

Every attribute set in `EngineThread.__init__` is written by this thread alone (the client's
callbacks run on it, inside `consume` and `poll`); the event loop reads a few of them
(`unready_reason`, `stall`, `backlog`). What both sides change lives on the engine, under its lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from pipeteer.errors import BrokerUnreachable, CommitAborted
from pipeteer.queues.base import HELD_RECHECK_SECONDS
from pipeteer.queues.kafka.changelog import committed, restore_consumer, stage_consumer
from pipeteer.queues.kafka.faults import Client, Fault, classify, classify_exception, error_of
from pipeteer.queues.kafka.flow import FlowControl, batch_size
from pipeteer.queues.kafka.health import translate
from pipeteer.queues.kafka.ingest import dead_on_arrival, decode_batch, reread
from pipeteer.queues.kafka.pace import Pace
from pipeteer.queues.kafka.pending import Entry
from pipeteer.queues.kafka.rebalance import Rebalance
from pipeteer.queues.kafka.signals import ClientSignals
from pipeteer.queues.progress import Progress, Stall

if TYPE_CHECKING:
    from pipeteer.queues.kafka.engine import StageEngine

log = logging.getLogger("pipeteer.kafka")

LAG_EVERY = 1.0
BUSY_POLL = 0.005
"""How long the engine waits for input while the stage is finishing items (their outputs go out
between waits); an idle stage waits up to the commit interval."""
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


class EngineThread:
    """The thread that consumes, commits and recovers for one `StageEngine`."""

    def __init__(self, engine: StageEngine) -> None:
        self.engine = engine
        self.host = engine.backend
        self.settings = engine.backend.settings
        self.tx = self.settings.transactions
        self.name = engine.stage_name
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._attempted = threading.Event()  # set after each start-up attempt, failed or not
        self._start_error: BaseException | None = None
        self._consumer: Any = None
        self.restorer: Any = None
        self._busy = False
        self._finished_seen = 0
        self._pace = Pace()
        self._flow = FlowControl(self.tx.max_pending, self.tx.max_pending_bytes)
        self._ingested = 0
        self._last_commit = time.monotonic()
        self._last_lag = 0.0
        self._held_checked = 0.0
        self.progress = Progress(time.monotonic())
        """What waits for this instance and when it last made progress (`stall`: the watchdog's facts)."""
        self.signals = ClientSignals(self.host.watch, self.progress, self.name, engine.topic)
        self.rebalance = Rebalance(self)
        self.committed_items = 0
        """Items finished (emitted, dead-lettered or popped) and committed by this engine so far."""

    @property
    def backlog(self) -> int:
        return self.signals.backlog

    # --- asked from the event loop --------------------------------------------------------------

    async def started(self) -> None:
        """Start the thread (once) and wait until the producer and consumer are set up."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"pipeteer-kafka:{self.name}", daemon=True)
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

    def stop(self, timeout: float) -> None:
        """Commit what is finished, leave the group, stop the thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def unready_reason(self) -> str | None:
        watch, e = self.host.watch, self.engine
        down = watch.reason()
        if self.signals.down_since is not None or (down and not self._started.is_set()):
            return f"stage {self.name!r}: " + (down or f"Kafka brokers at {watch.bootstrap} unreachable")
        if not self._started.is_set():
            error = f" (last attempt: {self._start_error})" if self._start_error is not None else ""
            return f"stage {self.name!r}: starting on {e.topic}{error}"
        if not self.rebalance.ever_assigned:
            return f"stage {self.name!r}: waiting for partitions of {e.topic} (consumer group {e.group})"
        if self.rebalance.restoring:
            return f"stage {self.name!r}: restoring its pending items from {e.changelog}"
        return None

    def stall(self) -> Stall | None:
        watch = self.host.watch
        outage = self.signals.down_since is not None or watch.reason() is not None or watch.all_down()
        return self.progress.stall(self.name, time.monotonic(), outage=outage)

    # --- start-up and the loop ------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self.progress.waiting("its start-up (topics, producer, consumer group)", time.monotonic())
            try:
                self._set_up()
                break
            except BaseException as e:
                self._start_error = self._say_failure(e, "producer", f"cannot start on {self.engine.topic}")
                self._attempted.set()
                self._stop.wait(self._pause(e, attempt))
                attempt += 1
        else:  # stopped before it could start
            self._attempted.set()
            for client in (self._consumer, self.restorer):
                with contextlib.suppress(Exception):
                    if client is not None:
                        client.close()
            self._consumer = self.restorer = None
            self.engine.txn.drop()
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
                log.exception("stage %r: unexpected error in the Kafka loop; rewinding", self.name)
                self._fresh_restorer()
        self._shutdown()

    def _say_failure(self, e: BaseException, client: Client, what: str) -> BaseException:
        """Log a failed start-up or recovery once, in the words its kind calls for (no traceback for a
        fault of the cluster: a broker away, a coordinator moving), and note it for the watchdog."""
        err = error_of(e)
        self.progress.failed(str(err or e))
        watch = self.host.watch
        if err is not None and classify(err, client) is Fault.RETRY:  # (one broker away, a leader moving: not an outage)
            watch.limiter.log(logging.WARNING, f"stage {self.name!r}: {what}: {err.str()}",
                              key=f"{self.name} {what} {err.code()}")
            return e
        error = translate(e, watch.bootstrap)
        if isinstance(error, BrokerUnreachable):  # said once by the watch
            watch.down(error.error)
        else:
            log.error("stage %r: %s", self.name, what, exc_info=e)
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
        old, self.restorer = self.restorer, None
        with contextlib.suppress(Exception):
            if old is not None:
                old.close()
        with contextlib.suppress(Exception):
            self.restorer = restore_consumer(self.settings, self.engine.group)

    def _set_up(self) -> None:
        """Topics, clients, group subscription and transactional producer (each made once, so a retry goes on)."""
        e = self.engine
        log.info("stage %r: starting on %s as instance %r", self.name, e.topic, self.settings.instance)
        self.host.ensure_topics_sync(self.host.known_topics() | {e.topic}, extra_stage=e.stage)
        if self.restorer is None:
            self.restorer = restore_consumer(self.settings, e.group)
        if self._consumer is None:
            self._consumer = self._make_consumer()
        # The group join proceeds in the client's background threads meanwhile; partitions are
        # only restored (in `_on_assign`, called from `consume`) after the zombie is fenced.
        e.txn.open()
        self.signals.reachable()
        log.info("stage %r: producer %r ready; joining group %s", self.name, e.transactional_id, e.group)

    def _make_consumer(self) -> Any:
        """The stage's group consumer, subscribed (it joins the group at its next `consume`)."""
        consumer = stage_consumer(self.settings, self.engine.group, self.signals.on_consumer_error,
                                  stats=self._on_stats, stats_interval_ms=STATS_INTERVAL_MS)
        r = self.rebalance
        consumer.subscribe([self.engine.topic], on_assign=r.on_assign, on_revoke=r.on_revoke, on_lost=r.on_lost)
        return consumer

    def _on_stats(self, text: str) -> None:
        self.signals.on_stats(text, self.engine.assigned)

    def on_producer_error(self, err: KafkaError) -> None:
        self.signals.on_producer_error(err)

    def _step(self) -> None:
        # While the stage is finishing items, the engine looks at least every BUSY_POLL whether a
        # commit is due (and produces what was finished while the transaction was closed):
        # `consume` cannot be woken when the stage is done, and with all input already consumed (a
        # backlog within `max_pending`) it would otherwise wait its whole timeout every time.
        e, table = self.engine, self.engine.table
        if self.signals.consumer_fault is not None:
            self._rebuild_consumer()
        if self.signals.producer_fault is not None:
            err, self.signals.producer_fault = self.signals.producer_fault, None
            log.warning("stage %r: the producer cannot go on (%s): making a new one", self.name, err.str())
            self._recover(fatal=True, error=KafkaException(err))
        timeout = BUSY_POLL if self._busy else min(self.tx.interval, 0.1)
        intake = self._flow.intake(len(table), table.bytes, now=time.monotonic(), reassigned=self.rebalance.reassigned)
        if intake.pause is not None:
            assignment = self._consumer.assignment()
            if assignment:
                (self._consumer.pause if intake.pause else self._consumer.resume)(assignment)
            self.rebalance.reassigned = False
        if intake.consume:
            asked = batch_size(len(table), table.bytes, self.tx.max_pending, self.tx.max_pending_bytes)
            msgs = self._consumer.consume(asked, timeout)
            # fewer than asked: `consume` waited its timeout and no more came (the input ran dry)
            dry = len(msgs) < asked
        else:
            dry = False
            msgs = []
            time.sleep(BUSY_POLL)
        if msgs and self._ingest(msgs):  # (records, not only errors: proof that the cluster answers)
            self.signals.reachable()
            self.progress.made(time.monotonic())
        e.txn.poll()  # (delivery reports: acknowledged records make room in the producer)
        e.open_transaction()
        finished = table.finished
        left = len(table.entries)
        working = e.streaming and not e.starved and left > 0
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
            or (finished and not msgs and (e.starved or e.waiters))
        )
        due = now_due or (
            (
                finished >= self.tx.records
                or e.txn.bytes >= TXN_BYTES
                or (now - self._last_commit >= self.tx.interval and (finished or self._ingested or e.txn.produced))
            )
            # ... unless the input ran dry and the stage will have finished what is left before
            # this commit would end: the last items would then wait for it and for one more
            # (see `pace`); the commit begins when the stage has finished, with everything
            and not (dry and working and self._pace.finishing_first(left))
        )
        if due:
            self.commit()
            e.open_transaction()
        if now - self._held_checked >= HELD_RECHECK_SECONDS:
            self._held_checked = now
            self._read_held()
        self.progress.waiting(self._waiting(), now)
        if now - self._last_lag >= LAG_EVERY:
            self._last_lag = now  # (the lag itself is measured from the cluster: pipeteer.queues.kafka.lag)
            if self.signals.down_since is not None:  # an idle stage learns that the broker is back
                with contextlib.suppress(KafkaException):
                    self._consumer.list_topics(e.topic, timeout=1)
                    self.signals.reachable()

    def _waiting(self) -> str | None:
        """What waits for this instance now, in words (None: nothing; it is idle): finished items to
        commit, or records on its partitions while it takes input (flow control holding the input back,
        for people who are behind, is not a stall)."""
        if self.engine.table.finished or self.engine.txn.produced:
            return f"a commit of {self.engine.table.finished} finished item(s)"
        if self.signals.waiting and not self._flow.holding:
            return f"records on partitions {self.signals.waiting} of {self.engine.topic}"
        return None

    def _ingest(self, msgs: list[Any]) -> int:
        """Take a consumed batch into the pending table; returns how many records it held (errors aside)."""
        # The per-record hot path of the engine thread: keep it to decoding and one table insert.
        # Records are decoded before the lock is taken (the stage loop takes it for every item, on
        # the event loop); only this thread changes the assignment, so it can be read unlocked.
        e = self.engine
        batch = decode_batch(msgs, e.queue.codec, e.topic, e.assigned, time.time())
        for err in batch.errors:
            self.signals.on_consume_error(err)
        decoded, dead = batch.decoded, batch.dead
        with e.lock:
            if dead:
                run: list[Entry] = []
                for d in decoded:
                    if d.__class__ is Entry:
                        run.append(d)
                    else:
                        e.table.add_many(run)  # what came before it, in order
                        run.clear()
                        id, error = dead_on_arrival(d, e.queue.codec, e.topic)
                        p, o = d.partition(), d.offset()
                        e.table.consumed_done(p, o, (e.dead_letter(id, d.value(), error, p, o, 0),))
                e.table.add_many(run)
            else:
                e.table.add_many(decoded)
            self._ingested += len(decoded)
            wake = e.take_wanted(len(decoded) > dead)
        if dead and e.metrics is not None:
            e.metrics.dead_letters.inc(dead)
        if wake:
            e.wake()
        return batch.records

    def _read_held(self) -> None:
        """Try again to read the items held as unreadable: their writer schema may be published by now
        (a newer version upstream started), and then they are served like any other."""
        e = self.engine
        with e.lock:
            held = e.table.held()
        if not held:
            return
        readable = 0
        for entry, value in reread(held, e.queue.codec, e.topic):
            with e.lock:
                if e.table.entries.get(entry.id) is entry:
                    entry.value, entry.held = value, None
                    readable += 1
        if readable:
            log.info("stage %r: %d held item(s) can be read now; serving them", self.name, readable)
            with e.lock:
                wake = e.take_wanted()
            if wake:
                e.wake()

    def commit(self) -> None:
        """Commit the open transaction: outputs, changelog writes and input offsets, atomically."""
        e = self.engine
        with e.lock:
            e.open = False
            plan = e.table.plan_commit()
            self._finished_seen = 0
            e.committing, e.waiters = e.waiters, []
        if plan.finished or plan.records or plan.offsets:
            self.progress.waiting(f"a commit of {plan.finished} finished item(s)", time.monotonic())
        e.txn.produce(plan.records)
        started = time.monotonic()
        took = e.txn.commit(e.topic, plan.offsets, self._consumer.consumer_group_metadata)
        self.progress.made(time.monotonic())
        if took is not None:
            self._pace.committed(time.monotonic() - started)  # (the offsets included)
            self.signals.reachable()  # (a commit with nothing in it asks nothing of the brokers: it proves nothing)
            if e.metrics is not None:
                e.metrics.commit.observe(took)
        self.committed_items += plan.finished
        self._ingested = 0
        self._last_commit = time.monotonic()
        with e.lock:
            waiters, e.committing = e.committing, []
        e.settle(waiters, None)

    # --- recovery -------------------------------------------------------------------------------

    def _on_transaction_error(self, exc: KafkaException) -> None:
        """A client call of the loop failed (`faults.classify` says what to do): the producer is replaced
        after a fatal error, the consumer too when it is the one fenced; otherwise the transaction is
        aborted. Either way the input is rewound to the last commit: nothing is lost or duplicated."""
        err = error_of(exc)
        fault = classify_exception(exc, "producer")
        if fault is Fault.CONSUMER:  # (e.g. the offsets refused: this member was fenced)
            self.signals.consumer_fault = err
        if self.engine.metrics is not None:
            self.engine.metrics.commit_failures.inc()
        self.progress.failed(str(err or exc))
        # A fault of the cluster that outlasted the commit's tries: a new producer looks for the transaction
        # coordinator afresh (and its start aborts the open transaction); an abort would ask the old one.
        fatal = fault in (Fault.PRODUCER, Fault.RETRY, Fault.UNREACHABLE)
        how = "recreating the producer" if fatal else "aborting"
        if fault in (Fault.RETRY, Fault.UNREACHABLE):  # a fault of the cluster: said per broker by the watch
            self.host.watch.limiter.log(logging.WARNING, f"stage {self.name!r}: transaction failed ({err}); {how}",
                                        key=f"{self.name} transaction {err.code() if err else exc}")
        else:
            log.warning("stage %r: transaction failed (%s); %s", self.name, err, how)
        self._recover(fatal=fatal, error=exc)

    def _recover(self, *, fatal: bool, error: BaseException | None) -> None:
        """Abort (or recreate the producer), then rewind: restore from the changelog, seek to committed offsets."""
        e = self.engine
        self.progress.waiting(f"a recovery after {error_of(error) or error}" if error else "a recovery", time.monotonic())
        e.close_transaction()
        e.txn.abort(fatal)
        self.reset_state(CommitAborted(f"{e.queue.describe()}: transaction aborted ({error}); try again"))
        assignment = [tp.partition for tp in self._consumer.assignment()]
        self.rebalance.restore(assignment)
        if assignment:
            self.rebalance.ever_assigned = True  # a restore that failed in `on_assign` is done now
            e.wake()
            for tp in committed(self._consumer, e.topic, assignment):
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                try:
                    self._consumer.seek(TopicPartition(e.topic, tp.partition, offset))
                except KafkaException as exc:
                    log.warning("stage %r: seek %s/%d failed: %s", self.name, e.topic, tp.partition, exc)
        self._ingested = 0
        self._last_commit = time.monotonic()

    def reset_state(self, error: BaseException) -> None:
        """Drop the pending table (it is restored from the changelog): items completed by id and not
        committed fail with `error` (their pages say "try again"); a stage loop waiting for room goes on."""
        e = self.engine
        with e.lock:
            e.remember_dropped(e.table.clear())
            waiters = e.committing + e.waiters
            e.committing, e.waiters = [], []
            self._finished_seen = 0  # (the table's count starts again from nothing)
            room = e.take_room()
        e.settle(waiters, error)
        e.settle(room, None)  # (the stage goes on: what it had finished is rewound and read again)

    def _rebuild_consumer(self) -> None:
        """The consumer met a fatal error (fenced as a static member whose session expired, `_FATAL`):
        abort what is open, drop the pending table, and make a new consumer, which joins the group again;
        the partitions it is given are restored from the changelog as on any assignment."""
        e = self.engine
        err, self.signals.consumer_fault = self.signals.consumer_fault, None
        log.warning("stage %r: the consumer of group %s cannot go on (%s): making a new one, which rejoins the group",
                    self.name, e.group, err.str() if err is not None else "?")
        e.close_transaction()
        e.txn.abort(False)
        self.reset_state(CommitAborted(f"{e.queue.describe()}: the stage's consumer was replaced; try again"))
        with e.lock:
            e.assigned.clear()
        self.signals.waiting = []
        old, self._consumer = self._consumer, None
        try:
            old.close()
        except Exception as exc:  # (a fenced consumer may refuse to leave: it is dropped all the same)
            log.info("stage %r: closing the old consumer: %s", self.name, exc)
        self.rebalance.ever_assigned = False
        self._consumer = self._make_consumer()
        self._last_commit = time.monotonic()

    def _shutdown(self) -> None:
        e = self.engine
        try:
            self.commit()
        except KafkaException as exc:
            log.warning("stage %r: final commit failed: %s", self.name, exc)
            with contextlib.suppress(Exception):
                e.txn.producer.abort_transaction(10)
        with e.lock:
            room = e.take_room()
        e.settle(room, None)  # (a stage loop still waiting for room goes on, to its end)
        for close in (self._consumer.close, self.restorer.close):
            try:
                close()
            except Exception as exc:  # closing must go on whatever the broker says
                log.warning("stage %r: close: %s", self.name, exc)
        # Drop the clients now: a librdkafka handle keeps reconnecting (and logging) until destroyed,
        # and something may keep this engine alive (its metrics' callback does).
        e.txn.drop()
        self._consumer = self.restorer = None
