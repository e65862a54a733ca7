"""A 3-node Apache Kafka cluster on loopback, for the tests that need real replication and real faults.

The single broker of `tests/kafka_broker.py` cannot lose a leader, a transaction coordinator or a
replica: with one node, a fault is an outage. This cluster is three KRaft nodes, each broker and
controller in one JVM (`process.roles=broker,controller`) with a static 3-voter quorum
(`controller.quorum.voters`, every data directory formatted with the same cluster id, without
`--standalone`), from the same Maven jars, helpers and warnings-only log4j configuration as the
single broker, with a smaller heap per node (`HEAP`), and production settings: replication factor
3, `min.insync.replicas=2` (so one node may be down without refusing a write), replicated internal
topics. Everything else is Kafka's defaults, so a fault takes as long to notice as in production
(a killed node is fenced after `broker.session.timeout.ms`, 9 s).

Each node has two client listeners:

- `PLAINTEXT`, advertised at its own port: the harness's (`Cluster.bootstrap`), and the
  replication between brokers (`inter.broker.listener.name`);
- `PROXIED`, advertised at the port of a TCP proxy in front of that node (`tests/netproxy.py`,
  `Cluster.proxies`, `Cluster.proxied_bootstrap`): a client that bootstraps there learns the proxies'
  ports from metadata and only ever connects through them, so a test can cut, black-hole or slow
  that client's traffic alone (`cut_all`, `blackhole_all`, `latency_all`, `heal_all`). Each proxy
  binds its port before its node starts, since the node advertises it.

Faults: `kill9` / `restart` (the same node id and data directory: it recovers its logs and rejoins),
`stop` / `cont` (SIGSTOP / SIGCONT: a node that hangs without closing its connections). Where
things are: `leader_of`, `transaction_coordinator`, `group_coordinator`. `wait_healthy` waits for
every node in metadata and every partition with its full ISR (what a test waits for between faults).

Start-up runs the three format steps, then the three JVMs, in parallel, then creates the internal
topics (`__consumer_offsets`, `__transaction_state`) so that the first transaction or consumer group
of a test does not pay for it and the coordinators can be asked for at once. `Cluster.startup`
records how long each part took (`started_in`: 15-18 s on 2 cores, of which 4.5 s formatting).

Every JVM dies with the process that started it (even killed with -9): PR_SET_PDEATHSIG as in
`tests/kafka_broker.py`, but SIGKILL rather than SIGTERM, because a node may be SIGSTOPped at that
moment and a stopped JVM never handles a SIGTERM; and every JVM is started from one long-lived
thread of the cluster's, because Linux sends that signal when the *thread* that forked the child
exits (a node restarted from a short-lived thread would die with it).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from tests.kafka_broker import (
    LOG4J2,
    _java,
    can_run_apache_kafka,
    free_port,
    resolve_kafka_jars,
    wait_for_kafka,
)
from tests.netproxy import Proxy

NODE_IDS = (1, 2, 3)
HEAP = ("-Xms256m", "-Xmx768m", "-XX:TieredStopAtLevel=1")
"""Per node: three nodes share this machine with the stages under test. The JIT stops at C1: three
JVMs compiling Kafka at once on two cores took 28 s to start, 15 s so (a node at these rates needs
little CPU either way)."""
START_TIMEOUT = 120.0
"""For the whole cluster to start, or one node to rejoin (two cores: three JVMs start at once)."""
HEALTHY_TIMEOUT = 120.0
TX_PARTITIONS = 6
"""`transaction.state.log.num.partitions`: `transaction_coordinator` computes a partition of it."""
GROUP_PARTITIONS = 6
"""`offsets.topic.num.partitions`: `group_coordinator` computes a partition of it."""

log = logging.getLogger(__name__)
_client_log = logging.getLogger(f"{__name__}.client")
"""The harness's own Kafka clients log here (a node being down is expected, not news on stderr)."""

T = TypeVar("T")


