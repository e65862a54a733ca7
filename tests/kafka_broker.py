"""A Kafka broker for the tests, in the order DESIGN.md gives:

1. `PIPETEER_TEST_KAFKA=host:port` if set (an existing cluster; nothing is started or stopped);
2. a Kafka container through testcontainers when a Docker engine answers;
3. Apache Kafka (`KAFKA_VERSION`, a single KRaft node: broker and controller in one JVM) from
   Maven Central's jars, when `java` and `mvn` exist: `tests/kafka-broker/pom.xml` resolves
   `org.apache.kafka:kafka_2.13` and its runtime dependencies once into `~/.cache/pipeteer/`
   (`PIPETEER_KAFKA_JARS` overrides the place; about 45 MB, 10 s on a fresh machine), the log
   directory is formatted with a fresh cluster id, and the broker runs on free loopback ports
   with a bounded heap (`HEAP`), warnings only in `broker.log` beside its data;
4. else, as a fallback, the `noida-db` Kafka-protocol broker from PyPI.

`PIPETEER_TEST_BROKER=kafka|noida` picks 3 or 4 (skipping 1 and 2), e.g. to run the suite on
noida-db. One broker serves the whole session; each test has its own topics. Tests see which
broker they run on through `Broker.kind` ("apache-kafka", "noida-db", "testcontainers",
"external"); `Broker.quirky` is true on noida-db only, and the `real_kafka` fixture skips a test
there.

Differences seen between Apache Kafka 4.4.0 and noida-db 0.2.3 (the product depends on none of
them; where the tests work around noida-db, they do so on noida-db only):

- Open transactions: Kafka aborts the open transaction of a producer that never returns after
  its `transaction.timeout.ms` (looked for every `transaction.abort.timed.out.transaction.cleanup
  .interval.ms`, 1 s here instead of 10 s); noida-db never does, so read_committed consumers of
  the partitions it wrote wait for ever. Tests on noida-db restart a killed instance under its own
  name, which fences and aborts it.
- Static members (`group.instance.id`): Kafka removes one whose session times out and moves its
  partitions; noida-db never expires one that left. Two static members rejoining one after the
  other were handed each other's partitions on noida-db; on Kafka, members restarted together
  get their own partitions back without a rebalance.
- JoinGroup: noida-db sometimes never answers the JoinGroup of static members joining at the
  same moment (tests there start instances one at a time and keep `max.poll.interval.ms`, the
  client's JoinGroup timeout, short); Kafka answers every one, with the default timeouts.
- Fetch: Kafka holds an empty fetch for `fetch.wait.max.ms`; noida-db answers at once, so an
  idle caught-up consumer re-fetches in a loop and costs CPU: an idle `pipeteer run` stage used
  0.5% of a core on Kafka (the broker 4.4%) and 57% on noida-db (the broker 40%), over 10 s
  (bench/bench_kafka_stage.py measures it). noida-db also ignores `fetch.max.bytes` and `max.partition.fetch.bytes`: a consumer
  of a backlog gets all of it in one response (100 MB for 10,000 records of 10 KB), which
  librdkafka refuses above `receive.message.max.bytes`; Kafka keeps to the limits.
- Topic creation, deletion and config changes: on Kafka they are asynchronous. CreateTopics
  answers once the controller has created the topic; for a moment after, metadata does not list
  it (a consumer subscribing then does not see it until its next metadata refresh, minutes
  later), and once listed with a leader, ListOffsets may still answer NOT_LEADER_OR_FOLLOWER.
  An altered topic config is described with its old value for a moment. noida-db answers with
  the change already visible. The product now waits for new topics' leaders, and asks offsets
  again while a leader is not elected yet (a real cluster's leader moves too).
- Producer ids: an idempotent/transactional producer may stall ~0.5 s on its first send on
  noida-db while its producer id is fetched; on Kafka a new transactional producer may be told
  CONCURRENT_TRANSACTIONS or COORDINATOR_LOAD_IN_PROGRESS for a moment (librdkafka retries).
- Storage: noida-db keeps topic data in memory (tests delete their topics); Kafka writes a log
  directory, removed when the broker stops.
- Start and footprint: Kafka needs a JVM (about 3 s to answer after its log directory is
  formatted, about 0.5 GB resident with this heap); noida-db is one native binary.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

START_TIMEOUT = 60.0


@dataclass
class Broker:
    """A running broker: where it listens, and how to stop it (if this process started it)."""

    bootstrap: str
    kind: str
    pid: int | None = None
    _stop: Any = field(default=None, repr=False)

    @property
    def quirky(self) -> bool:
        """Whether this is noida-db, whose quirks (module docstring) some tests must work around."""
        return self.kind == "noida-db"

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker_answers(timeout: float = 1.0) -> bool:
    """Whether a Docker engine answers, quickly (no engine here: the socket is absent)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        path = host[len("unix://") :]
        if not os.path.exists(path):
            return False
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            try:
                s.connect(path)
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return b"OK" in s.recv(1024)
            except OSError:
                return False
    return True


