"""One automatic stage that waits 2 ms per item (I/O-ish, CPU-light) and says which process did it:
several `pipeteer run` processes of it on one SQLite file show how they split the work."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from pipeteer import App, Pipeline, ReadQueue, Workflow, WriteQueue

WAIT_SECONDS = float(os.environ.get("SHARED_WAIT_SECONDS", "0.002"))
LOG_DIR = os.environ.get("SHARED_LOG_DIR")
"""When set, each process writes there the id of every item it starts on (`<pid>.log`): work done twice shows."""


@dataclass
class Job:
    n: int


@dataclass
class Done:
    n: int
    pid: int


workflow = Workflow(Job, Done, pipelines={"work": Pipeline(Job, Done)}, name="shared")


async def work(Qin: ReadQueue[Job], Qout: WriteQueue[Done]) -> None:
    log = open(os.path.join(LOG_DIR, f"{os.getpid()}.log"), "a", buffering=1) if LOG_DIR else None
    while True:
        id, job = await Qin.read()
        if log is not None:
            log.write(id + "\n")
        await asyncio.sleep(WAIT_SECONDS)  # a call to another service, say
        await Qout.push(id, Done(job.n, os.getpid()))
        await Qin.pop(id)


app = App(workflow, {"work": work})
