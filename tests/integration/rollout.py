"""A rolling upgrade driven from outside, as a deployment does it: the stages of `tests/apps/rollout.py`
each run as their own `pipeteer run --stage` process; items are pushed while a person decides tasks over
HTTP; each stage is replaced in turn by a process of another version (SIGTERM, or kill -9 for the chaos
variant, then a new process under a new instance name, as a Deployment's new pod is), and later rolled
back the same way. Used by the SQLite and the Kafka rollout tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.integration.kafka.procs import ROOT, StageProcess

APP = "tests.apps.rollout:app"
STAGES = ("a", "h", "b")


@dataclass
class Step:
    """One stage replaced: from which version to which, and how long the stage had no ready process."""

    stage: str
    old: int
    new: int
    unready: float
    killed: bool


@dataclass
class Rollout:
    url: str
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, StageProcess] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    _started: int = 0

    def start(self, stage: str, version: int) -> StageProcess:
        self._started += 1
        proc = StageProcess(APP, stage, self.url, f"{stage}-v{version}-{self._started}", self.log_dir,
                            env={**self.env, "ROLLOUT_VERSION": str(version)})
        proc.start()
        self.procs[stage], self.versions[stage] = proc, version
        return proc

    def start_all(self, version: int) -> None:
        for stage in STAGES:
            self.start(stage, version)
        for stage in STAGES:
            self.procs[stage].wait_ready(120)

    def replace(self, stage: str, version: int, *, kill: bool = False) -> Step:
        """Stop the stage's process (SIGTERM, or kill -9) and start one of `version`; the step says for how
        long the stage had no ready process (from the stop to the new one's /readyz 200)."""
        old, old_version = self.procs[stage], self.versions[stage]
        began = time.monotonic()
        if kill:
            old.kill9()
        else:
            old.stop()
        self.start(stage, version).wait_ready(120)
        step = Step(stage, old_version, version, time.monotonic() - began, kill)
        self.steps.append(step)
        return step

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def logs(self) -> str:
        """The tail of every process's log, for a failing test's message."""
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            out.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)


class Pusher(threading.Thread):
    """Pushes `In(i)` as `item-<i>` for i < n, at about `rate` items a second, through `pipeteer.connect`."""

    def __init__(self, url: str, n: int, rate: float) -> None:
        super().__init__(name="pusher", daemon=True)
        self.url, self.n, self.rate = url, n, rate
        self.pushed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._push())
        except BaseException as e:
            self.error = e

    async def _push(self) -> None:
        from pipeteer import connect
        from tests.apps.rollout import In, app

        queues = connect(app, self.url)
        try:
            began = time.monotonic()
            for i in range(self.n):
                await queues.Qin.push(f"item-{i}", In(i))
                self.pushed = i + 1
                delay = began + (i + 1) / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            queues.backend.close()


class Person(threading.Thread):
    """Reviewers working the human stage `h` over HTTP (`hands` decisions in flight at once, about `rate`
    a second in all, oldest tasks first as listed), whichever process serves the stage now; through a
    restart they wait and go on. A decision answers once it is durable (on Kafka, committed)."""

    def __init__(self, rollout: Rollout, rate: float, hands: int = 4) -> None:
        super().__init__(name="person", daemon=True)
        self.rollout, self.rate, self.hands = rollout, rate, hands
        self.decided: dict[str, int] = {}  # id -> version of the process that took the decision
        self.refused: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client, ThreadPoolExecutor(self.hands) as pool:
            while not self.stop_event.is_set():
                base = self.rollout.procs["h"].base
                try:
                    ids = client.get(f"{base}/h/tasks").raise_for_status().json()
                except (httpx.HTTPError, ValueError):
                    time.sleep(0.2)  # the stage is being replaced
                    continue
                ids = [id for id in ids if id not in self.decided][: 5 * self.hands]
                if not ids:
                    time.sleep(0.2)
                    continue
                began = time.monotonic()
                list(pool.map(self._decide, [client] * len(ids), [base] * len(ids), ids))
                time.sleep(max(0.0, began + len(ids) / self.rate - time.monotonic()))

    def _decide(self, client: httpx.Client, base: str, id: str) -> None:
        if self.stop_event.is_set():
            return
        with contextlib.suppress(httpx.HTTPError):
            r = client.post(f"{base}/h/decide", params={"id": id, "ok": "true"})
            if r.status_code == 200:
                self.decided[id] = int(r.json()["version"])
            elif r.status_code != 404:  # (404: decided just before a restart)
                self.refused.append(f"{id}: {r.status_code} {r.text[:200]}")


def upgrade_and_roll_back(rollout: Rollout, pusher: Pusher, *, kill: bool = False) -> None:
    """Mid-stream, each stage to version 2 in turn (old and new side by side meanwhile), then each back
    to version 1; with `kill`, the old process of a and b is killed with SIGKILL instead of stopped."""
    n = pusher.n
    wait_for(lambda: pusher.pushed >= n // 5, 120, "pushes")
    for stage in STAGES:
        rollout.replace(stage, 2, kill=kill and stage != "h")
        time.sleep(2)  # v2 of this stage beside v1 of the next
    wait_for(lambda: pusher.pushed >= n // 2, 120, "pushes")
    for stage in STAGES:
        rollout.replace(stage, 1, kill=kill and stage == "b")
        time.sleep(1)


@contextlib.contextmanager
def rolled(url: str, log_dir: Path, n: int, *, kill: bool, finished: Callable[[], int]) -> Iterator[tuple[Rollout, Person]]:
    """The whole scenario: version 1 of every stage started, `n` items pushed while reviewers decide,
    each stage upgraded then rolled back (`upgrade_and_roll_back`), until `finished()` counts `n` outputs;
    yields with the processes still running (to ask them), and stops them all on leaving."""
    rollout = Rollout(url, log_dir)
    pusher = Pusher(url, n, rate=40)
    person = Person(rollout, rate=30)
    try:
        rollout.start_all(1)
        pusher.start()
        person.start()
        upgrade_and_roll_back(rollout, pusher, kill=kill)
        pusher.join(120)
        assert pusher.error is None and pusher.pushed == n, pusher.error
        try:
            wait_for(lambda: finished() >= n, 240, f"{n} outputs")
        except TimeoutError:
            raise AssertionError(f"{finished()} of {n} out; refused decisions {person.refused[:5]}\n{rollout.logs()}") from None
        yield rollout, person
    finally:
        person.stop_event.set()
        rollout.stop_all()
        person.join(10)


def assert_version_3_refused(url: str) -> None:
    """Version 3 (`Mid.n` int -> str) started beside version 1: the stage writing Mid and the one reading
    it each refuse to start (exit non-zero, `release refused`, naming the state) before serving anything."""
    for stage in ("a", "h"):
        result = subprocess.run(
            [sys.executable, "-m", "pipeteer", "run", APP, "--backend", url, "--stage", stage, "--port", "0"],
            cwd=ROOT, env={**os.environ, "ROLLOUT_VERSION": "3"}, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode != 0, result.stderr
        assert "release refused" in result.stderr and "tests.apps.rollout.Mid" in result.stderr, result.stderr


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout}s for {what}")
