"""A human stage whose output is a dataclass: the console builds its form from the type."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fastapi import FastAPI

from pipeteer import App, Pipeline, ReadQueue, Workflow, Wrapped, WriteQueue


class Team(enum.Enum):
    OPS = "ops"
    DEV = "dev"


@dataclass
class Ticket:
    title: str
    body: str


@dataclass
class Triage:
    priority: int
    team: Team
    note: str | None = None


@dataclass
class Triaged:
    title: str
    priority: int
    team: Team
    note: str | None


def same(t: Ticket) -> Ticket:
    return t


def post_triage(t: Ticket, d: Triage) -> Triaged:
    return Triaged(t.title, d.priority, d.team, d.note)


workflow = Workflow(
    Ticket, Triaged, pipelines={"triage": Wrapped(Ticket, Pipeline(Ticket, Triage), pre=same, post=post_triage)}, name="helpdesk"
)


def triage_api(Qin: ReadQueue[Ticket], Qout: WriteQueue[Triage]) -> FastAPI:
    """No page of its own: the review console serves this stage."""
    return FastAPI()


app = App(workflow, {"triage": triage_api})
