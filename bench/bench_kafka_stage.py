"""One automatic stage on Kafka, exactly-once, beside a hand-written loop, Quix Streams and Kafka Streams.

    python bench/bench_kafka_stage.py [--broker kafka|noida | --bootstrap HOST:PORT]
        [--small 100000] [--large 20000] [--repeat 3] [--idle-seconds 10] [--quix-python PATH]
        [--variants loop,quix,pipeteer,kstreams,kstreams?batch.size=1048576]

Variants, each a fresh process of its own (the *stage process*), each reading its own copy of the
same pre-filled input (4 partitions, Avro single-object records) with its own consumer group and
writing its own output topic, all exactly-once with a commit every 100 ms:

- `loop`: a hand-written confluent-kafka consume-transform-produce loop with transactions (EOS
  v2): the practical ceiling. It commits every 100 ms, and at once when its input runs dry;
- `quix`: a Quix Streams application, processing_guarantee="exactly-once", commit_interval=0.1
  (its default of 5 s would make every figure but the rate a measure of that setting);
- `pipeteer`: the project page's coroutine stage (`read` / `push` / `pop`) run as a user runs it,
  `pipeteer run bench.bench_kafka_stage:app --backend kafka://… --stage upper`, at the defaults.
  `pipeteer?OPTIONS` is the same with backend URL options added (e.g.
  `pipeteer?queued.min.messages=20000`), to compare settings in one run; likewise
  `quix?commit_interval=5` (Quix's default) sets Application arguments;
- `kstreams`: a Kafka Streams 4.4 application (`bench/kstreams/`, Java 17, `stream → mapValues →
  to`), processing.guarantee=exactly_once_v2, commit.interval.ms=100, its defaults otherwise;
  `kstreams?CONFIG=VALUE&…` adds Streams or client settings. `kstreams?batch.size=1048576` (the
  producer's batches at 1 MB) is the tuned anchor the table compares with, as issue 24 did. It is
  built once per machine into `~/.cache/pipeteer/bench-kstreams/` (`bench/kafka_stage_kstreams.py`:
  Maven resolves its jars, `javac` compiles it); without `java`, `javac` or `mvn` the `kstreams`
  variants are left out, saying so.

The transform is the same everywhere: decode the Avro record, upper-case its text, encode (Kafka
Streams with Avro's Java library on the schemas pipeteer's codec derives); it notes (in the stage
process) when it first and last ran. The variants take turns for `--repeat` rounds (this machine
is noisy: one run of a variant can be 30% off another) and the table gives medians. The parent
process watches each output topic with a read_committed consumer and reads the CPU time of the
stage process and the broker from /proc, and reports per variant:

- *steady* records/s: from the first output visible to the last (start-up excluded, a JVM's
  just-in-time compilation included);
- *warm* records/s: over the second half of the output, from the output count reaching N/2 to N
  (a stage that is still warming up, as a JVM's is, runs faster here than in *steady*);
- *end-to-end* records/s: from the start of the stage process to the last output visible (a JVM's
  or an interpreter's start-up included);
- *CPU s*: CPU seconds (user + system, all threads) of the stage process per 100,000 records while
  it was in steady state (first to last output visible); *broker*: the same of the broker's
  processes over the same window ("n/a" with --bootstrap: the bench does not know its pid);
- *first out*: from the first input the transform saw to the first output visible;
- *tail*: from the last item processed to its output visible (the input has stopped);
- peak RSS of the stage process.

Once a round's clock has stopped, its output is checked: exactly N records, none duplicated, each
byte for byte what pipeteer's codec encodes for the upper-cased record (the table says which
rounds were not). Last, the CPU an idle, caught-up stage process (`pipeteer run` of a copy stage)
and the broker burn over `--idle-seconds`, read from /proc.

Quix Streams pins an older confluent-kafka than pipeteer's, so it lives in a virtualenv of its own
(`python3 -m venv /work/venv-quix && /work/venv-quix/bin/pip install -e '.[bench]'`): name its
interpreter with `--quix-python` or `PIPETEER_BENCH_QUIX_PYTHON` (default: this interpreter, when
it can import quixstreams; else the `quix` variant is left out, saying so).

Without --bootstrap a broker is started as the tests start it (`tests/kafka_broker.py`):
`--broker kafka` is Apache Kafka from Maven Central's jars (the default when `java` and `mvn`
exist), `--broker noida` the noida-db broker. On noida-db, ~10 KB records measure the broker more
than the stage: it answers a fetch with the whole backlog at once, so every variant waits for
one response of up to the whole input before their first record; and it does not long-poll, so
an idle consumer costs CPU that it does not cost on Kafka.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import kafka_stage_kstreams as kstreams  # noqa: E402
from bench.kafka_stage_report import TUNED_KSTREAMS, num, table  # noqa: E402
from pipeteer import App, Pipeline, ReadQueue, Workflow, Wrapped, WriteQueue  # noqa: E402

PARTITIONS = 4
COMMIT_INTERVAL = 0.1
STALL = 60.0
"""A variant with no output this long after its start has failed (its log is shown)."""

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


# Avro names a record by its class's module: the same name whether this file runs as a script (the
# parent, the loop and Quix processes) or is imported by `pipeteer run` as bench.bench_kafka_stage.
Rec.__module__ = Out.__module__ = "bench.bench_kafka_stage"


class Probe:
    """Notes when the transform first ran and when it ran for the `BENCH_N`th time, in the file
    `BENCH_PROBE` (monotonic clock: comparable across the processes of this machine)."""

    def __init__(self) -> None:
        self.path = os.environ.get("BENCH_PROBE")
        self.n = int(os.environ.get("BENCH_N", "0"))
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        notes = [name for name, at in (("first", 1), ("last", self.n)) if self.count == at]
        if notes and self.path:  # (a run of one record has both notes at once)
            with open(self.path, "a") as f:
                f.write("".join(f"{name} {time.monotonic()}\n" for name in notes))


probe = Probe()


def shout(text: str) -> str:
    probe()
    return text.upper()


def transform(r: Rec) -> Out:
    return Out(r.n, shout(r.text))


# --- the variants (stage processes) ----------------------------------------------------------


def post(r: Rec, text: str) -> Out:
    return Out(r.n, text)


workflow = Workflow(Rec, Out, pipelines={"upper": Wrapped(Rec, Pipeline(str, str), pre=lambda r: r.text, post=post)},
                    name="bench")


async def upper(Qin: ReadQueue[str], Qout: WriteQueue[str]) -> None:
    """The stage as the project page writes it."""
    while True:
        id, text = await Qin.read()
        await Qout.push(id, shout(text))
        await Qin.pop(id)


app = App(workflow, {"upper": upper})
"""The pipeteer variant: `pipeteer run bench.bench_kafka_stage:app --backend kafka://… --stage upper`."""


def run_loop(bootstrap: str, in_topic: str, out_topic: str, options_json: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    from pipeteer.codec import codec_for

    codec, out_codec = codec_for(Rec), codec_for(Out)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"loop-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **NOIDA_FETCH,
        }
    )
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"loop-{uuid.uuid4().hex[:6]}", "linger.ms": 5})
    p.init_transactions(30)
    c.subscribe([in_topic])
    p.begin_transaction()
    offsets: dict[int, int] = {}
    last = time.monotonic()
    while True:
        msgs = c.consume(500, COMMIT_INTERVAL)
        for m in msgs:
            if m.error() is not None:
                continue
            p.produce(out_topic, out_codec.encode(transform(codec.decode(m.value()))), m.key())
            offsets[m.partition()] = m.offset() + 1
        if offsets and (not msgs or time.monotonic() - last >= COMMIT_INTERVAL):
            tps = [TopicPartition(in_topic, k, v) for k, v in offsets.items()]
            p.send_offsets_to_transaction(tps, c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            p.begin_transaction()
            offsets.clear()
            last = time.monotonic()


def run_quix(bootstrap: str, in_topic: str, out_topic: str, options_json: str) -> None:
    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer, Serializer

    from pipeteer.codec import codec_for

    codec, out_codec = codec_for(Rec), codec_for(Out)

    class AvroIn(Deserializer):  # type: ignore[misc]
        def __call__(self, value: bytes, ctx: Any) -> Any:
            return codec.decode(value)

    class AvroOut(Serializer):  # type: ignore[misc]
        def __call__(self, value: Any, ctx: Any) -> bytes:
            return out_codec.encode(value)

    options = {"commit_interval": COMMIT_INTERVAL, **{k: float(v) for k, v in json.loads(options_json).items()}}
    quix = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        loglevel="WARNING",
        use_changelog_topics=False,
        state_dir=tempfile.mkdtemp(prefix="pipeteer-bench-quix-"),
        consumer_extra_config=dict(NOIDA_FETCH),
        **options,
    )
    src = quix.topic(in_topic, value_deserializer=AvroIn(), key_deserializer="bytes")
    dst = quix.topic(out_topic, value_serializer=AvroOut(), key_serializer="bytes")
    quix.dataframe(src).apply(transform).to_topic(dst)
    quix.run()


# --- the parent: broker, data, measurements, table -------------------------------------------


@dataclass
class Variant:
    name: str
    """`loop`, `quix`, `pipeteer`, `kstreams`, or one with options: `pipeteer?URL_OPTIONS`,
    `quix?commit_interval=5`, `kstreams?batch.size=1048576`."""
    python: str
    jars: Path | None = None
    """The Kafka Streams peer's build (`kstreams` variants)."""

    @property
    def kind(self) -> str:
        return self.name.split("?", 1)[0]

    def topics(self, prefix: str, size: int) -> tuple[str, str]:
        """Its input and output topics (pipeteer's are the bench workflow's, under `prefix`)."""
        if self.kind == "pipeteer":
            from pipeteer.spec import names

            return names.queue_topic("bench", ["input"], prefix), names.queue_topic("bench", ["output"], prefix)
        return f"{prefix}.{self.kind}{size}.input", f"{prefix}.{self.kind}{size}.output"

    def command(self, bootstrap: str, prefix: str, size: int) -> list[str]:
        in_topic, out_topic = self.topics(prefix, size)
        if self.kind == "pipeteer":
            options = "".join(f"&{k}={v}" for k, v in NOIDA_FETCH.items())
            if "?" in self.name:
                options += "&" + self.name.split("?", 1)[1]
            return [self.python, "-m", "pipeteer", "run", "bench.bench_kafka_stage:app", "--backend",
                    f"kafka://{bootstrap}?prefix={prefix}{options}", "--stage", "upper", "--port", str(free_port())]
        settings = dict(parse_qsl(self.name.split("?", 1)[1])) if "?" in self.name else {}
        if self.kind == "kstreams":
            if self.jars is None:
                raise RuntimeError(f"{self.name}: the Kafka Streams peer is not built")
            from pipeteer.codec import codec_for

            schemas = (codec_for(Rec).schema, codec_for(Out).schema)
            return kstreams.command(self.jars, bootstrap, in_topic, out_topic, f"{prefix}.kstreams", settings, schemas)
        return [self.python, __file__, "--child", self.kind, "--bootstrap", bootstrap, "--topic", in_topic,
                "--output", out_topic, "--options", json.dumps(settings)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _create(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics]).values():
        try:
            fut.result()
        except Exception as e:
            if "already exists" not in str(e).lower():
                raise


