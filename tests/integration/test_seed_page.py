"""The project page's example, as written there (plus `@dataclass` and the imports the page leaves out),
against the package, on a real SQLite file and a real HTTP server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from pipeteer import (
    Pipeline,
    PipelineQueues,
    Queue,
    QueueKV,
    ReadQueue,
    Workflow,
    Wrapped,
    WriteQueue,
    make_queues,
)

# --- stand-ins for what the page leaves to the user ---------------------------------------------


def magic_autoprocessing(img: bytes) -> bytes | None:
    return img.upper() if not img.startswith(b"blurry") else None


def manual_api(Qin: ReadQueue[bytes], Qout: WriteQueue[bytes]) -> FastAPI:
    app = FastAPI()

    @app.get("/tasks")
    async def tasks():  # type: ignore[no-untyped-def]
        return await Qin.items()

    @app.post("/correct")
    async def correct(id: str, corrected: str):  # type: ignore[no-untyped-def]
        await Qout.push(id, corrected.encode())
        await Qin.pop(id)

    return app


# --- the page, verbatim --------------------------------------------------------------------------


async def automatic_correction(Qin: ReadQueue[bytes], Qout: WriteQueue[bytes|None]):  # type: ignore[no-untyped-def]
  while True:
    id, img = await Qin.read()
    result = magic_autoprocessing(img) # may fail and return None
    await Qout.push(id, result)
    await Qin.pop(id)


def validation_api(Qin: ReadQueue[bytes], Qout: WriteQueue[bool]) -> FastAPI:
  app = FastAPI()

  @app.get('/tasks')
  async def tasks():  # type: ignore[no-untyped-def]
    return await Qin.items()

  @app.post('/validate')
  async def validate(id: str, ok: bool):  # type: ignore[no-untyped-def]
    await Qout.push(id, ok)
    await Qin.pop(id)

  return app


@dataclass
class Input: # initial state, input to auto-correction
  img: bytes

@dataclass
class AutoCorrected: # input to validation
  img: bytes
  corrected: bytes

@dataclass
class ManualInput:
  img: bytes

@dataclass
class Output:
  img: bytes
  corrected: bytes


def post_auto(inp: Input, out: bytes | None):  # type: ignore[no-untyped-def]
  return AutoCorrected(inp.img, out) if out else ManualInput(inp.img)

def post_validate(inp: AutoCorrected, ok: bool):  # type: ignore[no-untyped-def]
  return Output(inp.img, inp.corrected) if ok else ManualInput(inp.img)

def post_manual(inp: ManualInput, out: bytes):  # type: ignore[no-untyped-def]
  return Output(inp.img, out)

auto = Wrapped(Input, Pipeline(bytes, bytes), pre=lambda inp: inp.img, post=post_auto)
val = Wrapped(AutoCorrected, Pipeline(bytes, bool), pre=lambda inp: inp.corrected, post=post_validate)
manual = Wrapped(ManualInput, Pipeline(bytes, bytes), pre=lambda inp: inp.img, post=post_manual)

workflow = Workflow(
  Input, Output,
  pipelines={
    'auto-correct': auto,
    'validation': val,
    'manual-correct': manual
  },
)

@dataclass
class Artifacts:
  validation_api: FastAPI
  manual_api: FastAPI
  auto_correct: Coroutine

  @staticmethod
  def of(queues: Mapping[str, PipelineQueues]):  # type: ignore[no-untyped-def]
    return Artifacts(
      validation_api=validation_api(**queues['validation']['internal']),
      manual_api=manual_api(**queues['manual-correct']['internal']),
      auto_correct=automatic_correction(**queues['auto-correct']['internal']),
    )


# --- running it ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_page_example_runs_unchanged(tmp_path: Path) -> None:
    db = str(tmp_path / "queues.db")

    def make_queue(Type: type, path: Sequence[str]) -> Queue[Any]:
      table = '-'.join(path)
      return QueueKV.sqlite(Type, path=db, table=table)

    Qin = make_queue(Input, ['input'])
    Qout = make_queue(Output, ['output'])
    queues = make_queues(Qin, Qout, workflow, make_queue)
    artifacts = Artifacts.of(queues)

    api = FastAPI()
    api.mount('/validation', artifacts.validation_api)
    api.mount('/correction', artifacts.manual_api)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    auto = asyncio.create_task(artifacts.auto_correct)
    try:
        for i, img in enumerate([b"page one", b"blurry two", b"page three"]):
            await Qin.push(str(i), Input(img))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            while not server.started:
                await asyncio.sleep(0.01)
            for _ in range(200):
                tasks = (await http.get("/validation/tasks")).json()
                if len(tasks) == 2:
                    break
                await asyncio.sleep(0.02)
            assert sorted(tasks) == [["0", "PAGE ONE"], ["2", "PAGE THREE"]]
            assert (await http.post("/validation/validate", params={"id": "0", "ok": True})).status_code == 200
            assert (await http.post("/validation/validate", params={"id": "2", "ok": False})).status_code == 200
            manual_tasks = (await http.get("/correction/tasks")).json()
            assert sorted(manual_tasks) == [["1", "blurry two"], ["2", "page three"]]
            for id, img in manual_tasks:
                r = await http.post("/correction/correct", params={"id": id, "corrected": img + " (fixed)"})
                assert r.status_code == 200
    finally:
        auto.cancel()
        server.should_exit = True
        await serving
    assert dict(await Qout.items()) == {
        "0": Output(b"page one", b"PAGE ONE"),
        "1": Output(b"blurry two", b"blurry two (fixed)"),
        "2": Output(b"page three", b"page three (fixed)"),
    }
    for stage in ("auto-correct", "validation", "manual-correct"):
        assert await queues[stage]["Qin"].keys() == []