def java_string_hash(s: str) -> int:
    """Java's `String.hashCode()`: 31-based over UTF-16 code units, in 32-bit two's complement.

    >>> java_string_hash(""), java_string_hash("a"), java_string_hash("polygenelubricants")
    (0, 97, -2147483648)
    """
    h = 0
    units = s.encode("utf-16-le")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "little")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def kafka_abs(n: int) -> int:
    """Kafka's `Utils.abs`: `Math.abs`, except `Integer.MIN_VALUE` gives 0 (not itself, nor `n & 0x7fffffff`).

    Both coordinators place a key with it: the partition of `__transaction_state` (or
    `__consumer_offsets`) is `Utils.abs(key.hashCode()) % partitions` (Kafka 4.4's
    `TransactionStateManager.partitionFor` and `GroupCoordinatorService.partitionFor`). It differs
    from the producer partitioner's `Utils.toPositive` (`n & 0x7fffffff`) for every negative hash.

    >>> kafka_abs(-1), kafka_abs(-(2**31)), kafka_abs(5)
    (1, 0, 5)
    """
    return 0 if n == -(2**31) else abs(n)


def coordinator_partition(key: str, partitions: int) -> int:
    """The partition of the internal topic whose leader coordinates `key` (a transactional id or a group)."""
    return kafka_abs(java_string_hash(key)) % partitions


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Until `condition()` returns something truthy (returned); `TimeoutError` naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(interval)


def cluster_properties(node: Node, voters: str) -> dict[str, str]:
    """One node of the 3-node cluster: broker and controller in one process, production replication."""
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.id),
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},PROXIED://127.0.0.1:{node.proxied_listener_port},"
        f"CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port},PROXIED://127.0.0.1:{node.proxied_port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.quorum.voters": voters,
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(node.dir / "data"),
        "num.partitions": "1",
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "offsets.topic.num.partitions": str(GROUP_PARTITIONS),
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "transaction.state.log.num.partitions": str(TX_PARTITIONS),
        "share.coordinator.state.topic.replication.factor": "3",
        "share.coordinator.state.topic.min.isr": "2",
        "group.initial.rebalance.delay.ms": "0",
        # as the single broker: a killed producer's open transaction is aborted within a second of its timeout
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    }


def _die_with_parent() -> None:
    """In a node's process before it runs: SIGKILL when the thread that started it exits (see the module docstring)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _heap(command: list[str]) -> list[str]:
    """`tests.kafka_broker._java`'s command with this cluster's heap instead of the single broker's."""
    from tests import kafka_broker

    out = [a for a in command if a not in kafka_broker.HEAP]
    return [out[0], *HEAP, *out[1:]]


