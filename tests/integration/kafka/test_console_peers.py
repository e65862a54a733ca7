"""The review console over two instances of a human stage on Kafka: every task seen and worked from either.

Each instance holds the tasks of the partitions it was assigned; a reviewer at one instance
lists all of them and completes tasks the other holds (the decision is applied there, in its
exactly-once transaction); a task leased at one instance is taken for reviewers at the other;
every task comes out once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from pipeteer.queues.kafka import KafkaBackend
from tests.integration.kafka.apps import Done, tasks_workflow
from tests.integration.kafka.procs import StageProcess, backend_url, push_tasks, read_topic
from tests.integration.serving import TOKENS, write_tokens
from tests.kafka_broker import Broker, free_port

N = 40


def held(base: str, who: str) -> set[str]:
    r = httpx.get(base + "/console/api/held", params={"stage": "answer"},
                  headers={"Authorization": f"Bearer {TOKENS[who]}"}, timeout=30)
    return {i["id"] for i in r.raise_for_status().json()["items"]}


def test_every_task_is_worked_from_either_instance(kafka_broker: Broker, kafka_prefix: str, tmp_path: Path) -> None:
    url = backend_url(kafka_broker, kafka_prefix, commit_interval_ms=50)
    asyncio.run(push_tasks(url, {f"task-{i:02d}": i for i in range(N)}))
    ports = [free_port(), free_port()]
    peers = ",".join(f"http://127.0.0.1:{p}" for p in ports)
    env = {"PIPETEER_AUTH_TOKEN_FILE": str(write_tokens(tmp_path / "tokens")), "PIPETEER_CONSOLE_PEERS": peers}
    a = StageProcess("tests.integration.kafka.apps:tasks_app", "answer", url, "answer-a", tmp_path,
                     env=env, fixed_port=ports[0])
    b = StageProcess("tests.integration.kafka.apps:tasks_app", "answer", url, "answer-b", tmp_path,
                     env=env, fixed_port=ports[1])
    try:
        a.start().wait_ready()
        b.start().wait_ready()
        everything = {f"task-{i:02d}" for i in range(N)}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the two share the partitions and hold every task
            mine_a, mine_b = held(a.base, "alice"), held(b.base, "alice")
            if mine_a and mine_b and mine_a | mine_b == everything and not mine_a & mine_b:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"the instances did not share the tasks: {len(mine_a)} + {len(mine_b)}")
        alice = httpx.Client(base_url=a.base, headers={"Authorization": f"Bearer {TOKENS['alice']}"}, timeout=30)
        bob = httpx.Client(base_url=b.base, headers={"Authorization": f"Bearer {TOKENS['bob']}"}, timeout=30)
        with alice, bob:
            listing = alice.get("/console/api/tasks", params={"stage": "answer", "limit": 500}).json()
            assert listing["total"] == N and {i["id"] for i in listing["items"]} == everything
            # alice (at a) opens a task that b holds: bob (at b) sees it taken and cannot have it
            theirs = sorted(mine_b)[0]
            opened = alice.post("/console/api/open", params={"stage": "answer", "id": theirs})
            assert opened.status_code == 200 and opened.json()["holder"] == "alice"
            taken = bob.post("/console/api/open", params={"stage": "answer", "id": theirs})
            assert taken.status_code == 409 and "alice" in taken.json()["detail"]
            # the app's own page at the instance holding it honours alice's lock too, naming her
            page = bob.post("/answer/answer", params={"id": theirs, "value": 1})
            assert page.status_code == 409 and page.json()["holder"] == "alice", page.text
            firsts = {alice.post("/console/api/next", params={"stage": "answer"}).json()["task"]["id"],
                      bob.post("/console/api/next", params={"stage": "answer"}).json()["task"]["id"]}
            assert len(firsts) == 2  # two reviewers, two different tasks
            # alice completes every task from a, half of them held by b; bob's late double is refused
            for id in sorted(everything):
                n = int(id.split("-")[1])
                r = alice.post("/console/api/decide", params={"stage": "answer", "id": id}, json={"value": n * 3})
                if r.status_code == 409 and "bob" in r.json()["detail"]:  # bob's lease from `next`
                    r = bob.post("/console/api/decide", params={"stage": "answer", "id": id}, json={"value": n * 3})
                assert r.status_code == 200 and r.json()["state"] in ("applied", "waiting"), (id, r.text)
            again = bob.post("/console/api/decide", params={"stage": "answer", "id": theirs}, json={"value": 0})
            assert again.status_code in (404, 409) and ("decided by alice" in again.json()["detail"]
                                                        or "not pending" in again.json()["detail"])
        outputs = read_done(kafka_broker.bootstrap, url)
        assert sorted(outputs) == sorted(everything) and all(outputs[id].answer == int(id[5:]) * 3 for id in outputs)
    finally:
        a.stop()
        b.stop()


def read_done(bootstrap: str, url: str, timeout: float = 60) -> dict[str, Done]:
    """The workflow's outputs (read_committed), each id once, or the test fails."""
    backend = KafkaBackend.from_url(url, workflow_name=tasks_workflow.name, env={})
    topic = backend.names.queue(["output"])
    codec = backend.make_queue(Done, ["output"]).codec
    backend.close()
    deadline = time.monotonic() + timeout
    records = read_topic(bootstrap, topic)
    while len(records) < N and time.monotonic() < deadline:
        time.sleep(0.5)
        records = read_topic(bootstrap, topic)
    ids = [r.key().decode() for r in records]
    assert len(ids) == len(set(ids)), "an output was emitted twice"
    return {r.key().decode(): codec.decode(r.value()) for r in records}
