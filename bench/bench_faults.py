"""How long broker faults stop a Kafka stage's output: pipeteer beside a hand-written EOS loop, same cluster.

    .venv/bin/python bench/bench_faults.py [--faults leader,coordinator,stall] [--repeat N] [--rate 500]
        [--variants loop,pipeteer] [--via direct|proxies] [--timeout 120] [--keep-logs DIR]

A 3-node Apache Kafka 4.4 cluster is started as the tests start it (`tests/kafka_cluster.py`:
replication factor 3, `min.insync.replicas=2`, Kafka's default timeouts, so a dead node is fenced
after `broker.session.timeout.ms`, 9 s). Each variant is one stage process copying small Avro
records (`Rec`) from a 6-partition input topic to a 6-partition output topic, exactly-once, a
commit every 100 ms, while this process feeds the input at a steady `--rate` (records/s, keyed,
idempotent producer) and watches the output with a read_committed consumer, noting when each record
became visible. The variants run one after the other on the same cluster, each through the same
faults, in turn, `--repeat` times:

- `leader`: kill -9 of the node leading most of the input's partitions, restarted 8 s later;
- `coordinator`: kill -9 of the transaction coordinator of the stage's transactional id (the
  leader of its `__transaction_state` partition), restarted 8 s later;
- `stall`: SIGSTOP of the node leading most of the input's partitions, SIGCONT 15 s later.

Between faults the cluster is made healthy again (every partition with its full ISR), leadership is
moved back to the preferred replicas (a restarted node leads nothing until Kafka's 5-minute
rebalance otherwise), and the output must flow at half the input rate or more before the next fault.

Per fault the *output gap*: the longest time without a new committed output record visible to
the read_committed watcher, from the last one before the fault until the output flows again after
the node came back (half the rate over the last second). *Kafka* is the cluster's own reaction:
from the fault to the metadata naming another leader for every input partition the node led (or
another transaction coordinator). A variant whose output does not flow again within `--timeout`
seconds of the fault is "stuck" (its process is then killed and started again, as a liveness probe
would, so that the next fault can be measured); one that exits is started again and noted. After
its faults, a variant's input stops and its output is read in full: every fed record must come out
exactly once (lost / duplicated, both 0).

Variants:

- `loop`: a confluent-kafka consume-transform-produce loop with transactions (EOS v2) written here:
  the floor. It commits every 100 ms; retries a call that failed with a retriable error; on an
  abortable one aborts and rewinds its consumer to the last committed offsets; on a fatal one (a
  fenced producer) takes a new producer under the same transactional id, and rewinds;
- `pipeteer`: `pipeteer run bench.bench_faults:app --backend kafka://…?prefix=…&topic_profile=production
  --stage copy` at its defaults (its topics are created by the stage, with the production profile: 6
  partitions, replication factor 3, min ISR 2).

Both use the cluster's direct listeners (`--via proxies`: the TCP proxies in front of them, as
`tests/kafka_cluster.py` sets up). Stage logs are kept with `--keep-logs DIR` (else in a temporary
directory, printed, kept when a variant was stuck or lost records).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeteer import App, Pipeline, ReadQueue, Workflow, WriteQueue  # noqa: E402

WORKFLOW = "faultbench"
STAGE = "copy"
PARTITIONS = 6
COMMIT_INTERVAL = 0.1
TRANSACTION_TIMEOUT_MS = 10_000
"""The loop's, as pipeteer's default: the brokers abort a transaction open longer than this."""
RESTART_AFTER = 8.0
STALL_FOR = 15.0
FAULTS = ("leader", "coordinator", "stall")
FLOWING = 0.5
"""The output flows when the last second saw at least this share of the input rate."""


@dataclass
class Rec:
    n: int
    text: str


@dataclass
class Out:
    n: int
    text: str


# Avro names a record by its class's module: the same name whether this file runs as a script (the
# parent, the loop) or is imported by `pipeteer run` as bench.bench_faults.
Rec.__module__ = Out.__module__ = "bench.bench_faults"


def transform(r: Rec) -> Out:
    return Out(r.n, r.text.upper())


workflow = Workflow(Rec, Out, pipelines={STAGE: Pipeline(Rec, Out)}, name=WORKFLOW)


async def copy(Qin: ReadQueue[Rec], Qout: WriteQueue[Out]) -> None:
    """The stage as the project page writes one."""
    while True:
        id, rec = await Qin.read()
        await Qout.push(id, transform(rec))
        await Qin.pop(id)


app = App(workflow, {STAGE: copy})
"""The pipeteer variant: `pipeteer run bench.bench_faults:app --backend kafka://… --stage copy`."""


# --- the loop (a stage process of its own) -------------------------------------------------------


def run_loop(bootstrap: str, in_topic: str, out_topic: str, group: str, transactional_id: str) -> None:
    """A hand-written EOS consume-transform-produce loop that survives broker faults (see the module docstring)."""
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaError,
        KafkaException,
        Producer,
        TopicPartition,
    )

    from pipeteer.codec import codec_for

    codec: Any = codec_for(Rec)
    out_codec: Any = codec_for(Out)

    def say(what: str) -> None:
        print(f"loop: {what}", file=sys.stderr, flush=True)

    # States a cluster leaves by itself (a leader or coordinator moving, a node away) that librdkafka
    # does not flag retriable everywhere: `committed` raises NOT_COORDINATOR while the group's moves.
    transient = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                 KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION,
                 KafkaError.LEADER_NOT_AVAILABLE, KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
                 KafkaError.CONCURRENT_TRANSACTIONS, KafkaError.REBALANCE_IN_PROGRESS, KafkaError._TIMED_OUT,
                 KafkaError._TRANSPORT, KafkaError._WAIT_COORD, KafkaError._ALL_BROKERS_DOWN}

    def retrying(call: Callable[[], Any], what: str) -> Any:
        """`call()` again while it fails with a transient error; an error that needs an abort or a new
        producer is raised, whatever its retriable flag."""
        while True:
            try:
                return call()
            except KafkaException as e:
                err: KafkaError = e.args[0]
                if err.fatal() or err.txn_requires_abort() or not (err.retriable() or err.code() in transient):
                    raise
                say(f"{what}: transient {err.name()}: {err.str()}")
                time.sleep(0.05)

    def new_producer() -> Any:
        p = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5,
                      "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS})
        retrying(lambda: p.init_transactions(10), "init_transactions")
        return p

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    producer = new_producer()
    offsets: dict[int, int] = {}
    in_transaction = False

    def rewind() -> None:
        """Back to the last committed offsets of every assigned partition (what the aborted transaction read is read again)."""
        assigned = consumer.assignment()
        if not assigned:
            return
        for tp in retrying(lambda: consumer.committed(assigned, 10), "committed"):
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))

    def abort() -> None:
        nonlocal producer, in_transaction
        try:
            retrying(lambda: producer.abort_transaction(10), "abort_transaction")
        except KafkaException as e:
            say(f"abort_transaction: {e.args[0].name()}: new producer")
            producer = new_producer()
        in_transaction = False
        offsets.clear()

    def on_revoke(c: Any, partitions: list[Any]) -> None:
        if in_transaction:  # what it read of them is another member's to redo
            say("partitions revoked: aborting the open transaction")
            abort()

    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal in_transaction, last_commit
        tps = [TopicPartition(in_topic, p, o) for p, o in offsets.items()]
        retrying(lambda: producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), 10),
                 "send_offsets_to_transaction")
        retrying(lambda: producer.commit_transaction(10), "commit_transaction")
        in_transaction = False
        offsets.clear()
        last_commit = time.monotonic()

    consumer.subscribe([in_topic], on_revoke=on_revoke)
    say(f"running: {in_topic} -> {out_topic}, transactional id {transactional_id}")
    while True:
        try:
            msg = consumer.poll(0.05)
            msgs: list[Any] = [] if msg is None else [msg, *consumer.consume(500, 0)]
            for m in msgs:
                if m.error() is not None:
                    if m.error().fatal():
                        raise KafkaException(m.error())
                    continue
                if not in_transaction:
                    producer.begin_transaction()
                    in_transaction = True
                value = out_codec.encode(transform(codec.decode(m.value())))
                while True:
                    try:
                        producer.produce(out_topic, value, m.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
                offsets[m.partition()] = m.offset() + 1
            if in_transaction and offsets and time.monotonic() - last_commit >= COMMIT_INTERVAL:
                commit()
        except KafkaException as e:
            err = e.args[0]
            if err.txn_requires_abort():
                say(f"abortable {err.name()}: {err.str()}: abort and rewind")
                abort()
            else:
                say(f"{'fatal' if err.fatal() else 'error'} {err.name()}: {err.str()}: new producer, rewind")
                producer = new_producer()  # fences the old one and aborts its transaction
                in_transaction = False
                offsets.clear()
            rewind()


# --- the parent: cluster, feeder, watcher, faults ----------------------------------------------


class Feeder(threading.Thread):
    """Pushes `Rec(n)` keyed `k<n>` to `topic` at `rate` per second (idempotent producer, acks=all);
    `delivered` holds the keys the brokers acknowledged."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        super().__init__(name="feeder", daemon=True)
        from confluent_kafka import Producer

        from pipeteer.codec import codec_for

        self.topic, self.rate = topic, rate
        self.codec: Any = codec_for(Rec)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        self.delivered: set[str] = set()
        self.failed = 0
        self.sent = 0
        self.stop_event = threading.Event()

    def _done(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered.add(msg.key().decode())
        else:
            self.failed += 1

    def run(self) -> None:
        began = time.monotonic()
        while not self.stop_event.is_set():
            due = int((time.monotonic() - began) * self.rate)
            while self.sent < due:
                n = self.sent
                try:
                    self.producer.produce(self.topic, self.codec.encode(Rec(n, f"record {n}")), f"k{n}".encode(),
                                          on_delivery=self._done)
                    self.sent += 1
                except BufferError:
                    break
            self.producer.poll(0.01)

    def finish(self, timeout: float) -> int:
        """Stop feeding; wait (up to `timeout`) until every record sent is acknowledged or failed. Returns those left."""
        self.stop_event.set()
        self.join(10)
        left: int = self.producer.flush(timeout)
        return left


class Watcher(threading.Thread):
    """Reads `topic` read_committed from the beginning, noting when each record became visible."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="watcher", daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.times: list[float] = []
        self.keys: dict[tuple[int, int], str] = {}  # (partition, offset) -> key
        self.lock = threading.Lock()
        self.stop_event = threading.Event()

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"watch-{uuid.uuid4().hex[:6]}",
                      "isolation.level": "read_committed", "enable.auto.commit": False})
        try:
            c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
            while not self.stop_event.is_set():
                # `consume` waits out its timeout unless its batch fills: wait for one, then take what is there
                first = c.poll(0.05)
                now = time.monotonic()
                msgs: list[Any] = [] if first is None else [first, *c.consume(10_000, 0)]
                fresh = 0
                with self.lock:
                    for m in msgs:
                        if m.error() is None and (m.partition(), m.offset()) not in self.keys:
                            self.keys[(m.partition(), m.offset())] = m.key().decode()
                            fresh += 1
                    self.times.extend([now] * fresh)
        finally:
            c.close()

    def count(self) -> int:
        with self.lock:
            return len(self.times)

    def since(self, t: float) -> int:
        with self.lock:
            return len(self.times) - bisect.bisect_right(self.times, t)

    def flowing(self, rate: float) -> bool:
        """At least `FLOWING` x `rate` records became visible over the last second."""
        return self.since(time.monotonic() - 1.0) >= FLOWING * rate

    def gap(self, start: float, end: float) -> float:
        """The longest time without a new record, from the last one before `start` to `end`."""
        with self.lock:
            times = list(self.times)
        before = [t for t in times if t <= start]
        points = [before[-1] if before else start, *(t for t in times if start < t <= end), end]
        return max(b - a for a, b in itertools.pairwise(points))


@dataclass
class Outcome:
    fault: str
    gap: float | None  # None: stuck
    kafka: float | None
    notes: list[str] = field(default_factory=list)


class Detector(threading.Thread):
    """Polls `moved()` (the cluster's metadata) from the fault on; `after`: when it first held, from `began`."""

    def __init__(self, moved: Callable[[], bool], began: float, timeout: float) -> None:
        super().__init__(name="detector", daemon=True)
        self.moved, self.began, self.timeout = moved, began, timeout
        self.after: float | None = None

    def run(self) -> None:
        while time.monotonic() - self.began < self.timeout:
            with contextlib.suppress(Exception):  # (no node answering for a moment)
                if self.moved():
                    self.after = time.monotonic() - self.began
                    return
            time.sleep(0.1)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> float:
    """Until `condition()` is truthy; returns how long that took. `TimeoutError` naming `what` after `timeout` s."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(0.05)
    return time.monotonic() - began


class Variant:
    """One stage process (the loop, or `pipeteer run`) on its own topics, restartable."""

    def __init__(self, kind: str, cluster: Any, bootstrap: str, log_dir: Path) -> None:
        from pipeteer.spec import names

        self.kind, self.cluster, self.bootstrap, self.log_dir = kind, cluster, bootstrap, log_dir
        self.prefix = f"fb{uuid.uuid4().hex[:6]}"
        self.instance = f"{kind}-1"
        if kind == "pipeteer":
            self.in_topic = names.queue_topic(WORKFLOW, ["input"], self.prefix)
            self.out_topic = names.queue_topic(WORKFLOW, ["output"], self.prefix)
            self.transactional_id = names.transactional_id(WORKFLOW, [STAGE], self.instance, self.prefix)
        else:
            self.in_topic, self.out_topic = f"{self.prefix}.loop.input", f"{self.prefix}.loop.output"
            self.transactional_id = f"{self.prefix}.loop.{self.instance}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.port = 0

    def command(self) -> list[str]:
        if self.kind == "pipeteer":
            from tests.kafka_broker import free_port

            self.port = free_port()
            url = f"kafka://{self.bootstrap}?prefix={self.prefix}&topic_profile=production"
            return [sys.executable, "-m", "pipeteer", "run", "bench.bench_faults:app", "--backend", url,
                    "--stage", STAGE, "--port", str(self.port)]
        return [sys.executable, str(Path(__file__).resolve()), "--child", "loop", "--bootstrap", self.bootstrap,
                "--topic", self.in_topic, "--output", self.out_topic, "--group", f"{self.prefix}.loop",
                "--transactional-id", self.transactional_id]

    def start(self) -> None:
        from tests.kafka_cluster import _die_with_parent

        self.starts += 1
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PIPETEER_INSTANCE": self.instance, "PYTHONPATH": str(ROOT)},
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        log = self.log_dir / f"{self.kind}.{self.starts}.log"
        threading.Thread(target=_timestamped, args=(self.proc.stdout, log), name=f"log {log.name}", daemon=True).start()

    def wait_ready(self, timeout: float) -> None:
        """pipeteer: /readyz answers 200 (it has created its topics and joined its group); the loop: started."""
        if self.kind != "pipeteer":
            return
        import httpx

        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.kind} exited with {self.returncode()}: see {self.log_dir}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
            return False

        wait_for(ready, timeout, f"{self.kind} to be ready")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _timestamped(stream: Any, path: Path) -> None:
    """Copy a stage process's output to `path`, each line prefixed with the wall-clock time it came (pipeteer's
    log lines carry none), so that they can be set beside the faults' times."""
    with open(path, "ab") as out:
        for line in iter(stream.readline, b""):
            now = time.time()
            out.write(f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now * 1000) % 1000:03d} ".encode() + line)
            out.flush()


