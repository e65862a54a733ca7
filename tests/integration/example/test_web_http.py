"""The example end to end over real HTTP: the stage service (all three stages) behind uvicorn on a
free 127.0.0.1 port, a person played by an httpx client working the two web pages; on the memory
backend and on a real SQLite file."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from pipeteer.runtime.service import StageService
from pipeteer.wiring import WorkflowQueues
from topologies.perspective_correction import app
from topologies.perspective_correction.samples import Sample, make_samples, similarity
from topologies.perspective_correction.states import Input

APPROVE_ABOVE = 0.5


@dataclass
class Running:
    http: httpx.AsyncClient
    queues: WorkflowQueues


@pytest.fixture(params=["memory", "sqlite"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'queues.db'}"
    service = StageService(app, url)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(service.asgi, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        service.start()
        # uvicorn serves on the socket we bound: no window in which another process takes the port.
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                deadline = time.monotonic() + 20
                while not server.started:
                    assert time.monotonic() < deadline, "uvicorn did not start"
                    await asyncio.sleep(0.01)
                yield Running(http, service.queues)
        finally:
            server.should_exit = True
            await serving
            await service.stop()


async def _wait_for_tasks(http: httpx.AsyncClient, n: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        v = (await http.get("/validation/tasks")).json()
        m = (await http.get("/manual-correct/tasks")).json()
        if len(v) + len(m) == n:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the automatic stage did not process {n} items")


async def test_a_person_completes_the_workflow_over_http(running: Running) -> None:
    http, queues = running.http, running.queues
    samples: dict[str, Sample] = {f"doc-{s.seed}": s for s in make_samples(12, seed=40, hard_ratio=0.25)}
    for id, s in samples.items():
        await queues.Qin.push(id, Input(s.img))
    await _wait_for_tasks(http, len(samples))

    # The validation page, as a browser gets it under the service's /validation/ prefix.
    page = (await http.get("/validation/")).text
    sources = re.findall(r'<img src="([^"]+)"', page)
    to_validate = [t["id"] for t in (await http.get("/validation/tasks")).json()]
    assert sources == [f"/validation/tasks/{id}/image" for id in to_validate]
    assert all(not samples[id].hard or samples[id].kind == "decoy" for id in to_validate)

    approved: set[str] = set()
    rejected: set[str] = set()
    for id, src in zip(to_validate, sources, strict=True):
        image = await http.get(src)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        ok = similarity(image.content, samples[id].page) > APPROVE_ABOVE
        r = await http.post("/validation/validate", params={"id": id, "ok": ok})
        assert r.status_code == 200 and r.json() == {"id": id, "ok": ok}
        (approved if ok else rejected).add(id)
    assert approved, "no automatic correction was good enough"
    # A second click on an already validated task is refused.
    assert (await http.post("/validation/validate", params={"id": to_validate[0], "ok": True})).status_code == 404

    # The manual page: refused photos and rejected corrections, each corrected by its 4 corners.
    to_correct = [t["id"] for t in (await http.get("/manual-correct/tasks")).json()]
    assert set(to_correct) == set(samples) - approved
    assert {id for id in to_correct if samples[id].hard and samples[id].kind != "decoy"}  # the manual path is used
    page = (await http.get("/manual-correct/")).text
    assert f'<img id="photo" src="/manual-correct/tasks/{to_correct[0]}/image"' in page
    for id in to_correct:
        image = await http.get(f"/manual-correct/tasks/{id}/image")
        assert image.content == samples[id].img
        bad = await http.post("/manual-correct/correct", json={"id": id, "corners": [[1, 1], [2, 2], [3, 3], [4, 4]]})
        assert bad.status_code == 422 and "convex" in bad.json()["detail"]
        r = await http.post("/manual-correct/correct", json={"id": id, "corners": [list(c) for c in samples[id].corners]})
        assert r.status_code == 200, r.text

    outputs = dict(await queues.Qout.items())  # type: ignore[attr-defined]
    assert set(outputs) == set(samples)
    for id, out in outputs.items():
        assert out.img == samples[id].img
        assert similarity(out.corrected, samples[id].page) > 0.7, id
    assert (await http.get("/validation/tasks")).json() == []
    assert (await http.get("/manual-correct/tasks")).json() == []


async def test_concurrent_clicks_over_http_complete_a_task_once(running: Running) -> None:
    http, queues = running.http, running.queues
    s = make_samples(1, seed=3, hard_ratio=0.0)[0]
    await queues.Qin.push("only", Input(s.img))
    await _wait_for_tasks(http, 1)
    answers = await asyncio.gather(
        *(http.post("/validation/validate", params={"id": "only", "ok": i % 2 == 0}) for i in range(8))
    )
    codes = [r.status_code for r in answers]
    assert codes.count(200) == 1 and all(c in (404, 409) for c in codes if c != 200), codes
    ok = next(r.json()["ok"] for r in answers if r.status_code == 200)
    in_output = [id for id, _ in await queues.Qout.items()]  # type: ignore[attr-defined]
    in_manual = await queues.stage("manual-correct").Qin.keys()
    assert (in_output, in_manual) == ((["only"], []) if ok else ([], ["only"]))
