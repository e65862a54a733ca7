"""Helpers of the live monitoring tests: the example's stages as separate `pipeteer run` processes,
Debian's Prometheus scraping them on loopback, and a person played over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from pipeteer import connect
from tests.integration.deploy.conftest import REPO
from tests.integration.serving import TOKENS, write_tokens
from tests.kafka_broker import free_port
from topologies.perspective_correction import app
from topologies.perspective_correction.samples import Sample
from topologies.perspective_correction.states import Input

APP_REF = "topologies.perspective_correction:app"
NAMESPACE = "live"
"""The namespace label Prometheus adds to every target (a ServiceMonitor adds the pods' namespace)."""
ALICE = {"Authorization": f"Bearer {TOKENS['alice']}"}


def wait_for(what: str, check: Any, timeout: float = 120, every: float = 0.2) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(every)


@dataclass
class Stage:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.communicate(timeout=60)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


@dataclass
class Stages:
    backend: str
    tmp: Path
    env: Mapping[str, str] = field(default_factory=dict)
    running: dict[str, Stage] = field(default_factory=dict)

    def start(self, name: str) -> Stage:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "PIPETEER_AUTH_TOKEN_FILE": str(write_tokens(self.tmp / "tokens")),
               **self.env}
        with (self.tmp / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipeteer", "run", APP_REF, "--backend", self.backend, "--stage", name,
                 "--port", str(port)],
                cwd=self.tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        stage = self.running[name] = Stage(name, port, proc)

        def up() -> bool:
            assert proc.poll() is None, (self.tmp / f"{name}.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{stage.base}/readyz", timeout=5).status_code == 200
            return False

        wait_for(f"stage {name} ready", up)
        return stage

    def stop_all(self) -> None:
        for s in self.running.values():
            s.stop()


@dataclass
class Prometheus:
    base: str
    proc: subprocess.Popen[bytes]

    def api(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.base}/api/v1/{path}", params=params, timeout=30)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{path} {params}: {r.status_code} {body}"
        return body["data"]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query (None when it has no series)."""
        result = self.api("query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None

    def values(self, expr: str, start: float, end: float) -> list[float]:
        """Every sample of a range query over [start, end], step 1s, all series."""
        data = self.api("query_range", query=expr, start=start, end=end, step="1s")
        return [float(v) for series in data["result"] for _, v in series["values"]]


def finite(values: list[float]) -> list[float]:
    return [v for v in values if not math.isnan(v) and not math.isinf(v)]


@contextlib.contextmanager
def prometheus_scraping(binary: Path, stages: Stages, rules: Path, tmp: Path) -> Iterator[Prometheus]:
    """Debian's Prometheus on a loopback port, scraping every stage each second, evaluating `rules`."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": "pipeteer",
            "static_configs": [{
                "targets": [f"127.0.0.1:{s.port}" for s in stages.running.values()],
                "labels": {"namespace": NAMESPACE},
            }],
        }],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (tmp / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(binary), f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", proc)
    try:
        def ready() -> bool:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{prom.base}/-/ready", timeout=5).status_code == 200
            return False

        wait_for("prometheus ready", ready)
        yield prom
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)


def push(backend: str, samples: Mapping[str, Sample]) -> None:
    async def go() -> None:
        queues = connect(app, backend)
        for id, s in samples.items():
            await queues.Qin.push(id, Input(s.img))
        queues.backend.close()

    asyncio.run(go())


def tasks(stage: Stage, path: str) -> list[str]:
    r = httpx.get(f"{stage.base}/{path}/tasks", headers=ALICE, timeout=30)
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()]


def look(stage: Stage, path: str, id: str) -> None:
    """A person opens the task's photo."""
    r = httpx.get(f"{stage.base}/{path}/tasks/{id}/image", headers=ALICE, timeout=30)
    assert r.status_code == 200 and r.content, r.text


def review(stages: Stages, samples: Mapping[str, Sample], approve: int) -> int:
    """Wait until every sample waits for a person; approve `approve` validation tasks and reject the rest
    (to manual correction), then correct every manual task with the sample's true corners.
    Returns how many tasks people completed."""
    validation, manual = stages.running["validation"], stages.running["manual-correct"]
    wait_for("every item at a person", lambda: len(tasks(validation, "validation")) + len(tasks(manual, "manual-correct"))
             == len(samples))
    to_validate, already_manual = tasks(validation, "validation"), len(tasks(manual, "manual-correct"))
    for i, id in enumerate(to_validate):
        look(validation, "validation", id)
        r = httpx.post(f"{validation.base}/validation/validate", params={"id": id, "ok": str(i < approve).lower()},
                       headers=ALICE, timeout=30)
        assert r.status_code == 200, r.text
    approved = min(approve, len(to_validate))
    expected = already_manual + len(to_validate) - approved
    wait_for("manual tasks", lambda: len(tasks(manual, "manual-correct")) == expected)
    for id in tasks(manual, "manual-correct"):
        look(manual, "manual-correct", id)
        corners = [list(map(float, c)) for c in samples[id].corners]
        r = httpx.post(f"{manual.base}/manual-correct/correct", json={"id": id, "corners": corners},
                       headers=ALICE, timeout=60)
        assert r.status_code == 200, r.text
    return len(to_validate) + expected
