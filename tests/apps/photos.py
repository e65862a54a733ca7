"""A one-stage identity workflow over photos: the batch commands' tests and `bench/bench_images.py` use it."""

from __future__ import annotations

from dataclasses import dataclass

from pipeteer import App, Pipeline, ReadQueue, Workflow, WriteQueue


@dataclass
class Photo:
    img: bytes


@dataclass
class Stored:
    img: bytes
    size: int


async def keep(Qin: ReadQueue[Photo], Qout: WriteQueue[Stored]) -> None:
    """Passes each photo on unchanged (with its size): the cost measured is the plumbing's."""
    while True:
        id, photo = await Qin.read()
        await Qout.push(id, Stored(photo.img, len(photo.img)))


workflow = Workflow(Photo, Stored, pipelines={"keep": Pipeline(Photo, Stored)}, name="photos")
app = App(workflow, {"keep": keep})