def create_topics(bootstrap: str, topics: list[str]) -> None:
    """6 partitions at the cluster's defaults (replication factor 3, min ISR 2)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, PARTITIONS) for t in topics]).values():
        fut.result(30)


def busiest_leader(cluster: Any, topic: str) -> int:
    """The node leading most of `topic`'s partitions (the lowest id among equals)."""
    led = [x for x in cluster.leaders(topic).values() if x is not None]
    return min(set(led), key=lambda n: (-led.count(n), n))


def rebalance(cluster: Any, timeout: float) -> None:
    """Leadership back to the preferred replicas (after a restart the node leads nothing for 5 minutes)."""
    from confluent_kafka import ElectionType
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    with contextlib.suppress(Exception):  # "election not needed" for partitions already there
        admin.elect_leaders(ElectionType.PREFERRED, None, request_timeout=timeout).result(timeout)


def inject(fault: str, cluster: Any, variant: Variant, watcher: Watcher, rate: float, timeout: float) -> Outcome:
    """One fault, measured: see the module docstring."""
    notes: list[str] = []
    if fault == "coordinator":
        victim = cluster.transaction_coordinator(variant.transactional_id)
        if victim is None:
            raise RuntimeError(f"no coordinator for {variant.transactional_id}")

        def moved() -> bool:
            return cluster.transaction_coordinator(variant.transactional_id) not in (victim, None)
    else:
        victim = busiest_leader(cluster, variant.in_topic)
        led = [p for p, n in cluster.leaders(variant.in_topic).items() if n == victim]

        def moved() -> bool:
            now = cluster.leaders(variant.in_topic)
            return all(now[p] not in (victim, None) for p in led)
    notes.append(f"node {victim} at {time.strftime('%H:%M:%S')}")

    began = time.monotonic()
    if fault == "stall":
        cluster.stop(victim)
    else:
        cluster.kill9(victim)
    detector = Detector(moved, began, 60)
    detector.start()
    time.sleep(max(0.0, began + (STALL_FOR if fault == "stall" else RESTART_AFTER) - time.monotonic()))
    back = time.monotonic()
    if fault == "stall":
        cluster.cont(victim)
    else:
        cluster.restart(victim)  # returns once the node is registered again
    came_back = time.monotonic()
    detector.join(60)
    kafka = detector.after

    def resumed() -> bool:
        if not variant.alive():
            raise ProcessLookupError
        return watcher.flowing(rate)

    gap: float | None
    try:
        wait_for(resumed, max(1.0, began + timeout - time.monotonic()), "the output to flow again")
        gap = watcher.gap(began, time.monotonic())
    except ProcessLookupError:
        notes.append(f"{variant.kind} exited with {variant.returncode()}: started again")
        variant.start()
        try:
            wait_for(lambda: watcher.flowing(rate), max(1.0, began + timeout - time.monotonic()), "the output to flow again")
            gap = watcher.gap(began, time.monotonic())
        except TimeoutError:
            gap = None
    except TimeoutError:
        gap = None
    if gap is None:
        notes.append(f"stuck: no flow {timeout:.0f}s after the fault (last output "
                     f"{time.monotonic() - max(watcher.times or [began]):.0f}s ago): stopped and started again")
        variant.stop()  # SIGTERM first, as Kubernetes does: a member that leaves its group is not waited for
        variant.start()
    notes.append(f"{'continued' if fault == 'stall' else 'restarted'} at {back - began:.0f}s, "
                 f"in metadata at {came_back - began:.1f}s")
    return Outcome(fault, gap, kafka, notes)


