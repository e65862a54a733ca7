"""A human stage whose output is a file: the console offers an upload (a person sends the retouched photo)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from pipeteer import App, Pipeline, ReadQueue, Workflow, Wrapped, WriteQueue


@dataclass
class Shot:
    img: bytes


@dataclass
class Retouched:
    img: bytes
    retouched: bytes


def post_retouch(s: Shot, out: bytes) -> Retouched:
    return Retouched(s.img, out)


workflow = Workflow(
    Shot, Retouched,
    pipelines={"retouch": Wrapped(Shot, Pipeline(bytes, bytes), pre=lambda s: s.img, post=post_retouch)},
    name="retouch",
)


def retouch_page(Qin: ReadQueue[bytes], Qout: WriteQueue[bytes]) -> FastAPI:
    """Send the retouched photo back."""
    return FastAPI()


app = App(workflow, {"retouch": retouch_page})