@dataclass
class Node:
    """One node (broker and controller): its ports, its directory, and its current JVM."""

    id: int
    port: int
    """The PLAINTEXT listener: direct, for the harness and replication."""
    proxied_port: int
    """The port advertised on the PROXIED listener: the proxy in front of this node."""
    proxied_listener_port: int
    """Where the PROXIED listener really listens: the proxy's upstream."""
    controller_port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    stopped: bool = False
    """SIGSTOPped by `Cluster.stop` (and not continued yet)."""
    starts: int = 0

    @property
    def pid(self) -> int | None:
        """The pid of its current JVM, None when it is not running."""
        return self.proc.pid if self.alive() and self.proc is not None else None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        """Whether its JVM is running (a SIGSTOPped node is alive)."""
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """Three Apache Kafka nodes on loopback, a TCP proxy in front of each; see the module docstring.
    Start it with `kafka_cluster`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.cluster_id = ""
        self.nodes: list[Node] = []
        self.startup: dict[str, float] = {}
        """Seconds each part of the start took: `format`, `answer` (every node answers), `metadata` (all
        three registered), `internal topics` (created, with full ISR), and `total`."""
        # every JVM is forked by this thread (PR_SET_PDEATHSIG follows the forking thread)
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="kafka-cluster-spawner")
        self.proxies: dict[int, Proxy] = {}
        """Node id -> the TCP proxy in front of its PROXIED listener."""
        self._logs: dict[int, IO[bytes]] = {}
        self._jars: Path | None = None

    # --- where it is --------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """The three nodes' direct (PLAINTEXT) listeners."""
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def proxied_bootstrap(self) -> str:
        """The three proxies' ports: a client bootstrapped here only ever connects through them."""
        return ",".join(f"127.0.0.1:{n.proxied_port}" for n in self.nodes)

    @property
    def started_in(self) -> float:
        """Seconds from the start of `start()` to a cluster ready for transactions."""
        return self.startup.get("total", float("nan"))

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"no node {node_id} (nodes: {[n.id for n in self.nodes]})")

    # --- start and stop -----------------------------------------------------------------------

    def start(self) -> Cluster:
        """Format the three data directories with one cluster id and start the three nodes, in parallel."""
        began = time.monotonic()
        self._jars = resolve_kafka_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cluster_id = "-"
        while self.cluster_id.startswith("-"):  # as Kafka's own ids: one starting with "-" reads as an option
            self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        for i in NODE_IDS:
            d = self.data_dir / f"node-{i}"
            d.mkdir(parents=True, exist_ok=True)
            listener = free_port()
            proxy = self.proxies[i] = Proxy(listener, name=f"node {i}")  # its port is bound now, then advertised
            self.nodes.append(Node(i, free_port(), proxy.port, listener, free_port(), d))
        voters = ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for n in self.nodes:
            props = cluster_properties(n, voters)
            (n.dir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            (n.dir / "log4j2.yaml").write_text(LOG4J2)

        formats = [
            subprocess.Popen(
                self._command(n, "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                              "-c", str(n.dir / "server.properties")),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
            for n in self.nodes
        ]
        for n, p in zip(self.nodes, formats, strict=True):
            out, _ = p.communicate(timeout=START_TIMEOUT)
            if p.returncode != 0:
                raise RuntimeError(f"formatting node {n.id}'s log directory failed:\n{out.decode(errors='replace')}")
        self.startup["format"] = time.monotonic() - began

        for n in self.nodes:
            self._launch(n)
        for n in self.nodes:
            assert n.proc is not None
            wait_for_kafka(n.bootstrap, max(1.0, began + START_TIMEOUT - time.monotonic()), alive=n.proc)
        self.startup["answer"] = time.monotonic() - began
        self._wait_registered(set(NODE_IDS), began + START_TIMEOUT)
        self.startup["metadata"] = time.monotonic() - began
        self._create_internal_topics(began + START_TIMEOUT)
        self.wait_healthy(max(1.0, began + START_TIMEOUT - time.monotonic()))
        self.startup["internal topics"] = time.monotonic() - began
        self.startup["total"] = time.monotonic() - began
        log.info("3-node Kafka cluster ready in %.1fs (%s)", self.started_in, self.startup)
        return self

    def _command(self, node: Node, *args: str) -> list[str]:
        assert self._jars is not None
        return _heap(_java(self._jars, node.dir / "log4j2.yaml", *args))

    def _launch(self, node: Node) -> None:
        """Start `node`'s JVM (from the spawner thread), appending to its broker.log."""
        node.starts += 1
        if node.id in self._logs:
            self._logs.pop(node.id).close()
        out = self._logs[node.id] = open(node.dir / "broker.log", "ab")
        out.write(f"--- start {node.starts} of node {node.id}\n".encode())
        out.flush()
        node.proc = self._spawner.submit(
            subprocess.Popen,
            self._command(node, "kafka.Kafka", str(node.dir / "server.properties")),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent,
        ).result()
        node.stopped = False

    def _wait_registered(self, ids: set[int], deadline: float) -> None:
        def registered() -> bool:
            for n in self.nodes:
                if n.id in ids and not n.alive():
                    raise RuntimeError(f"node {n.id} exited with {n.proc.returncode if n.proc else None}: "
                                       f"see {n.dir / 'broker.log'}")
            with contextlib.suppress(Exception):
                return ids <= set(self.metadata().brokers)
            return False

        wait_for(registered, max(1.0, deadline - time.monotonic()), f"nodes {sorted(ids)} in the cluster's metadata")

    def _create_internal_topics(self, deadline: float) -> None:
        """`__transaction_state` (a transactional producer's first FindCoordinator) and `__consumer_offsets`
        (a group's), as the first test's clients would create them."""
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient

        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "logger": _client_log}
        p = Producer({**conf, "transactional.id": f"warm-up-{uuid.uuid4().hex[:6]}"})
        p.init_transactions(max(1.0, deadline - time.monotonic()))
        admin = AdminClient(conf)

        def offsets_topic() -> bool:
            with contextlib.suppress(Exception):
                admin.describe_consumer_groups(["warm-up"], request_timeout=5)["warm-up"].result()
            return "__consumer_offsets" in self.metadata().topics

        wait_for(offsets_topic, max(1.0, deadline - time.monotonic()), "__consumer_offsets to be created")

    def stop_all(self) -> None:
        """Kill every node (their data is thrown away: there is nothing to shut down cleanly) and remove the data."""
        for n in self.nodes:
            if n.alive():
                assert n.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n.proc.pid, signal.SIGKILL)
        for n in self.nodes:
            if n.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    n.proc.wait(30)
            shutil.rmtree(n.dir / "data", ignore_errors=True)
        for f in self._logs.values():
            f.close()
        self._logs.clear()
        for proxy in self.proxies.values():
            proxy.close()
        self._spawner.shutdown(wait=False)

    # --- faults -------------------------------------------------------------------------------

    def kill9(self, node_id: int) -> None:
        """SIGKILL the node's JVM (no controlled shutdown: its partitions move when Kafka notices)."""
        n = self.node(node_id)
        if not n.alive() or n.proc is None:
            raise RuntimeError(f"node {node_id} is not running")
        os.kill(n.proc.pid, signal.SIGKILL)
        n.proc.wait(30)
        n.stopped = False

    def restart(self, node_id: int, timeout: float = START_TIMEOUT) -> None:
        """Start the node again on its data directory (killing it first if it runs); returns once it is
        back in the cluster's metadata. Its partitions rejoin their ISRs a moment later (`wait_healthy`)."""
        n = self.node(node_id)
        if n.alive():
            self.kill9(node_id)
        began = time.monotonic()
        self._launch(n)
        assert n.proc is not None
        wait_for_kafka(n.bootstrap, timeout, alive=n.proc)
        self._wait_registered({node_id}, began + timeout)
        # and the others see it, not only itself
        wait_for(lambda: node_id in self.metadata(exclude={node_id}).brokers, max(1.0, began + timeout - time.monotonic()),
                 f"node {node_id} in the other nodes' metadata")

    def stop(self, node_id: int) -> None:
        """SIGSTOP the node: it hangs with its connections open (a GC pause, a frozen VM)."""
        n = self.node(node_id)
        if not n.alive() or n.proc is None:
            raise RuntimeError(f"node {node_id} is not running")
        os.kill(n.proc.pid, signal.SIGSTOP)
        n.stopped = True

    def cont(self, node_id: int) -> None:
        """SIGCONT a node `stop` stopped."""
        n = self.node(node_id)
        if not n.alive() or n.proc is None:
            raise RuntimeError(f"node {node_id} is not running")
        os.kill(n.proc.pid, signal.SIGCONT)
        n.stopped = False

    def cut_all(self) -> None:
        """Reset every connection through the proxies, and refuse new ones, until `heal_all`."""
        for proxy in self.proxies.values():
            proxy.cut()

    def blackhole_all(self) -> None:
        """Forward nothing through the proxies (connections stay open) until `heal_all`."""
        for proxy in self.proxies.values():
            proxy.blackhole()

    def latency_all(self, seconds: float) -> None:
        """Delay every chunk through the proxies by `seconds` each way (0: none)."""
        for proxy in self.proxies.values():
            proxy.latency(seconds)

    def heal_all(self) -> None:
        """Plain forwarding through every proxy again (no cut, black hole or latency)."""
        for proxy in self.proxies.values():
            proxy.heal()

    def repair(self, timeout: float = HEALTHY_TIMEOUT) -> None:
        """Undo every fault: heal the proxies, continue stopped nodes, restart dead ones, then `wait_healthy`."""
        self.heal_all()
        for n in self.nodes:
            if n.stopped:
                self.cont(n.id)
            if not n.alive():
                self.restart(n.id)
        self.wait_healthy(timeout)

    # --- where things are ---------------------------------------------------------------------

    def metadata(self, topic: str | None = None, exclude: Collection[int] = (), timeout: float = 3.0) -> Any:
        """Cluster metadata (confluent-kafka's `ClusterMetadata`) from one running, unstopped node, asked
        alone: a client that knows every node may send its request to a stopped one and wait for it."""
        from confluent_kafka.admin import AdminClient

        errors = []
        for n in self.nodes:
            if n.id in exclude or n.stopped or not n.alive():
                continue
            try:
                conf: dict[str, Any] = {"bootstrap.servers": n.bootstrap, "logger": _client_log}
                admin = AdminClient(conf)
                return admin.list_topics(topic, timeout=timeout)
            except Exception as e:
                errors.append(f"node {n.id}: {e}")
        raise RuntimeError(f"no node answered a metadata request: {errors or 'none is running'}")

    def leaders(self, topic: str) -> dict[int, int | None]:
        """Partition -> the node leading it in the cluster's metadata now (None while it has none)."""
        meta = self.metadata(topic).topics.get(topic)
        if meta is None or (meta.error is not None and not meta.partitions):
            raise LookupError(f"topic {topic} is not in the cluster's metadata: {meta.error if meta else 'absent'}")
        return {p.id: (p.leader if p.leader >= 0 else None) for p in meta.partitions.values()}

    def leader_of(self, topic: str, partition: int) -> int | None:
        """The node leading `topic`'s `partition` in the cluster's metadata now (None while it has none)."""
        leaders = self.leaders(topic)
        if partition not in leaders:
            raise LookupError(f"topic {topic} has no partition {partition}")
        return leaders[partition]

    def transaction_coordinator(self, transactional_id: str) -> int | None:
        """The node coordinating `transactional_id`: the leader of its partition of `__transaction_state`
        (confluent-kafka's AdminClient has no DescribeTransactions); None while that partition has no leader."""
        return self.leader_of("__transaction_state", coordinator_partition(transactional_id, TX_PARTITIONS))

    def group_coordinator(self, group: str) -> int | None:
        """The node coordinating consumer group `group`: the leader of its partition of `__consumer_offsets`.

        Computed as Kafka does rather than asked with DescribeGroups (which names the same node, a test
        checks), so that it answers while that node is down or stopped: then it names it until Kafka moves it.
        """
        return self.leader_of("__consumer_offsets", coordinator_partition(group, GROUP_PARTITIONS))

    def unhealthy(self) -> list[str]:
        """What keeps the cluster from being healthy now (nothing: healthy)."""
        down = [f"node {n.id} is {'stopped' if n.stopped else 'not running'}" for n in self.nodes
                if n.stopped or not n.alive()]
        if down:
            return down
        meta = self.metadata()
        problems = [f"node {i} is not in metadata" for i in NODE_IDS if i not in meta.brokers]
        for name, t in sorted(meta.topics.items()):
            if t.error is not None:
                problems.append(f"{name}: {t.error}")
            for p in t.partitions.values():
                if p.leader < 0 or sorted(p.isrs) != sorted(p.replicas):
                    problems.append(f"{name}[{p.id}] leader {p.leader} replicas {p.replicas} isr {p.isrs}")
        return problems

    def wait_healthy(self, timeout: float = HEALTHY_TIMEOUT) -> float:
        """Until every node is in metadata and every partition of every topic has a leader and its full ISR;
        returns how long that took. Fails at once when a node is down or stopped (it will not heal alone)."""
        began = time.monotonic()
        problems: list[str] = []
        while True:
            for n in self.nodes:
                if n.stopped or not n.alive():
                    raise RuntimeError(f"node {n.id} is {'stopped (SIGSTOP)' if n.stopped else 'not running'}: "
                                       "cont() or restart() it first")
            try:
                problems = self.unhealthy()
            except RuntimeError as e:
                problems = [str(e)]
            if not problems:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"the cluster is not healthy after {timeout:.0f}s: {problems[:10]}")
            time.sleep(0.2)


def unavailable() -> str | None:
    """Why the cluster cannot run here (None: it can)."""
    if not can_run_apache_kafka():
        return "the 3-node Kafka cluster needs `java`, and `mvn` or the cached jars (see tests/kafka_broker.py)"
    return None


@contextlib.contextmanager
def kafka_cluster(data_dir: Path) -> Iterator[Cluster]:
    """A started 3-node cluster under `data_dir` (node-1, node-2, node-3: properties, broker.log, data),
    stopped and its data removed on exit."""
    cluster = Cluster(data_dir)
    try:
        yield cluster.start()
    finally:
        cluster.stop_all()
