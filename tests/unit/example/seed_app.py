"""The seed page's perspective-correction workflow, wired to this example's imaging and web code.

The topology module of the lead (`topologies.perspective_correction:app`) is the product; this
copy of the seed keeps the example's own tests independent of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeteer import App, Pipeline, ReadQueue, Workflow, Wrapped, WriteQueue
from topologies.perspective_correction.imaging import correct_perspective
from topologies.perspective_correction.web import manual_api, validation_api


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


async def automatic_correction(Qin: ReadQueue[bytes], Qout: WriteQueue[bytes | None]) -> None:
    while True:
        id, img = await Qin.read()
        result = correct_perspective(img)
        await Qout.push(id, result)
        await Qin.pop(id)


workflow = Workflow(
    Input,
    Output,
    pipelines={
        "auto-correct": Wrapped(Input, Pipeline(bytes, bytes), pre=lambda inp: inp.img, post=post_auto),
        "validation": Wrapped(AutoCorrected, Pipeline(bytes, bool), pre=lambda inp: inp.corrected, post=post_validate),
        "manual-correct": Wrapped(ManualInput, Pipeline(bytes, bytes), pre=lambda inp: inp.img, post=post_manual),
    },
    name="perspective-correction",
)

app = App(
    workflow,
    {"auto-correct": automatic_correction, "validation": validation_api, "manual-correct": manual_api},
)