def body(size: int) -> str:
    """The text of every input record of about `size` bytes."""
    return ("lorem ipsum dolor sit amet " * (size // 27 + 1))[: max(size - 12, 1)]


def fill(bootstrap: str, topic: str, n: int, size: int) -> None:
    from confluent_kafka import Producer

    from pipeteer.codec import codec_for

    codec = codec_for(Rec)
    _create(bootstrap, [topic])
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20, "partitioner": "murmur2_random"})
    text = body(size)
    for i in range(n):
        while True:
            try:
                p.produce(topic, codec.encode(Rec(i, text)), f"r{i}".encode())
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process `pid` so far, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu(group: int | None) -> float:
    """CPU seconds so far of the processes of process group `group` (NaN for None: unknown)."""
    if group is None:
        return float("nan")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == group:
                total += proc_cpu(int(stat.parent.name))
    return total


def peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(variant: Variant, bootstrap: str, prefix: str, n: int, size: int, broker: int | None,
            timeout: float = 600.0) -> dict[str, float]:
    """Run one variant's stage process over the pre-filled input; watch its output from here.

    `broker`: the broker's process group, whose CPU is read over the steady window (None: unknown).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    _, out_topic = variant.topics(prefix, size)
    _create(bootstrap, [out_topic])
    probe_file = Path(tempfile.mkstemp(prefix="pipeteer-bench-probe-")[1])
    log = tempfile.TemporaryFile()
    watcher = Consumer({"bootstrap.servers": bootstrap, "group.id": "watch", "isolation.level": "read_committed",
                        "enable.auto.commit": False, **NOIDA_FETCH})
    watcher.assign([TopicPartition(out_topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    watcher.consume(1, 0.5)  # connected and assigned before the clock starts
    env = {**os.environ, "BENCH_PROBE": str(probe_file), "BENCH_N": str(n), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.Popen(variant.command(bootstrap, prefix, size), cwd=ROOT, env=env, stdout=log, stderr=log,
                            start_new_session=True)
    values: list[bytes | None] = []  # checked once the clock has stopped
    first = half = cpu_first = broker_first = 0.0
    seen_first = seen_half = 0
    try:
        while len(values) < n:
            stalled = not values and time.monotonic() - started > STALL
            if stalled or time.monotonic() - started > timeout or proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{variant.name}: {len(values)} of {n} outputs (exit {proc.poll()}):\n"
                                   + log.read().decode(errors="replace")[-4000:])
            # `consume` waits for its whole timeout unless it fills its batch: wait for one record,
            # note the time, then take what else is there
            first_msg = watcher.poll(0.05)
            now = time.monotonic()
            msgs = [] if first_msg is None else [first_msg, *watcher.consume(10_000, 0)]
            got = [m.value() for m in msgs if m.error() is None]
            if got and not values:
                first, seen_first = now, len(got)
                cpu_first, broker_first = proc_cpu(proc.pid), group_cpu(broker)
            values += got
            if got and not half and len(values) >= n / 2:
                half, seen_half = now, len(values)
        last, cpu_last, broker_last = time.monotonic(), proc_cpu(proc.pid), group_cpu(broker)
        rss = peak_rss_mb(proc.pid)
        while extra := watcher.consume(10_000, 0.5):  # anything past N is a duplicate
            values += [m.value() for m in extra if m.error() is None]
        deadline = time.monotonic() + 10
        while "last" not in probe_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        watcher.close()
        log.close()
    notes = dict(line.split() for line in probe_file.read_text().splitlines())
    probe_file.unlink()
    steady = n - seen_first
    nan = float("nan")
    return {
        "steady": steady / (last - first) if last > first and steady else nan,
        "warm": (n - seen_half) / (last - half) if last > half and seen_half < n else nan,
        "end_to_end": n / (last - started),
        "cpu_per_100k": (cpu_last - cpu_first) / steady * 100_000 if steady else nan,
        "broker_per_100k": (broker_last - broker_first) / steady * 100_000 if steady else nan,
        "first_out": first - float(notes["first"]),
        "tail": last - float(notes["last"]),
        "startup": float(notes["first"]) - started,
        "rss_mb": rss,
        **check_output(values, n, size),
    }


def check_output(values: list[bytes | None], n: int, size: int) -> dict[str, float]:
    """How the output differs from what it should be: records with each of the input's `n` once,
    byte for byte what pipeteer's codec encodes for `Out(n, upper-cased text)`."""
    from pipeteer.codec import Codec, codec_for
    from pipeteer.errors import DecodeError

    codec: Codec[Out] = codec_for(Out)
    text = body(size).upper()
    seen: set[int] = set()
    decoded = wrong = 0
    for value in values:
        try:
            if value is None:
                raise DecodeError("a record without a value")
            out = codec.decode(value)
        except DecodeError:
            wrong += 1
            continue
        decoded += 1
        seen.add(out.n)
        wrong += value != codec.encode(Out(out.n, text))
    return {"output": len(values), "duplicated": decoded - len(seen), "missing": len(set(range(n)) - seen),
            "wrong": wrong}


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
        before, started = [group_cpu(g) for g in groups], time.monotonic()
        time.sleep(seconds)
        after, elapsed = [group_cpu(g) for g in groups], time.monotonic() - started
        used = [(b - a) / elapsed for a, b in zip(before, after, strict=True)]
        return used[0], used[1] if len(used) > 1 else float("nan")
    finally:
        stage.stop()