def wait_for_kafka(bootstrap: str, timeout: float = START_TIMEOUT, alive: subprocess.Popen[bytes] | None = None) -> None:
    """Until the broker answers a metadata request (or the process `alive` that should serve it exits)."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"the Kafka broker for {bootstrap} exited with {alive.returncode} before answering")
        host, _, port = bootstrap.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                pass
            AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
            return
        except Exception as e:
            last = e
            time.sleep(0.2)
    raise RuntimeError(f"Kafka broker at {bootstrap} did not answer within {timeout:.0f}s: {last}")


def noida_binary() -> Path:
    path = Path(str(files("noida_db").joinpath("noida-db")))
    if not path.is_file():
        raise RuntimeError(f"noida-db binary not found at {path}: pip install 'noida-db==0.2.3'")
    path.chmod(0o755)
    return path


def start_noida(data_dir: Path) -> Broker:
    """Start the noida-db Kafka broker on a free loopback port; stop it by its pid."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(data_dir / "broker.log", "wb")
    proc = subprocess.Popen(
        [str(noida_binary()), "start", "--data-dir", str(data_dir / "data"), "--only", "kafka", "--kafka-port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )

    def stop() -> None:
        # The noida-db launcher starts the broker as a child, which outlives a signal to the
        # launcher alone: signal the whole process group the broker was started in.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(10)
                time.sleep(0.2)
                os.killpg(proc.pid, 0)  # anyone left in the group?
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        log.close()

    bootstrap = f"127.0.0.1:{port}"
    try:
        wait_for_kafka(bootstrap)
    except BaseException:
        stop()
        raise
    return Broker(bootstrap, "noida-db", proc.pid, stop)


def start_container() -> Broker:
    from testcontainers.kafka import KafkaContainer

    container = KafkaContainer().start()
    return Broker(container.get_bootstrap_server(), "testcontainers", None, container.stop)


# --- Apache Kafka from Maven Central's jars ------------------------------------------------------

KAFKA_VERSION = "4.4.0"
POM = Path(__file__).resolve().parent / "kafka-broker" / "pom.xml"
HEAP = ("-Xms512m", "-Xmx1g")


def kafka_jars_dir() -> Path:
    """Where the broker's jars are cached between runs (`PIPETEER_KAFKA_JARS` overrides it)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pipeteer" / f"kafka-{KAFKA_VERSION}"
    return Path(os.environ.get("PIPETEER_KAFKA_JARS", default))


def can_run_apache_kafka() -> bool:
    return shutil.which("java") is not None and (shutil.which("mvn") is not None or _resolved(kafka_jars_dir()))


def _resolved(jars: Path) -> bool:
    return (jars / ".complete").is_file()


def resolve_kafka_jars() -> Path:
    """The directory of Apache Kafka's jars, resolved with Maven (tests/kafka-broker/pom.xml) on first use."""
    return resolve_maven_jars(POM, kafka_jars_dir(), f"-Dkafka.version={KAFKA_VERSION}")


def resolve_maven_jars(pom: Path, jars: Path, *mvn_args: str, then: Callable[[Path], None] | None = None) -> Path:
    """`jars`, holding the jars `pom` depends on (and what `then(dir)` adds), made on first use.

    Concurrent sessions take turns on a lock file; the jars land in a temporary directory renamed
    into place, so a half-finished download is never used.
    """
    if _resolved(jars):
        return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(f"the jars of {pom} are not in {jars} and `mvn` is not installed to resolve them")
    jars.parent.mkdir(parents=True, exist_ok=True)
    with open(jars.parent / f"{jars.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _resolved(jars):
            return jars
        partial = Path(tempfile.mkdtemp(prefix=f"{jars.name}.", dir=jars.parent))
        try:
            done = subprocess.run(
                [mvn, "-q", "-B", "-f", str(pom), *mvn_args, "dependency:copy-dependencies",
                 f"-DoutputDirectory={partial}"],
                capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"mvn could not resolve the dependencies of {pom} (exit {done.returncode}):\n"
                    f"{(done.stdout + done.stderr)[-3000:]}"
                )
            if then is not None:
                then(partial)
            (partial / ".complete").touch()
            shutil.rmtree(jars, ignore_errors=True)
            partial.rename(jars)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return jars


LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""


def server_properties(data_dir: Path, port: int, controller_port: int) -> dict[str, str]:
    """A single-node KRaft broker (broker and controller in one process) for tests only."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir / "data"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # a test that kills a producer for good waits for Kafka to abort its open transaction:
        # look for timed-out transactions every second rather than every 10 s
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    }


def _terminate_with_parent() -> None:
    """In the broker's process before it runs: SIGTERM when the test session that started it dies
    (even by SIGKILL), so no JVM is left behind on a shared machine (Linux's PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _java(jars: Path, log4j: Path, *args: str) -> list[str]:
    java = shutil.which("java") or "java"
    return [java, *HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{jars}/*", *args]


def start_apache_kafka(data_dir: Path) -> Broker:
    """Start Apache Kafka (KRaft, one node) from Maven's jars on free loopback ports; stop it by its pid.

    The data directory is formatted with a fresh cluster id, and removed when the broker stops.
    """
    jars = resolve_kafka_jars()
    data_dir.mkdir(parents=True, exist_ok=True)
    port, controller_port = free_port(), free_port()
    props = data_dir / "server.properties"
    props.write_text("".join(f"{k}={v}\n" for k, v in server_properties(data_dir, port, controller_port).items()))
    log4j = data_dir / "log4j2.yaml"
    log4j.write_text(LOG4J2)
    cluster_id = "-"
    while cluster_id.startswith("-"):  # as Kafka's own ids: one starting with "-" reads as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    formatted = subprocess.run(
        _java(jars, log4j, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "--standalone"),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    if formatted.returncode != 0:
        raise RuntimeError(f"formatting Kafka's log directory failed:\n{formatted.stdout}{formatted.stderr}")
    log = open(data_dir / "broker.log", "wb")
    proc = subprocess.Popen(
        _java(jars, log4j, "kafka.Kafka", str(props)),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=_terminate_with_parent,
    )

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        shutil.rmtree(data_dir / "data", ignore_errors=True)

    bootstrap = f"127.0.0.1:{port}"
    try:
        wait_for_kafka(bootstrap, alive=proc)
    except BaseException:
        stop()
        raise
    return Broker(bootstrap, "apache-kafka", proc.pid, stop)


def start_broker(kind: str, data_dir: Path) -> Broker:
    """Start a broker of `kind` ("apache-kafka" or "noida-db") this process owns."""
    if kind == "apache-kafka":
        return start_apache_kafka(data_dir)
    if kind == "noida-db":
        return start_noida(data_dir)
    raise ValueError(f"unknown broker kind {kind!r} (apache-kafka or noida-db)")


def default_kind() -> str:
    """Apache Kafka when it can run here, else noida-db (`PIPETEER_TEST_BROKER` forces either)."""
    forced = os.environ.get("PIPETEER_TEST_BROKER")
    if forced:
        return {"kafka": "apache-kafka", "noida": "noida-db"}.get(forced, forced)
    return "apache-kafka" if can_run_apache_kafka() else "noida-db"


@contextlib.contextmanager
def kafka_broker(data_dir: Path) -> Iterator[Broker]:
    """The broker the tests use (see the module docstring for the order)."""
    external = os.environ.get("PIPETEER_TEST_KAFKA")
    if external:
        wait_for_kafka(external)
        broker = Broker(external, "external")
    elif not os.environ.get("PIPETEER_TEST_BROKER") and docker_answers():
        broker = start_container()
    else:
        broker = start_broker(default_kind(), data_dir)
    try:
        yield broker
    finally:
        broker.stop()


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete every topic starting with `prefix` (the local broker keeps topic data in memory)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if topics:
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                fut.result()
