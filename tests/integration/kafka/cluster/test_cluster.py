"""The 3-node cluster fixture itself (`tests/kafka_cluster.py`, `tests/netproxy.py`), against real Kafka.

What the fault tests rely on, checked once: topics are replicated three times with min ISR 2 and the
coordinators are where the cluster says; a transactional producer goes on committing through a kill
-9 of its partition's leader, the killed node comes back under its id with its data, and every
committed record is read back exactly once; a SIGSTOPped node is fenced and, continued, rejoins; a
client bootstrapped at the proxies only talks through them, and `cut_all` / `heal_all` / `latency_all`
do to it what they say. The proxy's own behaviour is checked first on an echo server (no Kafka).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, ElectionType, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.integration.kafka.procs import read_topic
from tests.kafka_broker import delete_topics
from tests.kafka_cluster import Cluster, wait_for
from tests.netproxy import Proxy

pytestmark = pytest.mark.slow


@pytest.fixture
def prefix(kafka_cluster: Cluster) -> Iterator[str]:
    """A topic prefix of this test's own; its topics are deleted after, and every fault undone."""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    yield prefix
    kafka_cluster.repair()
    delete_topics(kafka_cluster.bootstrap, prefix)


def create_topic(cluster: Cluster, topic: str, partitions: int) -> None:
    """A topic at the cluster's defaults (replication factor 3), once every partition has a leader."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, partitions)])[topic].result(30)
    wait_for(lambda: all(cluster.leader_of(topic, p) is not None for p in range(partitions)), 30,
             f"leaders for {topic}")


# --- the proxy, on an echo server ---------------------------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def _round_trip(s: socket.socket, data: bytes) -> float:
    began = time.monotonic()
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("the proxy closed the connection")
        got += chunk
    assert got == data
    return time.monotonic() - began


def test_proxy_forwards_delays_holds_and_cuts() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = Proxy(server.server_address[1])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            _round_trip(s, b"x" * 3_000_000)  # forwarded intact, in order
            proxy.latency(0.1)
            assert _round_trip(s, b"ping") >= 0.19  # 0.1 s each way
            proxy.latency(0)

            proxy.blackhole()  # held, not dropped
            s.sendall(b"held")
            s.settimeout(0.5)
            with pytest.raises(TimeoutError):
                s.recv(16)
            s.settimeout(5)
            proxy.heal()
            assert s.recv(16) == b"held"

            proxy.cut()  # open connections reset, new ones too
            with pytest.raises(ConnectionResetError):
                s.recv(16)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):  # (reset as it connects, or at once after)
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s2:
                s2.sendall(b"x")
                s2.recv(16)
        assert proxy.refused >= 1
        proxy.heal()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s3:
            _round_trip(s3, b"back")
    finally:
        proxy.close()
        server.shutdown()
        server.server_close()


# --- the cluster ----------------------------------------------------------------------------------


def test_topics_have_three_replicas_and_min_isr_two(kafka_cluster: Cluster, prefix: str) -> None:
    cluster = kafka_cluster
    topic = f"{prefix}.rf"
    create_topic(cluster, topic, 3)
    meta = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=10)
    assert sorted(meta.brokers) == [1, 2, 3]
    for p in meta.topics[topic].partitions.values():
        assert sorted(p.replicas) == [1, 2, 3] and sorted(p.isrs) == [1, 2, 3], p
    assert sorted({p.leader for p in meta.topics[topic].partitions.values()}) == [1, 2, 3], "leaders spread"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    configs = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    described = next(iter(configs.values())).result()
    assert described["min.insync.replicas"].value == "2"
    for internal in ("__consumer_offsets", "__transaction_state"):
        parts = meta.topics.get(internal) or admin.list_topics(internal, timeout=10).topics[internal]
        assert len(parts.partitions) == 6 and all(len(p.replicas) == 3 for p in parts.partitions.values())

    # the group coordinator the cluster computes is the one Kafka names
    group = f"{prefix}.group"
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        wait_for(lambda: c.poll(0.2) is None and c.assignment(), 30, "an assignment")
        named = admin.describe_consumer_groups([group])[group].result(10).coordinator.id
        assert cluster.group_coordinator(group) == named
    finally:
        c.close()
    assert cluster.transaction_coordinator(f"{prefix}.tx") in (1, 2, 3)


class TxWriter(threading.Thread):
    """Commits transactions of 10 numbered records to `topic` in a loop, as an application must:
    retries a retriable error, aborts on an abortable one, takes a new producer on a fatal one.
    `committed` holds the records whose commit succeeded, `aborted` those whose abort did, `unknown`
    those whose transaction a fatal error left undecided (aborted by the next producer's
    `init_transactions`, unless the commit had landed)."""

    def __init__(self, bootstrap: str, topic: str, transactional_id: str) -> None:
        super().__init__(name="tx-writer", daemon=True)
        self.bootstrap, self.topic, self.tid = bootstrap, topic, transactional_id
        self.committed: list[int] = []
        self.aborted: list[int] = []
        self.unknown: list[int] = []
        self.errors: list[str] = []
        self.producers = 0
        self.stop_event = threading.Event()
        self.failure: BaseException | None = None

    def producer(self) -> Producer:
        self.producers += 1
        p = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": self.tid, "linger.ms": 5,
                      "transaction.timeout.ms": 30_000})
        self.retry(lambda: p.init_transactions(10))
        return p

    def retry(self, call: Any, attempts: int = 30) -> None:
        for _ in range(attempts):
            try:
                call()
                return
            except KafkaException as e:
                err: KafkaError = e.args[0]
                if not err.retriable():
                    raise
                self.errors.append(f"retriable: {err}")
        raise TimeoutError(f"still failing after {attempts} tries: {self.errors[-1:]}")

    def run(self) -> None:
        try:
            p, n = self.producer(), 0
            while not self.stop_event.is_set():
                batch = list(range(n, n + 10))
                n += 10
                try:
                    p.begin_transaction()
                    for i in batch:
                        p.produce(self.topic, str(i).encode(), f"k{i}".encode())
                    self.retry(lambda p=p: p.commit_transaction(10))
                    self.committed.extend(batch)
                except KafkaException as e:
                    err = e.args[0]
                    self.errors.append(f"{'fatal' if err.fatal() else 'abortable' if err.txn_requires_abort() else 'other'}: {err}")
                    if err.txn_requires_abort():
                        self.retry(lambda p=p: p.abort_transaction(10))
                        self.aborted.extend(batch)
                    else:
                        self.unknown.extend(batch)
                        p = self.producer()
        except BaseException as e:
            self.failure = e


def test_transactions_go_on_through_a_leader_kill9_and_restart(kafka_cluster: Cluster, prefix: str) -> None:
    cluster = kafka_cluster
    topic = f"{prefix}.tx"
    create_topic(cluster, topic, 1)
    victim = cluster.leader_of(topic, 0)
    assert victim is not None
    data = cluster.node(victim).dir / "data" / f"{topic}-0"
    writer = TxWriter(cluster.bootstrap, topic, f"{prefix}.writer")
    writer.start()
    try:
        wait_for(lambda: len(writer.committed) >= 50 or writer.failure, 30, "the first commits")
        before = len(writer.committed)
        killed = time.monotonic()
        starts = cluster.node(victim).starts  # (the cluster is the session's: other tests restarted nodes too)
        cluster.kill9(victim)
        new = wait_for(lambda: _other_leader(cluster, topic, victim), 60,
                       f"a new leader of {topic}[0] after node {victim} was killed")
        detected = time.monotonic() - killed
        cluster.restart(victim)
        rejoined = time.monotonic() - killed
        cluster.wait_healthy(60)  # back in the ISR: it caught up on what it missed
        healthy = time.monotonic() - killed
        during = len(writer.committed) - before
        wait_for(lambda: len(writer.committed) >= before + during + 50 or writer.failure, 30, "commits after the restart")
    finally:
        writer.stop_event.set()
        writer.join(60)
    assert not writer.is_alive(), "the writer did not stop"
    assert writer.failure is None, f"the writer failed: {writer.failure!r} after {writer.errors[-5:]}"
    print(f"\nnode {victim} killed: node {new} leads after {detected:.1f}s; {victim} back in metadata after "
          f"{rejoined:.1f}s, in every ISR after {healthy:.1f}s; {len(writer.committed)} records committed "
          f"({during} while it was down), {len(writer.aborted)} aborted, {len(writer.unknown)} undecided, "
          f"{writer.producers} producer(s), errors: {sorted(set(e.split(':')[0] for e in writer.errors))}")

    # the same node, with its data: its log directory survived, and it leads again and serves everything
    assert data.is_dir() and cluster.node(victim).starts == starts + 1
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    with contextlib.suppress(KafkaException):  # (already the leader, if Kafka moved it back itself)
        admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result()
    wait_for(lambda: cluster.leader_of(topic, 0) == victim, 30, f"node {victim} to lead {topic}[0] again")
    # a new leader answers ListOffsets with OFFSET_NOT_AVAILABLE ("leader high watermark is not caught up")
    # until its followers have fetched from it once
    wait_for(lambda: _high_watermark(cluster, topic) is not None, 30, f"{topic}[0]'s new leader to know its high watermark")

    values = [int(m.value()) for m in read_topic(cluster.bootstrap, topic)]
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} duplicated records"
    assert set(writer.committed) <= set(values), f"{len(set(writer.committed) - set(values))} committed records lost"
    assert not set(writer.aborted) & set(values), "records of aborted transactions visible read_committed"
    assert set(values) <= set(writer.committed) | set(writer.unknown), "records nobody wrote"


def test_a_stopped_node_is_fenced_then_rejoins(kafka_cluster: Cluster, prefix: str) -> None:
    cluster = kafka_cluster
    topic = f"{prefix}.stop"
    create_topic(cluster, topic, 3)
    victim = cluster.leader_of(topic, 0)
    assert victim is not None
    stopped = time.monotonic()
    cluster.stop(victim)
    try:
        wait_for(lambda: _other_leader(cluster, topic, victim), 60, f"{topic}[0] to move off the stopped node {victim}")
        moved = time.monotonic() - stopped
        # the two others take writes that need min ISR 2 meanwhile
        p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
        p.produce(topic, b"while stopped", partition=0)
        assert p.flush(30) == 0
    finally:
        cluster.cont(victim)
    back = cluster.wait_healthy(60)
    print(f"\nnode {victim} stopped: {topic}[0] moved after {moved:.1f}s; healthy {back:.1f}s after SIGCONT")
    assert [m.value() for m in read_topic(cluster.bootstrap, topic)] == [b"while stopped"]


def test_a_client_at_the_proxies_only_talks_through_them(kafka_cluster: Cluster, prefix: str) -> None:
    cluster = kafka_cluster
    topic = f"{prefix}.proxied"
    create_topic(cluster, topic, 3)
    p = Producer({"bootstrap.servers": cluster.bootstrap})
    for i in range(30):
        p.produce(topic, str(i).encode())
    assert p.flush(30) == 0
    accepted = {i: proxy.accepted for i, proxy in cluster.proxies.items()}
    c = Consumer({"bootstrap.servers": cluster.proxied_bootstrap, "group.id": f"{prefix}.g", "enable.auto.commit": False,
                  "reconnect.backoff.max.ms": 1000})
    try:
        meta = c.list_topics(topic, timeout=10)
        assert sorted(b.port for b in meta.brokers.values()) == sorted(x.port for x in cluster.proxies.values())

        # (before the consumer fetches: a broker answers a connection's requests in turn, so a metadata
        # request waits behind a fetch it holds for fetch.wait.max.ms)
        def median_metadata_time() -> float:
            times = []
            for _ in range(5):
                began = time.monotonic()
                c.list_topics(topic, timeout=10)
                times.append(time.monotonic() - began)
            return statistics.median(times)

        base = median_metadata_time()
        cluster.latency_all(0.15)
        try:
            slow = median_metadata_time()
        finally:
            cluster.latency_all(0)
        print(f"\nmetadata request through the proxies: {base * 1000:.1f} ms; with 150 ms latency each way "
              f"{slow * 1000:.1f} ms")
        assert slow - base >= 0.25, (base, slow)

        c.assign([TopicPartition(topic, part, 0) for part in range(3)])
        got: list[Any] = []
        wait_for(lambda: _take(c, got) >= 30, 30, "30 records through the proxies")
        assert all(cluster.proxies[n].accepted > accepted[n] for n in (1, 2, 3)), "a connection to every leader"

        cluster.cut_all()
        try:
            with pytest.raises(KafkaException):
                c.list_topics(topic, timeout=3)
            assert cluster.leader_of(topic, 0) is not None, "direct clients are not cut"
        finally:
            cluster.heal_all()
        healed = time.monotonic()
        wait_for(lambda: _metadata_answers(c, topic), 30, "metadata through the healed proxies")
        print(f"metadata through the proxies again {time.monotonic() - healed:.1f}s after heal_all")
        for i in range(30, 40):
            p.produce(topic, str(i).encode())
        assert p.flush(30) == 0
        wait_for(lambda: _take(c, got) >= 40, 30, "the records written after heal_all")
        assert sorted(int(m.value()) for m in got) == list(range(40))
    finally:
        c.close()


def _take(c: Consumer, got: list[Any]) -> int:
    """Adds to `got` what `c` has (waiting up to 0.2 s); returns how many `got` holds."""
    got.extend(m for m in c.consume(30, 0.2) if m.error() is None)
    return len(got)


def _metadata_answers(c: Consumer, topic: str) -> bool:
    try:
        c.list_topics(topic, timeout=2)
        return True
    except KafkaException:
        return False


def _high_watermark(cluster: Cluster, topic: str) -> int | None:
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, 0), 5, False)[1])
    except KafkaException:
        return None
    finally:
        c.close()


def _other_leader(cluster: Cluster, topic: str, victim: int) -> int | None:
    """The leader of `topic`[0] if it is not `victim` (None: still `victim`, or none)."""
    leader = cluster.leader_of(topic, 0)
    return leader if leader != victim else None