def run_variant(kind: str, cluster: Any, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Start the variant's stage, feed it, run every fault on it, then drain and count its outputs."""
    bootstrap = cluster.proxied_bootstrap if args.via == "proxies" else cluster.bootstrap
    variant = Variant(kind, cluster, bootstrap, log_dir)
    if kind == "loop":
        create_topics(cluster.bootstrap, [variant.in_topic, variant.out_topic])
    variant.start()
    variant.wait_ready(120)
    wait_for(lambda: _exists(cluster, variant.in_topic) and _exists(cluster, variant.out_topic), 60,
             f"{kind}'s topics")
    watcher = Watcher(cluster.bootstrap, variant.out_topic)
    feeder = Feeder(cluster.bootstrap, variant.in_topic, args.rate)
    watcher.start()
    feeder.start()
    outcomes: list[Outcome] = []
    print(f"\n{kind}: {variant.in_topic} -> {variant.out_topic}, transactional id {variant.transactional_id}", flush=True)
    try:
        wait_for(lambda: watcher.flowing(args.rate), 120, f"{kind}'s output to flow")
        for _ in range(args.repeat):
            for fault in args.faults:
                cluster.wait_healthy(120)
                rebalance(cluster, 30)
                cluster.wait_healthy(120)
                settle = time.monotonic()
                try:
                    wait_for(lambda: watcher.flowing(args.rate) and time.monotonic() - settle > 3,  # noqa: B023
                             args.timeout, f"{kind}'s output to flow before the next fault")
                except TimeoutError as e:
                    print(f"  {kind:9} {fault:12} not measured: {e}", flush=True)
                    break
                o = inject(fault, cluster, variant, watcher, args.rate, args.timeout)
                outcomes.append(o)
                print(f"  {kind:9} {fault:12} gap {'stuck' if o.gap is None else f'{o.gap:5.1f}s'}   "
                      f"Kafka {'-' if o.kafka is None else f'{o.kafka:4.1f}s'}   ({'; '.join(o.notes)})", flush=True)
    finally:
        left = feeder.finish(60)
        fed = feeder.delivered
        drained = True
        try:
            wait_for(lambda: watcher.count() >= len(fed) and set(watcher.keys.values()) >= fed, args.timeout,
                     f"{kind}'s last outputs")
        except TimeoutError:
            drained = False
        time.sleep(1.0)  # (a duplicate would come in the same commits as the rest: give them a moment)
        watcher.stop_event.set()
        watcher.join(10)
        variant.stop()
    with watcher.lock:
        keys = list(watcher.keys.values())
    lost = len(fed - set(keys))
    dup = len(keys) - len(set(keys))
    print(f"  {kind:9} fed {len(fed)} ({feeder.failed} failed, {left} unacknowledged), output {len(keys)}: "
          f"lost {lost}, duplicated {dup}" + ("" if drained else " (not drained)"), flush=True)
    return {"outcomes": outcomes, "lost": lost, "dup": dup, "fed": len(fed), "starts": variant.starts}


def _exists(cluster: Any, topic: str) -> bool:
    with contextlib.suppress(Exception):
        return len(cluster.leaders(topic)) == PARTITIONS
    return False


def table(results: dict[str, dict[str, Any]], faults: list[str], repeat: int) -> None:
    print(f"\noutput gap per fault (median of {repeat}; 'stuck' if any round was)")
    print(f"{'fault':13} {'loop':>8} {'pipeteer':>9} {'ratio':>6} {'Kafka':>7}")
    for fault in faults:
        gaps: dict[str, float | None] = {}
        kafka: list[float] = []
        for kind, r in results.items():
            runs = [o for o in r["outcomes"] if o.fault == fault]
            kafka += [o.kafka for o in runs if o.kafka is not None]
            gaps[kind] = (None if not runs or any(o.gap is None for o in runs)
                          else statistics.median(o.gap for o in runs))

        def show(g: float | None) -> str:
            return "stuck" if g is None else f"{g:.1f}s"

        lp, pp = gaps.get("loop"), gaps.get("pipeteer")
        ratio = f"{pp / lp:.2f}" if lp and pp is not None else "-"
        print(f"{fault:13} {show(lp) if 'loop' in gaps else '-':>8} {show(pp) if 'pipeteer' in gaps else '-':>9} "
              f"{ratio:>6} {f'{statistics.median(kafka):.1f}s' if kafka else '-':>7}")
    for kind, r in results.items():
        print(f"{kind}: fed {r['fed']}, lost {r['lost']}, duplicated {r['dup']}, process started {r['starts']} time(s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma-separated: leader, coordinator, stall")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of every fault per variant")
    ap.add_argument("--rate", type=float, default=500.0, help="input records per second")
    ap.add_argument("--variants", default="loop,pipeteer", help="comma-separated: loop, pipeteer")
    ap.add_argument("--via", choices=["direct", "proxies"], default="direct", help="how the stages reach the brokers")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds after a fault before a variant is 'stuck'")
    ap.add_argument("--keep-logs", help="directory for the stage processes' logs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--bootstrap", help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    ap.add_argument("--group", help=argparse.SUPPRESS)
    ap.add_argument("--transactional-id", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_loop(args.bootstrap, args.topic, args.output, args.group, args.transactional_id)
        return
    args.faults = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(args.faults) - set(FAULTS))
    if unknown:
        ap.error(f"unknown fault(s) {unknown}: {', '.join(FAULTS)}")
    from tests.kafka_cluster import kafka_cluster, unavailable

    reason = unavailable()
    if reason:
        sys.exit(f"bench_faults: {reason}")
    # a `timeout` or `kill` still stops the cluster this run started (the context manager's exit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log_dir = Path(args.keep_logs or tempfile.mkdtemp(prefix="pipeteer-bench-faults-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with kafka_cluster(Path(tempfile.mkdtemp(prefix="pipeteer-bench-cluster-"))) as cluster:
        print(f"3-node cluster ready in {cluster.started_in:.1f}s ({', '.join(f'{k} {v:.1f}s' for k, v in cluster.startup.items())}); "
              f"rate {args.rate:.0f}/s, faults {','.join(args.faults)} x {args.repeat}; logs in {log_dir}", flush=True)
        results = {kind: run_variant(kind, cluster, args, log_dir) for kind in args.variants.split(",")}
        table(results, args.faults, args.repeat)
    print(json.dumps({k: {"gaps": [[o.fault, o.gap, o.kafka] for o in r["outcomes"]], "lost": r["lost"],
                          "dup": r["dup"]} for k, r in results.items()}))


if __name__ == "__main__":
    main()
