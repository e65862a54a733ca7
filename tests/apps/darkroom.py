"""A two-stage workflow whose first stage writes a new large value per item (the disk-full tests use it).

`develop` turns each photo into a print whose bytes are new (the photo's, reversed): its output
stores a blob of its own, unlike `tests.apps.photos`, which passes the stored blob on. `label` reads
prints and writes a small record (no blob): it keeps working while `develop` waits for room.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeteer import App, Pipeline, ReadQueue, Workflow, WriteQueue


@dataclass
class Photo:
    img: bytes


@dataclass
class Print:
    img: bytes


@dataclass
class Label:
    size: int
    head: bytes
    """The print's first 16 bytes: enough to tell it was developed (the photo's last bytes, reversed)."""


def develop_bytes(img: bytes) -> bytes:
    """What `develop` makes of a photo's bytes."""
    return img[::-1]


async def develop(Qin: ReadQueue[Photo], Qout: WriteQueue[Print]) -> None:
    while True:
        id, photo = await Qin.read()
        await Qout.push(id, Print(develop_bytes(photo.img)))


async def label(Qin: ReadQueue[Print], Qout: WriteQueue[Label]) -> None:
    while True:
        id, print_ = await Qin.read()
        await Qout.push(id, Label(len(print_.img), print_.img[:16]))


workflow = Workflow(
    Photo, Label, pipelines={"develop": Pipeline(Photo, Print), "label": Pipeline(Print, Label)}, name="darkroom"
)
app = App(workflow, {"develop": develop, "label": label})
