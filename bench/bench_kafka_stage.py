"""Records/s of one automatic pipeteer stage on Kafka, beside two baselines measured in the same run.

    python bench/bench_kafka_stage.py [--broker kafka|noida | --bootstrap HOST:PORT]
                                      [--small 100000] [--large 20000] [--repeat 3] [--idle-seconds 10]

Variants, each in a fresh process (so peak RSS is its own), each reading its own copy of the
same pre-filled input (4 partitions, Avro single-object records) with its own consumer group and
writing its own output topic, all exactly-once. The variants take turns for `--repeat` rounds
(this machine is noisy: one run of a variant can be 30% off another), and the table gives
medians. The variants:

- `ceiling`: a hand-written confluent-kafka consume-transform-produce loop with transactions
  (EOS v2, commit every 100 ms): the practical ceiling;
- `quix`: a Quix Streams application, processing_guarantee="exactly-once";
- `pipeteer`: the project page's coroutine stage (`read` / `push` / `pop`) wired by
  `pipeteer.connect` on `kafka://`, commit every 100 ms.

The transform is the same everywhere: decode the Avro record, upper-case its text, encode.
Figures: records/s from the start of the variant until all records were processed and
committed (Quix: processed), the time until the first output was visible to a
read_committed consumer, and peak RSS. Last, the CPU an idle, caught-up stage process (`pipeteer
run` of a copy stage) and the broker burn over `--idle-seconds`, read from /proc.

Without --bootstrap a broker is started as the tests start it (`tests/kafka_broker.py`):
`--broker kafka` is Apache Kafka from Maven Central's jars (the default when `java` and `mvn`
exist), `--broker noida` the noida-db broker. On noida-db, ~10 KB records measure the broker more
than the stage: it answers a fetch with the whole backlog at once, so all three variants wait for
one response of up to the whole input before their first record; and it does not long-poll, so
an idle consumer costs CPU that it does not cost on Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTITIONS = 4

NOIDA_FETCH = {"receive.message.max.bytes": 1_000_000_000}
"""The local noida-db broker ignores `fetch.max.bytes`: a fetch of 4 partitions of ~10 KB records can
answer with everything at once (100 MB for 10,000 records), above librdkafka's default 100 MB cap,
which then fails every retry. Every variant's consumer gets the same larger cap, on every broker
(on Kafka, which keeps to the fetch limits, it changes nothing)."""


@dataclass
class Rec:
    n: int
    text: str


@dataclass
class Out:
    n: int
    text: str


def transform(r: Rec) -> Out:
    return Out(r.n, r.text.upper())


# --- the variants (run in child processes) ---------------------------------------------------


def first_output_watcher(bootstrap: str, topic: str, started: float, out: dict[str, float]) -> threading.Thread:
    """A read_committed consumer noting when the first output record becomes visible (then it stops)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    def run() -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watch", "isolation.level": "read_committed", **NOIDA_FETCH})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if topic in c.list_topics(timeout=5).topics:
                break
            time.sleep(0.02)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        while time.monotonic() < deadline:
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                out["first"] = time.monotonic() - started
                break
        c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def run_ceiling(bootstrap: str, in_topic: str, n: int) -> dict[str, float]:
    from confluent_kafka import Consumer, Producer, TopicPartition

    from pipeteer.codec import codec_for

    codec, out_codec = codec_for(Rec), codec_for(Out)
    out_topic = f"{in_topic}.out-ceiling"
    _create(bootstrap, [out_topic])
    figures: dict[str, float] = {}
    started = time.monotonic()
    watcher = first_output_watcher(bootstrap, out_topic, started, figures)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"ceiling-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **NOIDA_FETCH,
        }
    )
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"ceiling-{uuid.uuid4().hex[:6]}", "linger.ms": 5})
    p.init_transactions(30)
    c.subscribe([in_topic])
    p.begin_transaction()
    done = 0
    offsets: dict[int, int] = {}
    last = time.monotonic()
    while done < n:
        for m in c.consume(500, 0.1):
            if m.error() is not None:
                continue
            p.produce(out_topic, out_codec.encode(transform(codec.decode(m.value()))), m.key())
            offsets[m.partition()] = m.offset() + 1
            done += 1
        if offsets and (time.monotonic() - last >= 0.1 or done >= n):
            tps = [TopicPartition(in_topic, k, v) for k, v in offsets.items()]
            p.send_offsets_to_transaction(tps, c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            p.begin_transaction()
            last = time.monotonic()
    figures["seconds"] = time.monotonic() - started
    watcher.join(5)
    c.close()
    return figures


def run_quix(bootstrap: str, in_topic: str, n: int) -> dict[str, float]:
    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer, Serializer

    from pipeteer.codec import codec_for

    codec, out_codec = codec_for(Rec), codec_for(Out)

    class AvroIn(Deserializer):
        def __call__(self, value: bytes, ctx: Any) -> Any:
            return codec.decode(value)

    class AvroOut(Serializer):
        def __call__(self, value: Any, ctx: Any) -> bytes:
            return out_codec.encode(value)

    out_topic = f"{in_topic}.out-quix"
    figures: dict[str, float] = {}
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        loglevel="WARNING",
        use_changelog_topics=False,
        state_dir=tempfile.mkdtemp(prefix="pipeteer-bench-quix-"),
        consumer_extra_config=dict(NOIDA_FETCH),
    )
    src = app.topic(in_topic, value_deserializer=AvroIn(), key_deserializer="bytes")
    dst = app.topic(out_topic, value_serializer=AvroOut(), key_serializer="bytes")
    count = [0]
    started = time.monotonic()

    def step(r: Rec) -> Out:
        count[0] += 1
        if count[0] >= n:
            figures["seconds"] = time.monotonic() - started
            app.stop()
        return transform(r)

    sdf = app.dataframe(src).apply(step)
    sdf.to_topic(dst)
    watcher = first_output_watcher(bootstrap, out_topic, started, figures)
    app.run()
    watcher.join(10)
    return figures


