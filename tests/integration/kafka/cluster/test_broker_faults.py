"""Broker, network and stage faults on a 3-broker cluster (`tests/kafka_cluster.py`): nothing lost, nothing
duplicated, and no instance that looks healthy while it does nothing.

The workflow is `tests/apps/faults.py` (a -> h, a person -> b), every stage a real `pipeteer run`
process: two instances of `a` (static members, so a fenced member must be replaced), one of `h`
worked over HTTP by reviewers, two of `b`, one of which reaches the brokers through the cluster's
TCP proxies (the others directly), so that a network fault cuts that one instance only. Topics have
the production profile (3 replicas, `min.insync.replicas=2`). Jobs are pushed at a steady rate while,
one after the other, never two brokers down at once:

1. the broker leading a partition of a's input is killed (-9), and restarted 7 s later; a third `b`
   instance is started meanwhile, and must be ready soon after Kafka has moved the leaders (it must
   not wait out a client timeout on the dead broker);
2. the transaction coordinator of one `a` instance's transactional id is killed, restarted 7 s later;
3. a broker is stopped (SIGSTOP) for 15 s;
4. one `a` instance is killed (-9) and restarted under its name;
5. b-2 is cut off its brokers for 30 s (connections refused): it says so on /readyz (not /healthz:
   a restart would not help) and works again after;
6. b-2's traffic gets 200 ms of latency each way for 15 s.

Then: every job gives exactly one output with the right values (read_committed), the poison job is
dead-lettered exactly once, every instance is ready and healthy, and every `a` and `b` instance
takes part in a last batch (none is a zombie holding partitions it does not serve). The output gap
each fault caused is printed beside the moment Kafka itself moved the partition's leadership.

A second test: an instance whose brokers stop answering without refusing (a black hole: its
connections stay open, nothing comes back) while work waits fails /readyz, then /healthz, and
`pipeteer run` exits with status 3, so that whatever supervises it starts it afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeteer.codec import codec_for
from pipeteer.spec import names
from tests.apps.faults import POISON, Done, Job, score
from tests.integration.kafka.procs import StageProcess, read_topic

pytestmark = pytest.mark.slow

if os.environ.get("PIPETEER_TEST_BROKER") == "noida":
    pytest.skip("the broker-fault suite runs on Apache Kafka only", allow_module_level=True)

APP = "tests.apps.faults:app"
WORKFLOW = "faults"
N = int(os.environ.get("PIPETEER_TEST_FAULT_ITEMS", "3000"))
RATE = 30.0
"""Jobs pushed per second: the run lasts as long as the faults do."""
CLIENT = "session.timeout.ms=6000&heartbeat.interval.ms=500"
"""As the other Kafka tests (a killed instance's partitions move in 6 s, not 45): shorter than the 9 s
the cluster needs to replace a dead group coordinator, so the static members' sessions expire through
a coordinator's death, and their consumers are fenced and must be replaced (`faults.Fault.CONSUMER`)."""


def url_of(bootstrap: str, prefix: str) -> str:
    return f"kafka://{bootstrap}?prefix={prefix}&topic_profile=production&{CLIENT}"


class Arrivals(threading.Thread):
    """Reads `topics` read_committed from the beginning as records arrive, noting when each key first came."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        super().__init__(name="arrivals", daemon=True)
        self.bootstrap, self.topics = bootstrap, topics
        self.seen: dict[str, list[tuple[float, str]]] = {t: [] for t in topics}
        self.stop_event = threading.Event()

    def run(self) -> None:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"arrivals-{uuid.uuid4().hex[:6]}",
                      "isolation.level": "read_committed", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
        try:
            assigned = False
            while not self.stop_event.is_set():
                if not assigned:
                    with contextlib.suppress(Exception):
                        meta = c.list_topics(timeout=5).topics
                        if all(t in meta and meta[t].partitions for t in self.topics):
                            c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in self.topics
                                      for p in meta[t].partitions])
                            assigned = True
                    time.sleep(0.2)
                    continue
                for m in c.consume(500, 0.2):
                    if m.error() is None:
                        self.seen[m.topic()].append((time.monotonic(), m.key().decode()))
        finally:
            c.close()

    def gap(self, topic: str, start: float, end: float) -> float:
        """The longest time without a new record of `topic` between `start` and `end` (monotonic)."""
        times = [start] + [t for t, _ in self.seen[topic] if start < t < end] + [end]
        return max(b - a for a, b in itertools.pairwise(times))


class Reviewers(threading.Thread):
    """People working the human stage `h` over HTTP, whichever instance serves it; they wait through faults."""

    def __init__(self, proc: StageProcess, rate: float) -> None:
        super().__init__(name="reviewers", daemon=True)
        self.proc, self.rate = proc, rate
        self.decided: set[str] = set()
        self.refused: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client, ThreadPoolExecutor(4) as pool:
            while not self.stop_event.is_set():
                try:
                    ids = client.get(f"{self.proc.base}/h/tasks").raise_for_status().json()
                except (httpx.HTTPError, ValueError):
                    time.sleep(0.2)
                    continue
                ids = [i for i in ids if i not in self.decided][:20]
                if not ids:
                    time.sleep(0.2)
                    continue
                began = time.monotonic()
                list(pool.map(lambda i: self._decide(client, i), ids))
                time.sleep(max(0.0, began + len(ids) / self.rate - time.monotonic()))

    def _decide(self, client: httpx.Client, id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            r = client.post(f"{self.proc.base}/h/decide", params={"id": id, "ok": "true"})
            if r.status_code == 200:
                self.decided.add(id)
            elif r.status_code not in (404, 503):  # (404: decided just before a restart; 503: not ready)
                self.refused.append(f"{id}: {r.status_code} {r.text[:200]}")


class Probes(threading.Thread):
    """Asks every process's /readyz and /healthz every half second, as Kubernetes would; and as its
    restart policy would, starts again (under its name) an instance its watchdog stopped (exit status 3:
    it said it was stuck). Such restarts are counted in `restarts` and printed by the test."""

    def __init__(self, procs: Callable[[], dict[str, StageProcess]]) -> None:
        super().__init__(name="probes", daemon=True)
        self.procs = procs
        self.answers: dict[str, list[tuple[float, int, int]]] = {}  # instance -> (when, readyz, healthz)
        self.reasons: dict[str, list[tuple[float, str]]] = {}  # instance -> (when, why not ready)
        self.restarts: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self.stop_event.is_set():
                for name, p in list(self.procs().items()):
                    if not p.alive():
                        if p.proc is not None and p.proc.returncode == 3:  # the watchdog's exit: restarted
                            self.restarts.append(f"{name} after {p.starts} start(s)")
                            p.start()
                        continue
                    codes = []
                    for path in ("/readyz", "/healthz"):
                        try:
                            r = client.get(p.base + path)
                            codes.append(r.status_code)
                            if path == "/readyz" and r.status_code != 200:
                                self.reasons.setdefault(name, []).append(
                                    (time.monotonic(), "; ".join(r.json().get("reasons", []))[:300]))
                        except (httpx.HTTPError, ValueError):
                            codes.append(0)
                    self.answers.setdefault(name, []).append((time.monotonic(), codes[0], codes[1]))
                time.sleep(0.5)

    def between(self, name: str, start: float, end: float) -> list[tuple[float, int, int]]:
        return [a for a in self.answers.get(name, []) if start <= a[0] <= end]


async def push_jobs(url: str, ids: list[int], rate: float, pushed: list[int], when: list[float] | None = None) -> None:
    from pipeteer.queues.kafka import KafkaBackend

    backend = KafkaBackend.from_url(url, workflow_name=WORKFLOW, env={})
    q = backend.make_queue(Job, ["input"])
    try:
        began = time.monotonic()
        for k, n in enumerate(ids):
            await q.push(f"job-{n}", Job(n))
            pushed.append(n)
            if when is not None:
                when[:] = [time.monotonic()]
            delay = began + (k + 1) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    finally:
        backend.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if condition():
            return time.monotonic() - began
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}")


def answer(proc: StageProcess, path: str) -> int:
    """The status `path` answers with, 0 when the process does not answer (not running, starting)."""
    try:
        return httpx.get(proc.base + path, timeout=3).status_code
    except httpx.HTTPError:
        return 0


def consumed(proc: StageProcess, stage: str) -> float:
    """The items an instance has finished reading, from its /metrics."""
    text = httpx.get(proc.base + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("pipeteer_items_consumed_total{") and f'stage="{stage}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@contextlib.contextmanager
def running(procs: dict[str, StageProcess]) -> Iterator[None]:
    try:
        for p in procs.values():
            p.start()
        for p in procs.values():
            p.wait_ready(120)
        yield
    finally:
        for p in procs.values():
            p.stop()


def logs(log_dir: Path) -> str:
    out = []
    for path in sorted(log_dir.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()
        out.append(f"--- {path.name}\n" + "\n".join(lines[-12:]))
    return "\n".join(out)


@pytest.mark.timeout(900)
def test_broker_and_network_faults_lose_nothing_and_leave_no_zombie(kafka_cluster: Any, tmp_path: Path) -> None:
    cluster = kafka_cluster
    prefix = f"f{uuid.uuid4().hex[:8]}"
    direct, proxied = url_of(cluster.bootstrap, prefix), url_of(cluster.proxied_bootstrap, prefix)
    env: dict[str, str] = {}  # (the watchdog at its default: an instance it stops was stuck for a minute)
    static = {**env, "PIPETEER_STATIC_MEMBERSHIP": "true"}
    procs = {
        "a-1": StageProcess(APP, "a", direct, "a-1", tmp_path, env=static),
        "a-2": StageProcess(APP, "a", direct, "a-2", tmp_path, env=static),
        "h-1": StageProcess(APP, "h", direct, "h-1", tmp_path, env=env),
        "b-1": StageProcess(APP, "b", direct, "b-1", tmp_path, env=env),
        "b-2": StageProcess(APP, "b", proxied, "b-2", tmp_path, env=env),
    }
    topic = {"input": names.queue_topic(WORKFLOW, ["input"], prefix),
             "scored": names.queue_topic(WORKFLOW, ["h"], prefix),
             "output": names.queue_topic(WORKFLOW, ["output"], prefix)}
    jobs = [*range(N // 3), POISON, *range(N // 3, N)]
    pushed: list[int] = []
    last_push: list[float] = []
    pusher = threading.Thread(target=lambda: asyncio.run(push_jobs(direct, jobs, RATE, pushed, last_push)), daemon=True)
    arrivals = Arrivals(cluster.bootstrap, [topic["scored"], topic["output"]])
    probes = Probes(lambda: procs)
    faults: list[tuple[str, float, float | None]] = []  # (fault, when, Kafka's own reaction time)
    reviewers = Reviewers(procs["h-1"], rate=RATE * 1.5)
    with running(procs):
        for t in (arrivals, probes, reviewers, pusher):
            t.start()
        try:
            wait_for(lambda: len(pushed) > 150, 60, "the first pushes")

            # 1. the leader of a partition of a's input, killed
            victim = cluster.leader_of(topic["input"], 0)
            began = time.monotonic()
            cluster.kill9(victim)
            procs["b-3"] = StageProcess(APP, "b", direct, "b-3", tmp_path, env=env).start()  # started meanwhile
            moved = wait_for(lambda: cluster.leader_of(topic["input"], 0) not in (victim, None), 60, "a new leader")
            faults.append(("leader kill -9", began, moved))
            procs["b-3"].wait_ready(90)  # (the broker still down)
            started = time.monotonic() - began
            print(f"\nb-3, started while a broker was down, ready after {started:.1f}s (Kafka moved leaders after {moved:.1f}s)")
            why = sorted({f"{t - began:.0f}s: {r}" for t, r in probes.reasons.get("b-3", [])})
            # (a client timeout waited out on the dead broker would be 40 s on its own)
            assert started < moved + 20, f"a stage started while one broker of three was down took {started:.0f}s to be ready: {why}"
            time.sleep(max(0.0, began + 7 - time.monotonic()))
            cluster.restart(victim)
            cluster.wait_healthy()
            time.sleep(3)

            # 2. the transaction coordinator of a-1, killed
            tid = names.transactional_id(WORKFLOW, ["a"], "a-1", prefix)
            victim = cluster.transaction_coordinator(tid)
            began = time.monotonic()
            cluster.kill9(victim)
            moved = wait_for(lambda: cluster.transaction_coordinator(tid) not in (victim, None), 60, "a new coordinator")
            faults.append(("transaction coordinator kill -9", began, moved))
            time.sleep(max(0.0, began + 7 - time.monotonic()))
            cluster.restart(victim)
            cluster.wait_healthy()
            time.sleep(3)

            # 3. a broker stalled for 15 s
            victim = cluster.leader_of(topic["scored"], 0)
            began = time.monotonic()
            cluster.stop(victim)
            time.sleep(15)
            cluster.cont(victim)
            faults.append(("broker SIGSTOP 15 s", began, None))
            cluster.wait_healthy()
            time.sleep(3)

            # 4. an instance of a, killed and restarted under its name
            began = time.monotonic()
            with contextlib.suppress(ProcessLookupError):  # (unless its watchdog stopped it a moment ago)
                procs["a-1"].kill9()
            if not procs["a-1"].alive():
                procs["a-1"].start()
            procs["a-1"].wait_ready(60)
            faults.append(("stage a-1 kill -9", began, None))
            time.sleep(3)

            # 5. b-2 cut off its brokers for 30 s: unready (an outage: not unhealthy), then back
            began = time.monotonic()
            cluster.cut_all()
            try:
                wait_for(lambda: any(r == 503 for _, r, _ in probes.between("b-2", began, time.monotonic())),
                         25, "b-2 to say it is not ready while cut off")
                time.sleep(max(0.0, began + 30 - time.monotonic()))
                cut = probes.between("b-2", began + 20, time.monotonic())
            finally:
                cluster.heal_all()
            # (0: no answer, e.g. while the instance is started again: not ready, not a failed liveness probe)
            assert cut and all(h != 503 for _, _, h in cut), f"b-2's /healthz failed while cut off (an outage): {cut}"
            assert all(r in (503, 0) for _, r, _ in cut), f"b-2 said ready while cut off its brokers: {cut}"
            back = wait_for(lambda: answer(procs["b-2"], "/readyz") == 200, 60, "b-2 ready again after the cut")
            faults.append(("b-2 network cut 30 s", began, None))
            print(f"b-2 ready {back:.1f}s after its network came back")

            # 6. 200 ms latency on b-2's traffic for 15 s
            cluster.latency_all(0.2)
            time.sleep(15)
            cluster.latency_all(0.0)

            pusher.join(300)
            pushing_ended = last_push[0]
            assert not pusher.is_alive() and len(pushed) == len(jobs)
            wait_for(lambda: len({k for _, k in arrivals.seen[topic["output"]]}) >= N, 240, f"{N} outputs")

            # no zombie: every instance alive, ready, healthy, and each a and b instance takes part in a last batch
            for name, p in procs.items():
                wait_for(lambda p=p: answer(p, "/readyz") == 200, 90, f"{name} ready")  # type: ignore[misc]
                assert answer(p, "/healthz") == 200, name
            before = {name: consumed(p, name[0]) for name, p in procs.items() if name[0] in "ab"}
            last = list(range(N, N + 120))
            asyncio.run(push_jobs(direct, last, 200.0, []))
            wait_for(lambda: len({k for _, k in arrivals.seen[topic["output"]]}) >= N + len(last), 120, "the last batch")
            idle = [name for name in before if consumed(procs[name], name[0]) <= before[name]]
            assert not idle, f"instances holding partitions without serving them: {idle}"
        except BaseException as e:
            raise AssertionError(f"{e}\n{logs(tmp_path)}") from e
        finally:
            for t in (arrivals, probes, reviewers):
                t.stop_event.set()
            cluster.repair()  # (a fault left in place by a failure would fail the session's next tests)

    outputs = read_topic(cluster.bootstrap, topic["output"])
    keys = [m.key().decode() for m in outputs]
    total = N + 120
    assert len(set(keys)) == total, f"{total - len(set(keys))} of {total} jobs lost"
    assert len(keys) == total, f"{len(keys) - total} duplicate outputs"
    codec = codec_for(Done)
    for m in outputs:
        n = int(m.key().decode().removeprefix("job-"))
        assert codec.decode(m.value()) == Done(n, score(n), True, n + score(n))
    dead = read_topic(cluster.bootstrap, names.dead_letter_topic(WORKFLOW, ["a"], prefix))
    assert [m.key().decode() for m in dead] == [f"job-{POISON}"], "the poison job is dead-lettered once"
    assert not reviewers.refused, reviewers.refused[:5]

    print(f"\ninstances stopped by their watchdog and started again: {probes.restarts or 'none'}")
    print("output gap per fault (a's outputs while jobs were pushed; Kafka's own reaction where it has one):")
    for fault, began, kafka in faults:
        end = min(began + 45, pushing_ended)
        gap = f"gap {arrivals.gap(topic['scored'], began, end):5.1f}s" if end > began + 20 else "(the input had ended)"
        print(f"  {fault:34s} {gap}" + (f"  (Kafka moved it after {kafka:.1f}s)" if kafka else ""))


async def push_checked(url: str, ids: range, rate: float, pushed: list[int]) -> None:
    """Reviewed jobs straight into b's input, at `rate` a second."""
    from pipeteer.plan import Plan
    from pipeteer.queues.kafka import KafkaBackend
    from tests.apps.faults import Checked, workflow

    backend = KafkaBackend.from_url(url, plan=Plan.of(workflow), env={})  # (bound: "b" is a stage's queue)
    q = backend.make_queue(Checked, ["b"])
    try:
        began = time.monotonic()
        for k, n in enumerate(ids):
            await q.push(f"job-{n}", Checked(n, score(n), True))
            pushed.append(n)
            await asyncio.sleep(max(0.0, began + (k + 1) / rate - time.monotonic()))
    finally:
        backend.close()


@pytest.mark.timeout(600)
def test_an_instance_whose_brokers_stop_answering_says_so_then_exits(kafka_cluster: Any, tmp_path: Path) -> None:
    """A black hole (connections open, nothing answered: no client error says the cluster is away) while
    work waits: /readyz fails after 10 s, /healthz after the stall limit, and `pipeteer run` exits with
    status 3. A new instance then finishes the work: nothing lost, nothing duplicated."""
    cluster = kafka_cluster
    prefix = f"w{uuid.uuid4().hex[:8]}"
    direct, proxied = url_of(cluster.bootstrap, prefix), url_of(cluster.proxied_bootstrap, prefix)
    stall = 20
    stuck = StageProcess(APP, "b", proxied, "b-stuck", tmp_path, env={"PIPETEER_STALL_SECONDS": str(stall)})
    fresh = StageProcess(APP, "b", direct, "b-fresh", tmp_path)
    total = 1200
    pushed: list[int] = []
    pusher = threading.Thread(target=lambda: asyncio.run(push_checked(direct, range(total), 60.0, pushed)), daemon=True)
    out = names.queue_topic(WORKFLOW, ["output"], prefix)
    arrivals = Arrivals(cluster.bootstrap, [out])
    try:
        stuck.start().wait_ready(120)
        arrivals.start()
        pusher.start()
        wait_for(lambda: len(arrivals.seen[out]) >= 100, 60, "the stage at work")
        cluster.blackhole_all()
        began = time.monotonic()

        def answer(path: str) -> int:
            try:
                return httpx.get(stuck.base + path, timeout=3).status_code
            except httpx.HTTPError:
                return 0

        unready = wait_for(lambda: answer("/readyz") == 503, 60, "/readyz to fail")
        assert answer("/healthz") == 200 or time.monotonic() - began >= stall, "unhealthy before the stall limit"
        wait_for(lambda: not stuck.alive() or answer("/healthz") == 503, stall + 40, "/healthz to fail")
        assert stuck.proc is not None
        code = stuck.proc.wait(60)
        exited = time.monotonic() - began
        assert code == 3, f"pipeteer run exited with {code}"
        log = "".join(p.read_text(errors="replace") for p in tmp_path.glob("b-stuck.*.log"))
        assert "stuck; stopping (exit status 3)" in log and "no progress for" in log, log[-3000:]
        print(f"\nblack hole: unready after {unready:.1f}s, exited (status 3) after {exited:.1f}s (stall limit {stall}s)")
    except BaseException as e:
        raise AssertionError(f"{e}\n{logs(tmp_path)}") from e
    finally:
        cluster.heal_all()
    try:
        fresh.start().wait_ready(120)
        pusher.join(120)
        wait_for(lambda: len({k for _, k in arrivals.seen[out]}) >= total, 180, f"{total} outputs")
    finally:
        arrivals.stop_event.set()
        fresh.stop()
        stuck.stop()
    keys = [m.key().decode() for m in read_topic(cluster.bootstrap, out)]
    assert len(set(keys)) == total, f"{total - len(set(keys))} of {total} lost"
    assert len(keys) == total, f"{len(keys) - total} duplicated"
