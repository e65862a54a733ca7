"""A test driver for workflows (like Kafka Streams' TopologyTestDriver): the whole app in memory,
automatic stages stepped deterministically, you acting as the person in manual stages.
No threads, no servers, no sleeps.

    async with TestDriver(app) as t:
        await t.push("1", Input(img))
        await t.run_until_idle()                 # automatic stages drain their queues
        assert list(await t.pending("validation")) == ["1"]
        await t.complete("validation", "1", True)   # or drive the page: t.client("validation")
        assert (await t.outputs())["1"].corrected
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from pipeteer.errors import ConfigError, StageError
from pipeteer.queues.base import ReadQueue
from pipeteer.runtime.app import App
from pipeteer.runtime.connect import connect
from pipeteer.wiring import PipelineQueues

UNLIMITED = -1


class _Gate(ReadQueue[Any]):
    """An automatic stage's `Qin` under the driver: `read()` hands out only as many items as permitted."""

    def __init__(self, inner: ReadQueue[Any], driver: TestDriver, stage: str) -> None:
        self.inner, self.driver, self.stage = inner, driver, stage
        self.permits = 0
        self.waiting = False
        self.kick = asyncio.Event()

    async def _read_next(self) -> tuple[str, Any]:
        while True:
            if self.permits != 0:
                async for id, value in self.inner.items():
                    if self.permits > 0:
                        self.permits -= 1
                    return id, value
            self.waiting = True
            self.kick.clear()
            waits = [asyncio.ensure_future(self.kick.wait()), asyncio.ensure_future(self._inner_change())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
                self.waiting = False

    async def _inner_change(self) -> None:
        await self.inner.wait_change()

    async def _read(self, id: str) -> Any:
        return await self.inner.read(id)

    async def has(self, id: str) -> bool:
        return await self.inner.has(id)

    async def pop(self, id: str) -> None:
        await self.inner.pop(id)

    def _iter_items(self) -> AsyncIterator[tuple[str, Any]]:
        return self.inner.items().__aiter__()

    async def backlog(self) -> int:
        return len(await self.inner.keys())


class TestDriver:
    """Runs an `App` on in-memory queues, under your control."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: App, *, timeout: float = 60.0) -> None:
        self.app = app
        self.queues = connect(app, "memory://")
        self.timeout = timeout
        self._gates: dict[str, _Gate] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._web: dict[str, Any] = {}

    async def __aenter__(self) -> TestDriver:
        for stage in self.app.stages():
            if self.app.is_web(stage):
                continue
            q = self.app.stage_queues(self.queues, stage)
            gate = self._gates[stage] = _Gate(q["Qin"], self, stage)
            coro = self.app.artifacts[stage](**PipelineQueues(Qin=gate, Qout=q["Qout"]))
            self._tasks[stage] = asyncio.create_task(coro, name=f"stage:{stage}")
        await self._settle()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for t in self._tasks.values():
            t.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def push(self, id: str, value: Any) -> None:
        """Push an input item into the workflow."""
        await self.queues.Qin.push(id, value)

    async def step(self, stage: str, n: int = 1) -> None:
        """Let automatic `stage` take exactly `n` more items (fewer if its queue runs dry), then settle."""
        gate = self._gate(stage)
        gate.permits = n
        gate.kick.set()
        await self._settle()
        gate.permits = 0

    async def run_until_idle(self) -> None:
        """Let every automatic stage run until all of them wait on empty queues."""
        for gate in self._gates.values():
            gate.permits = UNLIMITED
            gate.kick.set()
        try:
            await self._settle()
        finally:
            for gate in self._gates.values():
                gate.permits = 0

    async def pending(self, stage: str) -> dict[str, Any]:
        """The items waiting in a stage, by id, as states (the stage's queue, before `pre`)."""
        return dict(await self.queues.stage(stage).Qin.items())

    async def complete(self, stage: str, id: str, output: Any) -> None:
        """Act as the person (or the code) of `stage`: push its output for item `id`."""
        await self.app.stage_queues(self.queues, stage)["Qout"].push(id, output)
        await self._settle()

    def web(self, stage: str) -> Any:
        """The ASGI app of a web stage, made once."""
        if not self.app.is_web(stage):
            raise ConfigError(f"stage {stage!r} is automatic, not a web stage")
        if stage not in self._web:
            self._web[stage] = self.app.artifact(self.queues, stage)
        return self._web[stage]

    def client(self, stage: str) -> Any:
        """An `httpx.AsyncClient` talking to a web stage in-process (no server)."""
        import httpx

        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.web(stage)), base_url=f"http://{stage}"
        )

    async def outputs(self) -> dict[str, Any]:
        """The workflow's output items, by id."""
        return dict(await self.queues.Qout.items())

    def _gate(self, stage: str) -> _Gate:
        if stage not in self._gates:
            kind = "a web stage" if stage in self.app.stages() else "not a stage"
            raise ConfigError(f"{stage!r} is {kind}; automatic stages: {', '.join(self._gates)}")
        return self._gates[stage]

    async def _settle(self) -> None:
        """Turn the event loop until every automatic stage waits with nothing it may take.

        Pure-async stages settle in a few turns. A stage that hands work to a thread
        (`asyncio.to_thread`) is given short pauses for it, up to `timeout` seconds in all.
        """
        quiet = 0
        deadline = time.monotonic() + self.timeout
        spins = 0
        while time.monotonic() < deadline:
            spins += 1
            await asyncio.sleep(0 if spins < 1000 else 0.001)
            for stage, task in self._tasks.items():
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise StageError(f"stage {stage!r} failed: {task.exception()!r}", stage=stage) from task.exception()
            idle = True
            for stage, gate in self._gates.items():
                if self._tasks[stage].done():
                    continue
                if not gate.waiting or (gate.permits != 0 and await gate.backlog() > 0):
                    idle = False
                    break
            quiet = quiet + 1 if idle else 0
            if quiet >= 3:
                return
        raise StageError(f"automatic stages still busy after {self.timeout:.0f}s")