def run_pipeteer(bootstrap: str, in_topic: str, n: int, prefix: str) -> dict[str, float]:
    from pipeteer import App, Pipeline, ReadQueue, Workflow, Wrapped, WriteQueue, connect

    def post(r: Rec, text: str) -> Out:
        return Out(r.n, text)

    stage = Wrapped(Rec, Pipeline(str, str), pre=lambda r: r.text, post=post)
    workflow = Workflow(Rec, Out, pipelines={"upper": stage}, name="bench")

    async def upper(Qin: ReadQueue[str], Qout: WriteQueue[str]) -> None:
        while True:
            id, text = await Qin.read()
            await Qout.push(id, text.upper())
            await Qin.pop(id)

    app = App(workflow, {"upper": upper})
    figures: dict[str, float] = {}

    async def main() -> None:
        started = time.monotonic()
        queues = connect(app, f"kafka://{bootstrap}?prefix={prefix}&commit_interval_ms=100&max_pending=20000"
                           + "".join(f"&{k}={v}" for k, v in NOIDA_FETCH.items()))
        backend = queues.backend
        watcher = first_output_watcher(bootstrap, queues.Qout.topic, started, figures)
        task = asyncio.create_task(app.artifact(queues, "upper"))
        engine = None
        while True:
            engine = engine or backend.engines.get(("input",))
            if engine is not None and engine.committed_items >= n:
                break
            await asyncio.sleep(0.01)
        figures["seconds"] = time.monotonic() - started
        task.cancel()
        await asyncio.to_thread(watcher.join, 10)
        backend.close()

    asyncio.run(main())
    return figures


# --- the parent: broker, data, table ---------------------------------------------------------


def _create(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics]).values():
        try:
            fut.result()
        except Exception as e:
            if "already exists" not in str(e).lower():
                raise


def fill(bootstrap: str, topic: str, n: int, size: int) -> None:
    from confluent_kafka import Producer

    from pipeteer.codec import codec_for

    codec = codec_for(Rec)
    _create(bootstrap, [topic])
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20, "partitioner": "murmur2_random"})
    body = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[: max(size - 12, 1)]
    for i in range(n):
        while True:
            try:
                p.produce(topic, codec.encode(Rec(i, body)), f"r{i}".encode())
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)


