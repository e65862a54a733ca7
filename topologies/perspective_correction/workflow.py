"""The workflow of the project page: automatic correction, manual validation, manual correction."""

from __future__ import annotations

from pipeteer import Pipeline, Workflow, Wrapped
from topologies.perspective_correction.imaging import warp_with_corners
from topologies.perspective_correction.states import AutoCorrected, Corners, Input, ManualInput, Output


def post_auto(inp: Input, out: bytes | None) -> AutoCorrected | ManualInput:
    return AutoCorrected(inp.img, out) if out else ManualInput(inp.img)


def post_validate(inp: AutoCorrected, ok: bool) -> Output | ManualInput:
    return Output(inp.img, inp.corrected) if ok else ManualInput(inp.img)


def post_manual(inp: ManualInput, c: Corners) -> Output:
    """The page rectified from the corners a person clicked (checked before: the console's preview
    and the manual page's `POST /correct` both warp them first and refuse corners that fail)."""
    return Output(inp.img, warp_with_corners(inp.img, c.corners))


def pre_img(inp: Input | ManualInput) -> bytes:
    return inp.img


def pre_corrected(inp: AutoCorrected) -> bytes:
    return inp.corrected


auto = Wrapped(Input, Pipeline(bytes, bytes), pre=pre_img, post=post_auto)
val = Wrapped(AutoCorrected, Pipeline(bytes, bool), pre=pre_corrected, post=post_validate)
manual = Wrapped(ManualInput, Pipeline(bytes, Corners), pre=pre_img, post=post_manual)

workflow = Workflow(
    Input,
    Output,
    pipelines={
        "auto-correct": auto,
        "validation": val,
        "manual-correct": manual,
    },
    name="perspective-correction",
)
