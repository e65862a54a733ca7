"""A workflow nested in a workflow: 'triage' (automatic), then the sub-workflow 'review' whose
entry 'first' (web) may send an item on to 'second' (web); both end in the outer output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from pipeteer import App, Pipeline, ReadQueue, Workflow, Wrapped, WriteQueue


@dataclass
class Raw:
    text: str


@dataclass
class Checked:
    text: str


@dataclass
class Second:
    text: str


@dataclass
class Done:
    text: str


def _triage(r: Raw, ok: bool) -> Checked | Done:
    return Checked(r.text) if ok else Done(r.text)


def _first(c: Checked, ok: bool) -> Done | Second:
    return Done(c.text) if ok else Second(c.text)


def _second(s: Second, text: str) -> Done:
    return Done(text)


review = Workflow(
    Checked,
    Done,
    pipelines={
        "first": Wrapped(Checked, Pipeline(str, bool), pre=lambda c: c.text, post=_first),
        "second": Wrapped(Second, Pipeline(str, str), pre=lambda s: s.text, post=_second),
    },
    name="review",
)
nested = Workflow(
    Raw,
    Done,
    pipelines={
        "triage": Wrapped(Raw, Pipeline(str, bool), pre=lambda r: r.text, post=_triage),
        "review": review,
    },
    name="nested",
)


async def _auto(Qin: ReadQueue[str], Qout: WriteQueue[bool]) -> None:
    while True:
        id, text = await Qin.read()
        await Qout.push(id, bool(text))


def _web(Qin: ReadQueue[Any], Qout: WriteQueue[Any]) -> FastAPI:
    return FastAPI()


app = App(nested, {"triage": _auto, "review/first": _web, "review/second": _web})