def quix_python(option: str | None) -> str | None:
    """The interpreter for the Quix variant: the option, the environment, or this one if it has quixstreams."""
    chosen = option or os.environ.get("PIPETEER_BENCH_QUIX_PYTHON")
    if chosen:
        return chosen
    try:
        import quixstreams  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default=os.environ.get("PIPETEER_TEST_KAFKA"), help="an existing broker")
    ap.add_argument("--broker", choices=["kafka", "noida"], help="the broker to start (default: kafka if it can run)")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="how long to measure an idle stage's CPU (0: skip)")
    ap.add_argument("--small", type=int, default=100_000, help="number of ~200 B records (0: skip)")
    ap.add_argument("--large", type=int, default=20_000, help="number of ~10 KB records (0: skip)")
    ap.add_argument("--variants", default=f"loop,quix,pipeteer,kstreams,{TUNED_KSTREAMS}",
                    help="comma-separated: loop, quix, quix?APP_ARGS, pipeteer, pipeteer?URL_OPTIONS, kstreams, "
                         "kstreams?STREAMS_CONFIG (default: %(default)s)")
    ap.add_argument("--quix-python", help="the interpreter with quixstreams ($PIPETEER_BENCH_QUIX_PYTHON)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the table shows medians")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    ap.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        (run_loop if args.child == "loop" else run_quix)(args.bootstrap, args.topic, args.output, args.options)
        return
    from tests.kafka_broker import Broker, default_kind, delete_topics, start_broker, wait_for_kafka

    variants = []
    built: Path | str | None = None  # the Kafka Streams peer, built at the first kstreams variant (str: why not)
    for name in args.variants.split(","):
        python = sys.executable
        if name.startswith("quix"):
            found = quix_python(args.quix_python)
            if found is None:
                print(f"{name}: left out (no quixstreams here; see --quix-python)", flush=True)
                continue
            python = found
        jars = None
        if name.startswith("kstreams"):
            built = built or kstreams.built_or_why_not()
            if isinstance(built, str):
                print(f"{name}: left out ({built})", flush=True)
                continue
            jars = built
        variants.append(Variant(name, python, jars))

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
    try:
        rows = []
        for label, n, size in (("~200 B", args.small, 200), ("~10 KB", args.large, 10_000)):
            if not n:
                continue
            runs: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
            for turn in range(args.repeat):  # the variants take turns, so a slow spell hits all of them
                for i, variant in enumerate(variants):
                    # a prefix per run: each variant's own input copy, and a consumer group with no offsets
                    prefix = f"{run}{size}r{turn}v{i}"
                    fill(bootstrap, variant.topics(prefix, size)[0], n, size)
                    time.sleep(1.0)  # let the broker settle after the fill
                    figures = measure(variant, bootstrap, prefix, n, size, broker.pid if broker else None)
                    delete_topics(bootstrap, prefix)
                    runs[variant.name].append(figures)
                    print(f"  {label:7} {variant.name:34} steady {num(figures['steady'], 9, ',.0f')}/s  "
                          f"warm {num(figures['warm'], 9, ',.0f')}/s  e2e {figures['end_to_end']:>8,.0f}/s  "
                          f"CPU {num(figures['cpu_per_100k'], 5, '.2f')} s/100k  "
                          f"broker {num(figures['broker_per_100k'], 0, '.2f')} s/100k  "
                          f"first out {figures['first_out']:.2f}s  tail {figures['tail'] * 1000:.0f}ms  "
                          f"start-up {figures['startup']:.2f}s  RSS {figures['rss_mb']:.0f} MB  "
                          f"output {figures['output']:.0f}, {figures['duplicated']:.0f} duplicated", flush=True)
            rows.append((label, n, runs))
        table(rows, args.repeat)
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
