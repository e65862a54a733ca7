"""A small app with the example's shape, for compiler tests (independent of topologies/).

Stages: 'auto-correct' (automatic, entry, state Input), 'validation' (web, AutoCorrected),
'manual-correct' (web, ManualInput); output Output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from pipeteer import App, Pipeline, ReadQueue, Workflow, Wrapped, WriteQueue


@dataclass
class Input:
    img: bytes


@dataclass
class AutoCorrected:
    img: bytes
    corrected: bytes


@dataclass
class ManualInput:
    img: bytes


@dataclass
class Output:
    img: bytes
    corrected: bytes


def post_auto(inp: Input, out: bytes | None) -> AutoCorrected | ManualInput:
    return AutoCorrected(inp.img, out) if out else ManualInput(inp.img)


def post_validate(inp: AutoCorrected, ok: bool) -> Output | ManualInput:
    return Output(inp.img, inp.corrected) if ok else ManualInput(inp.img)


def post_manual(inp: ManualInput, out: bytes) -> Output:
    return Output(inp.img, out)


workflow: Workflow[Input, Output] = Workflow(
    Input,
    Output,
    pipelines={
        "auto-correct": Wrapped(Input, Pipeline(bytes, bytes | None), pre=lambda i: i.img, post=post_auto),
        "validation": Wrapped(
            AutoCorrected, Pipeline(bytes, bool), pre=lambda i: i.corrected, post=post_validate
        ),
        "manual-correct": Wrapped(ManualInput, Pipeline(bytes, bytes), pre=lambda i: i.img, post=post_manual),
    },
    name="sample-correction",
)


async def auto_correct(Qin: ReadQueue[bytes], Qout: WriteQueue[bytes | None]) -> None:
    while True:
        id, img = await Qin.read()
        await Qout.push(id, img[::-1] or None)


def validation_api(Qin: ReadQueue[bytes], Qout: WriteQueue[bool]) -> FastAPI:
    api = FastAPI()

    @api.get("/tasks")
    async def tasks() -> Any:
        return [id for id, _ in await Qin.items()]

    @api.post("/validate")
    async def validate(id: str, ok: bool) -> None:
        await Qout.push(id, ok)

    return api


def manual_api(Qin: ReadQueue[bytes], Qout: WriteQueue[bytes]) -> FastAPI:
    api = FastAPI()

    @api.get("/tasks")
    async def tasks() -> Any:
        return [id for id, _ in await Qin.items()]

    return api


ARTIFACTS = {"auto-correct": auto_correct, "validation": validation_api, "manual-correct": manual_api}

app = App(workflow, artifacts=ARTIFACTS, task_age_limits={"validation": 4 * 3600})
APP_REF = "tests.unit.compile.sample_app:app"
