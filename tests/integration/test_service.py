"""`pipeteer run` as users run it: a real process, real HTTP, SIGTERM to stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeteer import connect
from tests.apps.review import Doc, Published, app
from tests.integration.test_sqlite_processes import ROOT, free_port


async def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(url)


async def test_run_serves_web_stages_metrics_and_health(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeteer", "run", "tests.apps.review:app", "--backend", url, "--port", str(port)],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{base}/healthz", proc)
        qs = connect(app, url)
        for i in range(3):
            await qs.Qin.push(f"d{i}", Doc(f"headline{i} body"))
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/readyz")).json()["ready"] is True
            for _ in range(200):
                tasks = (await http.get("/review/tasks")).json()
                if len(tasks) == 3:
                    break
                await asyncio.sleep(0.02)
            assert [t["id"] for t in tasks] == ["d0", "d1", "d2"]
            assert (await http.post("/review/review", params={"id": "d1", "ok": True})).status_code == 200
            assert (await http.post("/review/review", params={"id": "d1", "ok": True})).status_code == 404
            page = (await http.get("/")).text
            assert 'href="/review/"' in page and '<td class="name">summarize</td>' in page
            metrics = (await http.get("/metrics")).text
        assert await qs.Qout.items() == [("d1", Published("headline1", True))]
        assert 'pipeteer_items_consumed_total{stage="summarize",workflow="news"} 3.0' in metrics
        assert 'pipeteer_items_produced_total{stage="review",workflow="news"} 1.0' in metrics
        assert 'pipeteer_pending_items{stage="review",workflow="news"} 2.0' in metrics
        assert 'pipeteer_processing_seconds_count{stage="summarize",workflow="news"} 3.0' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()


def test_run_rejects_unknown_stage_and_bad_backend() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeteer", "run", "tests.apps.review:app", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )

    r = run("--stage", "nope", "--backend", "memory://")
    assert r.returncode == 2
    assert "app 'news' has no stage 'nope' (stages: summarize, review)" in r.stderr
    r = run("--backend", "postgres://x")
    assert r.returncode == 2 and "unknown backend URL 'postgres://x'" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "pipeteer", "run", "tests.apps.nothere:app"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 2 and "cannot import module 'tests.apps.nothere'" in r.stderr


def test_run_collects_garbage_at_the_stage_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pipeteer run` serves with the collector's young generation at 10,000 allocations (see `tune_gc`)."""
    import gc

    from pipeteer.cli import main
    from pipeteer.runtime.service import GC_THRESHOLDS, StageService

    seen: list[tuple[int, int, int]] = []

    async def serve(self: StageService, host: str, port: int) -> None:
        seen.append(gc.get_threshold())

    before = gc.get_threshold()
    monkeypatch.setattr(StageService, "serve", serve)
    try:
        assert main(["run", "tests.apps.review:app", "--backend", "memory://"]) == 0
    finally:
        gc.set_threshold(*before)
    assert seen == [GC_THRESHOLDS] and GC_THRESHOLDS[0] > before[0]


async def test_a_completion_the_backend_cannot_make_durable_now_answers_503_not_500() -> None:
    """A web stage's request that meets an aborted transaction (a broker moving) or an unavailable backend
    (brokers away, disk full) answers 503 with Retry-After and says why, instead of a 500 and a traceback:
    nothing was done, and the same request succeeds later."""
    from fastapi import FastAPI

    from pipeteer.errors import CommitAborted, StorageFull
    from pipeteer.runtime.service import harden

    web = FastAPI()

    @web.post("/decide")
    async def decide(id: str) -> dict[str, str]:
        if id == "aborted":
            raise CommitAborted("queue 'h' (topic t.h): transaction aborted (a broker moved); try again")
        raise StorageFull("/data/q.db", doing="moving item 'x'", free=0, fix="free space there")

    harden(web, docs=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://test") as client:
        for id, said in (("aborted", "transaction aborted"), ("full", "no space left on /data/q.db")):
            r = await client.post("/decide", params={"id": id})
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            assert r.json()["detail"].startswith("not done, try again: ") and said in r.json()["detail"]
