"""`pipeteer run`: a stage service. Web artifacts are served under one ASGI app at `/<stage>/`,
coroutine artifacts run as supervised tasks, and every service answers `/metrics`,
`/healthz` and `/readyz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeteer.errors import ConfigError
from pipeteer.queues.base import BaseQueue, Retry
from pipeteer.runtime.app import App
from pipeteer.runtime.connect import connect
from pipeteer.runtime.metrics import Metrics, StageProgress
from pipeteer.wiring import WorkflowQueues

log = logging.getLogger("pipeteer.run")


@dataclass(frozen=True)
class Restart:
    """How a failing automatic stage is restarted: exponential backoff between `initial` and `maximum` seconds."""

    initial: float = 0.5
    maximum: float = 30.0


class StageService:
    """The artifacts of some (or all) stages of an app, on one backend, ready to serve."""

    def __init__(
        self,
        app: App,
        backend: str | None = None,
        *,
        stages: Sequence[str] | None = None,
        metrics: Metrics | None = None,
        restart: Restart = Restart(),
        retry: Retry | None = None,
    ) -> None:
        known = app.stages()
        for s in stages or ():
            if s not in known:
                raise ConfigError(f"app {app.name!r} has no stage {s!r} (stages: {', '.join(known)})")
        self.app = app
        self.stages = list(stages or known)
        self.metrics = metrics or Metrics()
        self.progress = StageProgress(self.metrics)
        self.restart = restart
        self.queues: WorkflowQueues = connect(app, backend, hooks=[self.progress])
        use_metrics = getattr(self.queues.backend, "use_metrics", None)
        if use_metrics is not None:  # Kafka: rebalances, commit latency, lag, dead letters, oldest pending
            use_metrics(self.metrics)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.opening: list[Any] = []
        self.web = {s: app.artifact(self.queues, s) for s in self.stages if app.is_web(s)}
        for s in self.stages:
            raw = self.queues.stage_queue(s)
            count = getattr(raw, "__len__", None)
            if count is not None:
                self.progress.of(s).watch_pending(count)
            if retry is not None and isinstance(raw, BaseQueue):
                raw.retry = retry
        self.asgi = self._asgi()

    def _asgi(self) -> FastAPI:
        root = FastAPI(title=f"pipeteer: {self.app.name}")
        service = self

        @root.get("/healthz")
        async def healthz() -> dict[str, Any]:
            return {"ok": True}

        @root.get("/readyz")
        async def readyz(response: Response) -> dict[str, Any]:
            ready = service.ready()
            response.status_code = 200 if ready else 503
            return {"ready": ready, "stages": service.stages}

        @root.get("/metrics")
        async def metrics() -> Response:
            return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        @root.get("/", response_class=HTMLResponse)
        async def index() -> str:
            links = "".join(
                f'<li><a href="/{s}/">{s}</a> (person)</li>'
                if s in service.web
                else f"<li>{s} (automatic)</li>"
                for s in service.stages
            )
            return (
                f"<!doctype html><title>{service.app.name}</title><h1>{service.app.name}</h1><ul>{links}</ul>"
            )

        for s, web in self.web.items():
            root.mount(f"/{s}", web)
        return root

    def ready(self) -> bool:
        """Every automatic stage is running and the backend (when it can say) is ready."""
        check = getattr(self.queues.backend, "ready", None)
        alive = all(not t.done() for t in self.tasks.values())
        return alive and (check() if callable(check) else True)

    async def _supervise(self, stage: str) -> None:
        delay = self.restart.initial
        while True:
            try:
                await self.app.artifact(self.queues, stage)
                log.warning("stage %r returned; not restarting it", stage)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.progress.of(stage).failed.inc()
                queue = self.queues.stage_queue(stage)
                item = queue.fail(e) if isinstance(queue, BaseQueue) else None
                if item is not None:
                    # the queue retries that item after its own backoff (or dead-letters it); others go on now
                    log.exception("stage %r failed on item %r; restarting", stage, item)
                    await asyncio.sleep(self.restart.initial)
                    delay = self.restart.initial
                    continue
                log.exception("stage %r failed; restarting in %.1fs", stage, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.restart.maximum)

    def start(self) -> None:
        for s in self.stages:
            open_queue = getattr(self.queues.stage_queue(s), "open", None)
            if open_queue is not None:  # Kafka: join the group and restore pending items before any request
                self.opening.append(open_queue())
            if not self.app.is_web(s):
                self.tasks[s] = asyncio.create_task(self._supervise(s), name=f"stage:{s}")

    async def stop(self) -> None:
        for t in self.tasks.values():
            t.cancel()
        for t in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        close = getattr(self.queues.backend, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result

    async def serve(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        """Run until SIGINT or SIGTERM, then stop every stage and return (exit status 0)."""
        import uvicorn

        class Server(uvicorn.Server):
            # uvicorn re-raises the signal after shutting down, which would end the process with
            # status 143 before the stages are stopped: the service handles the signals itself.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        server = Server(uvicorn.Config(self.asgi, host=host, port=port, log_level="info", lifespan="off"))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        self.start()
        try:
            await server.serve()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()