def child(variant: str, bootstrap: str, topic: str, n: int, prefix: str) -> None:
    if variant == "ceiling":
        figures = run_ceiling(bootstrap, topic, n)
    elif variant == "quix":
        figures = run_quix(bootstrap, topic, n)
    else:
        figures = run_pipeteer(bootstrap, topic, n, prefix)
    figures["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(figures), flush=True)


def measure(variant: str, bootstrap: str, topic: str, n: int, prefix: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--bootstrap", bootstrap, "--topic", topic, "--n", str(n),
         "--prefix", prefix],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            figures: dict[str, float] = json.loads(line[7:])
            return figures
    raise RuntimeError(f"{variant} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def cpu_seconds(group: int) -> float:
    """CPU time (user + system) of the processes in process group `group`, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == group:  # fields after the command name: state, ppid, pgrp, ..., utime, stime
            total += int(fields[11]) + int(fields[12])
    return total / tick


def idle_cpu(bootstrap: str, prefix: str, seconds: float, broker: Any) -> tuple[float, float]:
    """Share of a core that a `pipeteer run` stage process with nothing left to do uses over
    `seconds` (and the broker meanwhile, when this run started it), once it has caught up."""
    from pipeteer.spec import names
    from tests.integration.kafka.procs import StageProcess, push_copy_items, read_topic

    url = f"kafka://{bootstrap}?prefix={prefix}"
    n = 100
    asyncio.run(push_copy_items(url, n))
    log_dir = Path(tempfile.mkdtemp(prefix="pipeteer-bench-idle-"))
    stage = StageProcess("tests.integration.kafka.apps:copy_app", "copy", url, "idle-1", log_dir).start()
    try:
        stage.wait_ready()
        out_topic = names.queue_topic("copy", ["output"], prefix)
        while len(read_topic(bootstrap, out_topic)) < n:
            time.sleep(0.2)
        time.sleep(2.0)  # the last commit, lag reports and the like settle
        assert stage.proc is not None
        groups = [stage.proc.pid] + ([broker.pid] if broker is not None and broker.pid else [])
        before, started = [cpu_seconds(g) for g in groups], time.monotonic()
        time.sleep(seconds)
        after, elapsed = [cpu_seconds(g) for g in groups], time.monotonic() - started
        used = [(b - a) / elapsed for a, b in zip(before, after, strict=True)]
        return used[0], used[1] if len(used) > 1 else float("nan")
    finally:
        stage.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default=os.environ.get("PIPETEER_TEST_KAFKA"), help="an existing broker")
    ap.add_argument("--broker", choices=["kafka", "noida"], help="the broker to start (default: kafka if it can run)")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="how long to measure an idle stage's CPU (0: skip)")
    ap.add_argument("--small", type=int, default=100_000, help="number of ~200 B records")
    ap.add_argument("--large", type=int, default=20_000, help="number of ~10 KB records")
    ap.add_argument("--variants", default="ceiling,quix,pipeteer")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the table shows medians")
    ap.add_argument("--child")
    ap.add_argument("--topic")
    ap.add_argument("--n", type=int)
    ap.add_argument("--prefix")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.bootstrap, args.topic, args.n, args.prefix)
        return
    from tests.kafka_broker import Broker, default_kind, delete_topics, start_broker, wait_for_kafka

    # a `timeout` or `kill` still stops the broker this run started (the `finally` below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    broker: Broker | None = None
    if args.bootstrap:
        wait_for_kafka(args.bootstrap)
        bootstrap = args.bootstrap
    else:
        kind = {"kafka": "apache-kafka", "noida": "noida-db", None: default_kind()}[args.broker]
        broker = start_broker(kind, Path(tempfile.mkdtemp(prefix="pipeteer-bench-")))
        bootstrap = broker.bootstrap
    print(f"broker: {broker.kind if broker else 'external'} at {bootstrap}", flush=True)
    run = f"bench{uuid.uuid4().hex[:6]}"
    variants = args.variants.split(",")
    try:
        rows = []
        for label, n, size in (("~200 B", args.small, 200), ("~10 KB", args.large, 10_000)):
            runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
            for turn in range(args.repeat):  # the variants take turns, so a slow spell hits all of them
                # a prefix per round: the pipeteer stage's consumer group must not find earlier offsets
                prefix = f"{run}{size}r{turn}"
                for variant in variants:
                    # each variant gets its own copy of the input, as a pipeteer workflow input topic
                    topic = f"{prefix}.{variant}{size}.input" if variant != "pipeteer" else f"{prefix}.bench.input"
                    fill(bootstrap, topic, n, size)
                    time.sleep(1.0)  # let the broker settle after the fill
                    figures = measure(variant, bootstrap, topic, n, prefix)
                    delete_topics(bootstrap, prefix)
                    runs[variant].append(figures)
                    print(f"  {label:7} {variant:9} {n / figures['seconds']:>10,.0f} rec/s  "
                          f"first output {figures.get('first', float('nan')):.2f} s  "
                          f"peak RSS {figures['rss_mb']:.0f} MB", flush=True)
            rows.append((label, n, runs))
        print(f"\nmedians of {args.repeat} rounds")
        print(f"{'records':8} {'n':>7} {'variant':9} {'rec/s':>10} {'vs ceiling':>10} {'vs quix':>8} "
              f"{'first out':>9} {'RSS MB':>7}")
        for label, n, runs in rows:
            rate = {v: statistics.median(n / f["seconds"] for f in fs) for v, fs in runs.items()}
            ceiling, quix = rate.get("ceiling", float("nan")), rate.get("quix", float("nan"))
            for variant, fs in runs.items():
                first = statistics.median(f.get("first", float("nan")) for f in fs)
                rss = max(f["rss_mb"] for f in fs)
                print(f"{label:8} {n:>7} {variant:9} {rate[variant]:>10,.0f} {rate[variant] / ceiling:>10.2f} "
                      f"{rate[variant] / quix:>8.2f} {first:>8.2f}s {rss:>7.0f}")
        print("\ntargets for pipeteer: >= 0.5 x ceiling, >= 2.0 x quix, first output <= 1 s")
        if args.idle_seconds > 0:
            stage_cpu, broker_cpu = idle_cpu(bootstrap, f"{run}idle", args.idle_seconds, broker)
            print(f"\nidle, caught-up stage process over {args.idle_seconds:.0f} s: {stage_cpu:.1%} of a core"
                  + (f"; the broker meanwhile: {broker_cpu:.1%}" if broker is not None else ""))
    finally:
        delete_topics(bootstrap, run)
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
