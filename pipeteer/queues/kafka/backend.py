"""`kafka://host:port`: every queue a topic keyed by item id, every stage a transactional consumer.

A `KafkaQueue` is lazy: making one does no I/O. Pushing produces to its topic (an idempotent
producer, acks=all, awaited until the broker has it). Reading it (`read`, `items`, `read(id)`,
`pop`, or a stage's `move`) makes this process a consumer of it: a `StageEngine` joins the
reading stage's consumer group and serves the pending items of the partitions it owns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from pipeteer.codec import SchemaCatalog, catalogs, make_codec
from pipeteer.codec.claimcheck import ClaimCheck, claim_check_from
from pipeteer.codec.registry import ConfluentCodec
from pipeteer.errors import ConfigError, QueueError, RecordTooLarge
from pipeteer.plan import INPUT, OUTPUT_QUEUE, Plan, TopicNames
from pipeteer.queues.base import (
    NO_HOOKS,
    Backend,
    BaseQueue,
    DeadLetter,
    Held,
    Pending,
    QueueHooks,
    check_page,
    take_turn,
    turn_due,
)
from pipeteer.queues.kafka import health
from pipeteer.queues.kafka.blobrefs import referenced_kafka
from pipeteer.queues.kafka.config import KafkaSettings
from pipeteer.queues.kafka.deadletters import DeadLetterTopic
from pipeteer.queues.kafka.engine import StageEngine
from pipeteer.queues.kafka.faults import error_of
from pipeteer.queues.kafka.lag import LagMonitor, StageInput
from pipeteer.queues.kafka.pending import Entry
from pipeteer.queues.kafka.schemas import KafkaCatalog, RegistryCatalog
from pipeteer.queues.observe import Meters, StageMeters
from pipeteer.queues.progress import Stall
from pipeteer.settings import mask_url
from pipeteer.topics import topic_configs

log = logging.getLogger("pipeteer.kafka")

T = TypeVar("T")
U = TypeVar("U")
R = TypeVar("R")

RECORD_FRAMING = 64
"""Bytes a record takes beyond its key and value, at most (librdkafka counts 36 for a short key)."""
PUSH_TIMEOUT_MS = 60_000
"""A push not acknowledged by the broker within this time fails (instead of waiting forever)."""

METADATA_TRY = 2.0
"""Seconds of one metadata request while creating topics (repeated up to the operation's timeout)."""


class KafkaBackend(Backend):
    """The Kafka backend of one workflow: makes its queues and owns their clients.

    It serves the workflow's plan (`bind`): the consumer group, changelog and dead letters of a queue
    are named by the stage reading it, so every path to the same workflow (`pipeteer.connect`,
    `make_queues(..., backend.make_queue)`, `backend_from_url(url, plan=...)`) reads with the same
    groups. Unbound, it makes only the workflow's input and output queues (for pushing, as the
    project page does before `make_queues` binds) and reads nothing. `standalone=True` makes queues
    of no workflow, each read by a group named after its own path (tests and tools).

    >>> from pipeteer.plan import Plan
    >>> from pipeteer.spec import Pipeline, Workflow
    >>> wf = Workflow(int, str, pipelines={"square": Pipeline(int, float), "fmt": Pipeline(float, str)}, name="calc")
    >>> b = KafkaBackend.from_url("kafka://localhost:9092?prefix=t", plan=Plan.of(wf), env={})
    >>> b.make_queue(int, ["input"]).topic, b.names.group(b.reader_of(["input"]))
    ('t.calc.input', 't.calc.stage.square')
    """

    reports_metrics = True
    moves_back = False
    """Each stage engine measures its oldest pending age and counts its dead letters (see `use_metrics`)."""

    def __init__(self, url: str, settings: KafkaSettings, *, workflow_name: str, standalone: bool = False,
                 hooks: QueueHooks = NO_HOOKS) -> None:
        self.url = mask_url(url)
        """The backend URL with secrets masked (it is printed and logged)."""
        self.settings = settings
        self.workflow_name = workflow_name
        self.names = TopicNames(workflow_name, settings.connection.prefix)
        self.plan: Plan | None = None
        """The workflow's plan, once bound: which stage reads each queue (see `reader_of`)."""
        self.standalone = standalone
        """Queues of no workflow (never bound): each read by a stage named after its own path."""
        self.hooks = hooks
        """The stages' retry policy, when a service gives one (its dead letters: each engine counts them)."""
        self.watch = health.watch(settings.connection.bootstrap_servers)
        """Whether the cluster answers, and why not (shared by every client of the process)."""
        self.queues: dict[tuple[str, ...], KafkaQueue[Any]] = {}
        self.engines: dict[tuple[str, ...], StageEngine] = {}
        self._created: set[str] = set()
        self._admin: AdminClient | None = None
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._metrics: Meters | None = None
        self._lag: LagMonitor | None = None
        self._ensuring = asyncio.Lock()
        self._claim: ClaimCheck | None = None
        self._catalog: SchemaCatalog | None = None
        self.record_limit = settings.connection.record_limit  # (read once: checked on every move)

    def claim_check(self) -> ClaimCheck | None:
        """The claim check (`blobs=` / `PIPETEER_BLOBS`: a shared directory or `s3://bucket/prefix`),
        made once; None when not configured."""
        if self._claim is None and self.settings.blobs:
            self._claim = claim_check_from(
                self.settings.blobs, self.settings.claim_check_bytes, where=f"backend {self.url!r}"
            )
        return self._claim

    def referenced_blob_keys(self) -> set[str]:
        """The blob keys the workflow's topics still reference, each read from its stage's committed
        offset on, changelogs and dead letters whole (`kafka.blobrefs`)."""
        return referenced_kafka(self)

    def schema_catalog(self) -> SchemaCatalog:
        """The workflow's schemas topic (`pipeteer.queues.kafka.schemas`), attached to this process's
        catalogs; with a schema registry, the registry (records carry its schema ids)."""
        with self._lock:
            if self._catalog is None:
                if self.settings.schema_registry:
                    self._catalog = RegistryCatalog(
                        lambda: [q.codec for q in list(self.queues.values()) if isinstance(q.codec, ConfluentCodec)])
                else:
                    topic = self.names.schemas()
                    self._catalog = KafkaCatalog(self.settings, topic, lambda: self.ensure_topics_sync([topic]))
                catalogs.attach(self._catalog)
            return self._catalog

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        workflow_name: str | None = None,
        env: Mapping[str, str] | None = None,
        plan: Plan | None = None,
        standalone: bool = False,
        hooks: QueueHooks = NO_HOOKS,
    ) -> KafkaBackend:
        """The backend `url` names, bound to `plan` when given (`workflow_name` is then the plan's),
        or `standalone` (see the class)."""
        if workflow_name is None:
            if plan is None:
                raise ConfigError(f"kafka backend {mask_url(url)!r}: name its workflow (workflow_name= or plan=)")
            workflow_name = plan.workflow.name
        backend = cls(url, KafkaSettings.from_url(url, env), workflow_name=workflow_name, standalone=standalone,
                      hooks=hooks)
        if plan is not None:
            backend.bind(plan)
        return backend

    def __repr__(self) -> str:
        return f"KafkaBackend({self.settings.connection!r}, workflow={self.workflow_name!r})"

    # --- wiring hooks -------------------------------------------------------------------------

    def bind(self, plan: Plan, /) -> None:
        """Serve the workflow of `plan`: consumer groups and side topics are named by the stage reading each queue."""
        if plan.workflow.name != self.workflow_name or self.standalone:
            what = "standalone queues" if self.standalone else f"workflow {self.workflow_name!r}"
            raise ConfigError(f"kafka backend {self.url!r} of {what} cannot serve workflow {plan.workflow.name!r}")
        super().bind(plan)

    def use_metrics(self, metrics: Meters) -> None:
        """Report to a `pipeteer.runtime.metrics.Metrics` (rebalances, commit latency, lag, dead letters, ...).

        The consumer lag of every stage of the workflow is measured from the cluster (see `lag`)."""
        self._metrics = metrics
        if self._lag is None and self.plan is not None:
            stages = [StageInput("/".join(stage), self.names.queue(queue), self.names.group(stage))
                      for queue, stage in sorted(self.plan.readers().items())]
            self._lag = LagMonitor(self.admin, stages, self._report_lag, consumer=self.group_consumer,
                                   reachable=lambda: self.watch.reason() is None)
            self._lag.start()

    def group_consumer(self, group: str) -> Any:
        """A consumer of `group` that never subscribes nor commits: to ask the group's committed offsets."""
        from confluent_kafka import Consumer

        return Consumer(self.settings.connection.client_config("consumer", **{"group.id": group, "enable.auto.commit": False}))

    def _report_lag(self, stage: str, partition: int, lag: int) -> None:
        if self._metrics is not None:  # (the monitor starts once there are metrics)
            self._metrics.stage(stage).lag(partition).set(lag)

    def stage_metrics(self, stage: str) -> StageMeters | None:
        if self._metrics is None:
            return None
        m = self._metrics.stage(stage)
        m.export_measured()
        return m

    def reader_of(self, path: Sequence[str]) -> tuple[str, ...]:
        """The stage whose consumer group reads the queue at `path`: the plan's reader. A queue no stage
        reads (the workflow's output, or a standalone queue) is read as a stage of its own path.
        Unbound, `ConfigError`: the group would not be the one the workflow's stages read with."""
        if self.standalone:
            return tuple(path)
        reader = self._plan(f"read queue {'/'.join(path)!r}").reader(path)
        return tuple(path) if reader is None else reader

    def _plan(self, doing: str) -> Plan:
        if self.plan is None:
            raise ConfigError(
                f"kafka backend {self.url!r} of workflow {self.workflow_name!r} cannot {doing}: bind the "
                "workflow's plan first (pipeteer.connect or make_queues do, and "
                "backend_from_url(url, plan=Plan.of(workflow))); for queues of no workflow: "
                "KafkaBackend.from_url(url, workflow_name=..., standalone=True)"
            )
        return self.plan

    def make_queue(self, Type: Any, path: Sequence[str], /) -> KafkaQueue[Any]:
        """The queue at `path` (the same object for the same path). Unbound, only the workflow's input
        and output (`ConfigError` for others): the project page makes those before `make_queues` binds."""
        key = tuple(path)
        if not self.standalone and self.plan is None and key not in (INPUT, OUTPUT_QUEUE):
            self._plan(f"make queue {'/'.join(key)!r}")
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = KafkaQueue(self, Type, key)
        return q

    def ready(self) -> bool:
        """Every queue this process consumes is assigned, restored and reachable."""
        return all(e.ready() for e in self.engines.values())

    def unready_reasons(self) -> list[str]:
        """Why some queue this process consumes cannot serve now (empty: all can)."""
        return [r for e in self.engines.values() if (r := e.unready_reason()) is not None]

    def stalls(self) -> list[Stall]:
        """The stage engines of this process with work waiting and no progress on it (see `StageEngine.stall`)."""
        return [st for e in list(self.engines.values()) if (st := e.stall()) is not None]

    def close(self) -> None:
        """Commit and stop every stage engine, flush and stop the producer."""
        if self._lag is not None:
            self._lag.stop()
            self._lag = None
        for engine in list(self.engines.values()):
            engine.close()
        self.engines.clear()
        if self._catalog is not None:
            catalogs.detach(self._catalog)
            self._catalog.close()
            self._catalog = None
        for q in self.queues.values():
            q._started = q._opening = None
        self._closed.set()
        if self._producer is not None:
            self._producer.flush(10)
        for q in self.queues.values():
            q.codec.close()  # (a registry codec's HTTP client)
        if self._poller is not None:
            self._poller.join(5)
        # Drop the clients now: a librdkafka handle keeps reconnecting (and logging) until destroyed.
        self._producer = self._poller = self._admin = None

    # --- topics -------------------------------------------------------------------------------

    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self.settings.connection.client_config("admin"))
        return self._admin

    def known_topics(self) -> set[str]:
        return {q.topic for q in self.queues.values()}

    def ensure_topics_sync(self, topics: Iterable[str], *, extra_stage: Sequence[str] | None = None) -> None:
        """Create missing topics (if `create_topics` is on): data topics, and a stage's changelog and dead letters,
        each with the settings of its kind (`Topics.settings`: what `pipeteer describe APP --backend URL` prints)."""
        t = self.settings.topics
        wanted: dict[str, str] = {name: "data" for name in topics}
        wanted[self.names.schemas()] = "schemas"  # (every process publishes what it writes with there)
        if extra_stage is not None:
            wanted[self.names.changelog(extra_stage)] = "changelog"
            wanted[self.names.dead_letters(extra_stage)] = "dead-letter"
        with self._lock:
            missing = {k: v for k, v in wanted.items() if k not in self._created}
        if not missing:
            return
        existing = self._cluster_topics(timeout=30)
        to_create = {k: v for k, v in missing.items() if k not in existing}
        if to_create and t.create_missing:
            log.info("creating topics %s", sorted(to_create))
            settings = {name: t.settings(kind, f"topic {name!r}") for name, kind in to_create.items()}
            futures = self.admin().create_topics(
                [
                    NewTopic(name, int(s["partitions"]), int(s["replication.factor"]), config=topic_configs(s))
                    for name, s in settings.items()
                ],
                operation_timeout=30,
                request_timeout=30,
            )
            for name, fut in futures.items():
                try:
                    fut.result()
                except KafkaException as e:
                    err = error_of(e)
                    if err is None or err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise health.client_error(e, self.watch.bootstrap, f"creating topic {name!r}") from None
            self._wait_for_leaders(set(to_create))
        with self._lock:
            self._created.update(missing)

    def _cluster_topics(self, timeout: float) -> set[str]:
        """The cluster's topic names. Asked in short tries, serving the admin client's errors and logs
        between them, so that an unreachable cluster is known (and said) within seconds."""
        admin = self.admin()
        tries = max(int(timeout / METADATA_TRY), 1)
        for attempt in range(tries):
            try:
                return set(admin.list_topics(timeout=METADATA_TRY).topics)
            except KafkaException as e:
                if attempt == tries - 1:
                    raise health.translate(e, self.watch.bootstrap) from None
            finally:
                admin.poll(0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_for_leaders(self, topics: set[str], timeout: float = 30.0) -> None:
        """Until every partition of `topics` has a leader in the cluster's metadata.

        Kafka creates topics asynchronously: CreateTopics answers once the controller has
        created them, and brokers learn of them a moment later. A consumer that subscribes in
        that moment is told the topic does not exist and looks again only at its next metadata
        refresh (`topic.metadata.refresh.interval.ms`, 5 minutes by default), and a producer's
        first records wait for the leaders anyway.
        """
        deadline = time.monotonic() + timeout
        while True:
            listed = self.admin().list_topics(timeout=timeout).topics
            waiting = sorted(
                name for name in topics
                if name not in listed
                or listed[name].error is not None
                or not listed[name].partitions
                or any(p.leader < 0 for p in listed[name].partitions.values())
            )
            if not waiting:
                return
            if time.monotonic() >= deadline:
                raise QueueError(f"topics {waiting} have no partition leaders {timeout:.0f}s after they were created")
            time.sleep(0.1)

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        topics = set(topics)
        with self._lock:
            if topics <= self._created:
                return
        async with self._ensuring:  # many concurrent first pushes make one admin request
            await asyncio.to_thread(self.ensure_topics_sync, topics)

    # --- producing outside a stage --------------------------------------------------------------

    def producer(self) -> Producer:
        """The idempotent producer for pushes (acks=all), with a thread serving its delivery reports."""
        with self._lock:
            if self._producer is None:
                self._producer = Producer(
                    self.settings.connection.client_config(
                        "producer",
                        **{
                            "enable.idempotence": True,
                            "acks": "all",
                            "partitioner": "murmur2_random",
                            "linger.ms": 2,
                            "message.timeout.ms": PUSH_TIMEOUT_MS,
                        },
                    )
                )
                self._closed.clear()  # (a closed backend used again)
                self._poller = threading.Thread(
                    target=self._poll, args=(self._producer,), name="pipeteer-kafka-producer", daemon=True
                )
                self._poller.start()
            return self._producer

    def _poll(self, producer: Producer) -> None:
        while not self._closed.is_set():
            try:
                producer.poll(0.1)
            except Exception:  # a failing delivery callback must not stop the reports of all others
                log.exception("Kafka producer: delivery report handling failed")

    async def produce(self, topic: str, key: str, value: bytes) -> None:
        """Produce one record and wait until the broker acknowledged it (all in-sync replicas)."""
        await self.ensure_topics([topic])
        producer = self.producer()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            error = None if err is None else health.client_error(
                KafkaException(err), self.watch.bootstrap, f"pushing item {key!r} to topic {topic!r}")
            loop.call_soon_threadsafe(_settle, fut, error)

        while True:
            try:
                producer.produce(topic, value, key.encode(), on_delivery=delivered)
                break
            except BufferError:
                await asyncio.sleep(0.01)
        await fut

    def engine_for(self, queue: KafkaQueue[Any]) -> StageEngine:
        engine = self.engines.get(queue.path)
        if engine is None:
            self.schema_catalog()  # (attached: the engine's codec finds the writer schemas of other versions)
            engine = self.engines[queue.path] = StageEngine(self, queue, self.reader_of(queue.path))
        return engine


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


class KafkaQueue(BaseQueue[T]):
    """A queue on a Kafka topic; reading it makes this process one instance of the reading stage."""

    def __init__(self, backend: KafkaBackend, Type: Any, path: tuple[str, ...]) -> None:
        # the retry policy: the URL's (`retries=` and `retry_backoff*_ms=`, as on every backend), or a service's
        super().__init__(Type, "/".join(path), retry=backend.hooks.policy(backend.settings.retries))
        self.backend = backend
        self.path = path
        self.topic = backend.names.queue(path)
        self._started: StageEngine | None = None
        self._opening: asyncio.Future[None] | None = None
        settings = backend.settings
        codec = make_codec(
            Type,
            registry=settings.schema_registry,
            schema_dir=settings.schema_dir,
            subject=f"{self.topic}-value",
        )
        self.codec = codec
        """Records carry references in place of large `bytes` (pending tables, changelogs and dead
        letters hold those); `claim` hydrates a value when the stage reads it."""
        self._published = settings.schema_registry is not None
        """The schema of this queue's records is in the workflow's schema catalog (a registry codec
        registers its schema itself, at its first record)."""
        claim = backend.claim_check()
        self.claim = claim if claim is not None and claim.applies_to(Type) else None

    def describe(self) -> str:
        return f"queue {self.name!r} (topic {self.topic})"

    async def _engine(self) -> StageEngine:
        engine = self._started
        if engine is None:
            engine = self.backend.engine_for(self)
            await engine.start()
            self._started = engine
        return engine

    def open(self) -> None:
        """Start consuming now (a service does, so a web stage is restored and ready before its first request)."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self.backend.engine_for(self).start())

    def unavailable(self) -> str | None:
        """Why the stage reading this queue cannot serve a request now (None: it can, or it is not started here)."""
        engine = self.backend.engines.get(self.path)
        return None if engine is None else engine.unready_reason()

    async def publish(self) -> None:
        """Publish the schema this queue's records are written with to the workflow's catalog (once per
        process), before the first record: a reader of another version finds it when it meets one."""
        if not self._published:
            await asyncio.to_thread(self.backend.schema_catalog().publish, [self.codec.schema])
            self._published = True

    async def _push(self, id: str, value: T) -> None:
        data = self._fits(id, await self.encode(value))
        if not self._published:
            await self.publish()
        await self.backend.produce(self.topic, id, data)

    def _fits(self, id: str, data: bytes) -> bytes:
        """`data`, if a record of it fits the clients' record limit; else a clear error, before any
        client refuses it (a stage's transaction would otherwise abort and rewind on it, again and again)."""
        limit = self.backend.record_limit
        # (an id's UTF-8 takes at most 4 bytes a character: encoded only near the limit)
        if len(data) + 4 * len(id) + RECORD_FRAMING > limit and len(data) + len(id.encode()) + RECORD_FRAMING > limit:
            raise RecordTooLarge(
                f"{self.describe()}: item {id!r} encodes to {len(data):,} bytes, more than a Kafka record "
                f"takes here (message.max.bytes {limit:,}, with {RECORD_FRAMING} bytes of framing): give the "
                "backend a blob store (PIPETEER_BLOBS) so that large values travel by claim check, or raise "
                "message.max.bytes on the clients and the topics"
            )
        return data

    async def read(self, id: str | None = None) -> Any:
        # The stage loop's hot path: served from the pending table without further awaits
        # when the engine runs and an item is ready (but letting the process's other tasks run
        # every TURN_SECONDS under a backlog).
        engine = self._started
        if engine is not None:
            if id is None:
                if turn_due():
                    await take_turn()
                e = engine.try_next()
                if e is not None:
                    self._held = e.id
                    if self.claim is None:
                        return e.id, e.value
                    return e.id, await self.hydrate(e.id, e.value)
            else:
                return await self.hydrate(id, self._readable(engine.get(id)))
        if id is None:
            return await self._read_next()
        return await self._read(id)

    def _readable(self, e: Entry) -> Any:
        """The entry's value; `UnreadableRecord` if this instance holds it as another version's."""
        if e.held is not None:
            raise e.held
        return e.value

    async def _read_next(self) -> tuple[str, T]:
        e = await (await self._engine()).next_item()
        self._held = e.id
        return e.id, await self.hydrate(e.id, e.value)

    async def _read(self, id: str) -> T:
        value: T = await self.hydrate(id, self._readable((await self._engine()).get(id)))
        return value

    def held(self) -> list[Held]:
        """The items this instance holds because it cannot read them (another version's), oldest first."""
        engine = self.backend.engines.get(self.path)
        if engine is None:
            return []
        return [Held(e.id, getattr(e.held, "reason", str(e.held)), getattr(e.held, "writer_fingerprint", ""),
                     e.consumed_at) for e in engine.held()]

    def backlog(self) -> int:
        engine = self.backend.engines.get(self.path)
        return 0 if engine is None else engine.backlog

    def unreadable(self, ids: Sequence[str]) -> set[str]:
        engine = self.backend.engines.get(self.path)
        return set() if engine is None else engine.unreadable(ids)

    async def has(self, id: str) -> bool:
        return (await self._engine()).has(id)

    async def pending(self) -> Pending:
        """In the process running the stage, its pending table; elsewhere (`pipeteer status`), the records
        after the stage's committed input offsets (approximate: transaction markers count too, and
        items a person has not finished yet are in the changelog, past those offsets; oldest age unknown)."""
        engine = self.backend.engines.get(self.path)
        if engine is not None:
            return Pending(engine.pending_count(), engine.table.oldest_age() if engine.pending_count() else None)
        return await asyncio.to_thread(self._waiting)

    def _waiting(self) -> Pending:
        from pipeteer.queues.kafka.changelog import committed, watermarks

        consumer = self.backend.group_consumer(self.backend.names.group(self.backend.reader_of(self.path)))
        try:
            meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is None or meta.error is not None:
                return Pending(0, None)
            total = 0
            for tp in committed(consumer, self.topic, sorted(meta.partitions)):
                low, high = watermarks(consumer, self.topic, tp.partition)
                total += max(high - (tp.offset if tp.offset >= 0 else low), 0)
            return Pending(total, None)
        finally:
            consumer.close()

    async def pop(self, id: str) -> None:
        fut = (await self._engine()).finish(id, None, None)
        if fut is not None:
            await fut

    async def _iter_items(self) -> AsyncIterator[tuple[str, T]]:
        for e in (await self._engine()).snapshot():
            if e.held is None:  # (another version's items are left out: `held()` lists them)
                yield e.id, await self.hydrate(e.id, e.value)

    async def _iter_keys(self) -> AsyncIterator[str]:
        for e in (await self._engine()).snapshot():
            yield e.id

    async def wait_change(self) -> None:
        await (await self._engine()).wait_change()

    async def move(self, id: str, dst: BaseQueue[U], value: U) -> None:
        """Finish `id` here and emit `value` to `dst`, in this stage's next transaction (with its offsets)."""
        if (dst.__class__ is not KafkaQueue and not isinstance(dst, KafkaQueue)) or dst.backend is not self.backend:
            return await super().move(id, dst, value)
        if not isinstance(id, str) or not id:
            dst.check(id, value)  # raises, naming the queue
        # the codec checks the value's type (ValueTypeError), once
        data = dst.codec.encode(value) if dst.claim is None else await dst.encode(value)
        dst._fits(id, data)
        if not dst._published:
            await dst.publish()
        engine = self._started or await self._engine()
        fut = engine.finish(id, dst.topic, data)
        if self._held == id:
            self._held = None
        if fut is not None:
            await fut

    def fail(self, error: BaseException) -> str | None:
        """The stage failed on the item it last read: retry it with backoff, dead-letter it when out of attempts.

        Returns the item's id (None if no item was in progress). Called by the runtime when an
        automatic stage's coroutine raises.
        """
        engine = self.backend.engines.get(self.path)
        return None if engine is None else engine.fail(error)

    def dead_letter_topic(self) -> DeadLetterTopic:
        """The dead-letter topic of the stage reading this queue."""
        stage = self.backend.reader_of(self.path)
        derived = self.backend.names
        return DeadLetterTopic(self.backend.settings, derived.dead_letters(stage), derived.group(stage) + ".dlq-replay")

    def dead_letters(self) -> list[DeadLetter]:
        """The dead letters of the stage reading this queue, not replayed yet (blocking; for the CLI)."""
        out = []
        for d in self._clearly(self.dead_letter_topic().pending):
            source = f"{d.source_topic}[{d.source_partition}]@{d.source_offset}"
            out.append(DeadLetter(d.id, self.letter_value(d.value), d.error_class, d.error_message, d.stacktrace, d.attempts, d.failed_at,
                                  source))
        return out

    def replay(self, ids: Sequence[str] | None = None) -> list[str]:
        """Put dead letters back on their original topic: all not replayed yet (exactly once: they are marked
        replayed in the same transaction), or the latest of each id given (not marked: `--all` replays it again)."""
        topic = self.dead_letter_topic()
        return [d.id for d in self._clearly(lambda: topic.replay(None if ids is None else list(ids)))]

    def _clearly(self, call: Callable[[], R]) -> R:
        """`call()`, with "no broker answered" said as a `BrokerUnreachable` naming the bootstrap servers."""
        try:
            return call()
        except Exception as e:
            error = health.translate(e, self.backend.settings.connection.bootstrap_servers)
            if error is e:
                raise
            raise error from None

    def __len__(self) -> int:
        engine = self.backend.engines.get(self.path)
        return 0 if engine is None else engine.pending_count()

    def pending_since(self) -> list[tuple[str, float]]:
        """The items this instance holds, with when each was first consumed (wall clock, kept in the
        changelog, so comparable across instances), oldest first: what a console merges."""
        engine = self.backend.engines.get(self.path)
        entries = [] if engine is None else engine.snapshot()
        return sorted(((e.id, e.consumed_at) for e in entries), key=lambda pair: pair[1])

    def count(self, *, match: str | None = None, older_than: float | None = None, now: float | None = None) -> int:
        """How many items this instance holds (passing the filters, see `BaseQueue.count`); 0 in a
        process that does not run the stage."""
        engine = self.backend.engines.get(self.path)
        return 0 if engine is None else engine.count(match, older_than, now)

    def page(self, offset: int = 0, limit: int = 50, *, match: str | None = None, older_than: float | None = None,
             now: float | None = None) -> list[tuple[str, float]]:
        """A page of `pending_since()` (see `BaseQueue.page`), read from this instance's pending table
        without copying it; [] in a process that does not run the stage."""
        check_page(offset, limit)
        engine = self.backend.engines.get(self.path)
        return [] if engine is None else engine.page(offset, limit, match, older_than, now)
