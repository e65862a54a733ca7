"""`pipeteer run`: a stage service. Web artifacts are served under one ASGI app at `/<stage>/`,
coroutine artifacts run as supervised tasks, and every service answers `/metrics`,
`/healthz` and `/readyz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeteer.codec import check_release, codec_for, unknown_writers
from pipeteer.errors import (
    BrokerUnreachable,
    CommitAborted,
    SchemaError,
    TaskLocked,
    Unavailable,
    UnknownStage,
)
from pipeteer.plan import Plan
from pipeteer.queues.base import QueueHooks, Retry
from pipeteer.queues.progress import Stall
from pipeteer.runtime.app import App
from pipeteer.runtime.availability import StageGate
from pipeteer.runtime.connect import connect
from pipeteer.runtime.console import Console, ConsoleSettings, login_page
from pipeteer.runtime.console.guard import LockGuard
from pipeteer.runtime.console.routes import routes as console_routes
from pipeteer.runtime.metrics import Metrics, StageProgress
from pipeteer.runtime.security import (
    SESSION_COOKIE,
    Security,
    SecurityMiddleware,
    current_reviewer,
    form_fields,
    safe_next,
)
from pipeteer.wiring import BackendQueues

log = logging.getLogger("pipeteer.run")

PENDING_EVERY = 1.0
"""Seconds between two measures of the oldest pending age on backends that do not report it."""

STALL_SECONDS = 60.0
"""A stage instance with work waiting (records on its partitions, finished items to commit, pending
items to restore, its own start-up) and no progress on it for this long is stuck: `/healthz` fails
(Kubernetes restarts it) and `pipeteer run` exits with status 3 (`PIPETEER_STALL_SECONDS`)."""
UNREADY_STALL = 10.0
"""... and for this long (or `stall_seconds`, if shorter) it is not ready: a stage that does not work
says so, instead of taking requests it cannot serve. A broker restart costs a healthy stage up to
about this much (the cluster notices a dead broker after 9 s), so it may show, briefly."""
RAN_A_WHILE = 30.0
"""A stage that ran this long before failing again starts its backoff afresh (a new failure, not the same one)."""
UNAVAILABLE_PAUSE = 5.0
"""Longest pause before a stage waiting for its backend (brokers away, disk full) tries again: it goes
on within seconds of the backend's return, whatever backoff the wait has grown."""
WATCH_EVERY = 1.0
"""Seconds between two looks of the watchdog at the stages' progress."""
EXIT_STALLED = 3
"""`pipeteer run`'s exit status when the watchdog stopped it."""


GC_THRESHOLDS = (10_000, 10, 10)
"""The cyclic garbage collector's thresholds in a stage process (CPython's default: 700, 10, 10)."""


def tune_gc() -> None:
    """Collect the young generation every 10,000 allocations, not every 700 (`pipeteer run` does this).

    A stage allocates a few objects per record, and most live until the record is done (its pending
    table holds thousands), so each young collection found little garbage and moved the survivors on
    to be scanned again. On a Kafka stage of 200-byte records the collector had 6% of the samples and
    these thresholds cut its CPU per record by a fifth (`bench/kafka_stage.md`, change 9). Garbage
    in cycles waits for at most 10,000 allocations instead of 700: a few MB at most."""
    gc.set_threshold(*GC_THRESHOLDS)


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
        security: Security | None = None,
        console: ConsoleSettings | None = None,
        stall_seconds: float = STALL_SECONDS,
        exit_on_stall: bool = True,
    ) -> None:
        known = app.stages()
        for s in stages or ():
            if s not in known:
                raise UnknownStage(f"app {app.name!r}", s, known)
        self.app = app
        self.stages = list(stages or known)
        self.metrics = metrics or Metrics(workflow=app.name)
        self.progress = StageProgress(self.metrics)
        self.restart = restart
        self.security = security if security is not None else Security()
        # Every completion of a person's task, whatever route pushes it, honours the console's locks
        self.guard = LockGuard(s for s in self.stages if app.is_web(s))
        # The stages' queues are made with the service's retry policy (when given) and its count of dead letters
        queue_hooks = QueueHooks(retry=retry, on_dead_letter=self._count_dead_letter)
        self.queues: BackendQueues = connect(app, backend, hooks=[self.progress, self.guard], queue_hooks=queue_hooks)
        self.backend = self.queues.backend
        self.backend.use_metrics(self.metrics)  # Kafka: rebalances, commit latency, lag, dead letters, oldest pending
        # Other backends: the service measures the oldest pending age and counts dead letters itself
        self.measures_pending = not self.backend.reports_metrics
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.watchers: list[asyncio.Task[None]] = []
        self.unchecked: str | None = None
        """Why this release's schemas are not checked yet (the backend is away): the stages wait."""
        self.refused: SchemaError | None = None
        self.closing = asyncio.Event()
        """Set when the service must stop of itself (its release refused once the backend answered, or stuck)."""
        self.stall_seconds = stall_seconds
        self.exit_on_stall = exit_on_stall
        self.stalled_out: list[Stall] = []
        """The stalls that made the watchdog stop the service (`pipeteer run` then exits with `EXIT_STALLED`)."""
        self.web = {s: app.artifact(self.queues, s) for s in self.stages if app.is_web(s)}
        for s in self.stages:
            raw = self.queues.stage_queue(s)
            self.progress.of(s).watch_pending(raw.__len__)
            self.progress.of(s).watch_ready(self.ready)
            self.progress.of(s).watch_held(_count(raw.held))
            self.progress.of(s).watch_stalled(self._stalled_seconds(s))
            if self.measures_pending:  # (its queue counts them: `_count_dead_letter`)
                self.progress.of(s).dead_letters.inc(0)  # exported from the start, at 0
        self.metrics.watch_unknown_writers(self.readers_of)
        self.console = Console(self, self.guard, console or ConsoleSettings())
        self.root = self._root()
        self.asgi = SecurityMiddleware(StageGate(self.root, list(self.web), self.unavailable), self.security)

    def _count_dead_letter(self, stage: str, id: str) -> None:
        """A stage's queue set item `id` aside as a dead letter (backends that do not count them themselves)."""
        self.progress.of(stage).count_dead_letter(id)

    def _root(self) -> FastAPI:
        docs = self.security.api_docs
        root = FastAPI(
            title=f"pipeteer: {self.app.name}",
            docs_url="/docs" if docs else None,
            redoc_url="/redoc" if docs else None,
            openapi_url="/openapi.json" if docs else None,
        )
        service = self

        @root.get("/healthz")
        async def healthz(response: Response) -> dict[str, Any]:
            stuck = service.stuck()
            if stuck:  # restarting it is what helps: said to Kubernetes' liveness probe
                response.status_code = 503
                return {"ok": False, "stuck": [st.describe() for st in stuck]}
            return {"ok": True}

        @root.get("/readyz")
        async def readyz(response: Response) -> dict[str, Any]:
            reasons = service.unready_reasons()
            response.status_code = 503 if reasons else 200
            out: dict[str, Any] = {"ready": not reasons, "stages": service.stages, "reasons": reasons}
            problems = service.unknown_writers()
            if problems:  # not a reason to be unready (the records are held, the rest served), but said here
                out["unknown_writer_schemas"] = problems
            held = service.held()
            if held:
                out["held"] = held
            return out

        @root.get("/metrics")
        async def metrics() -> Response:
            return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        @root.get("/login")
        async def login_form(next: str | None = None) -> Response:
            return login_page(safe_next(next))

        @root.post("/login")
        async def login(request: Request) -> Response:
            form = form_fields(await request.body())
            target = safe_next(form.get("next"))
            name = service.security.name_of_token(form.get("token", "").strip())
            if name is None:
                log.warning("login refused from %s", request.client.host if request.client else "?")
                return login_page(target, "That token is not valid.")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                SESSION_COOKIE, service.security.session_cookie(name), max_age=service.security.session_seconds,
                httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/",
            )
            log.info("login: %s", name)
            return response

        @root.post("/logout")
        async def logout(request: Request) -> Response:
            name = current_reviewer.get() or service.security.session_name(request.cookies.get(SESSION_COOKIE, ""))
            if name is not None:
                service.console.logged_out(name)  # their locks are released, for the others to take
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response

        root.include_router(console_routes(self.console))
        for s, web in self.web.items():
            if isinstance(web, FastAPI):
                harden(web, docs)
            root.mount(f"/{s}", web)
        harden(root, docs)
        return root

    def ready(self) -> bool:
        """Every automatic stage is running and the backend (when it can say) is ready."""
        return not self.unready_reasons()

    def unready_reasons(self) -> list[str]:
        """Why the service is not ready, in words (empty when it is)."""
        reasons = [f"stage {s!r} stopped" for s, t in self.tasks.items() if t.done()]
        if self.unchecked is not None:
            reasons.append(self.unchecked)
        reasons += self.backend.unready_reasons()  # Kafka: partitions, restore, brokers
        after = min(UNREADY_STALL, self.stall_seconds)
        return reasons + [st.describe() for st in self.backend.stalls() if st.seconds >= after and not st.outage]

    def _stalled_seconds(self, stage: str) -> Callable[[], float]:
        """A gauge's function: how long `stage` has made no progress on work waiting for it (0: none waits)."""
        return lambda: max((st.seconds for st in self.backend.stalls() if st.stage == stage), default=0.0)

    def stuck(self) -> list[Stall]:
        """The stages of this service that are stuck: work waits, no progress for `stall_seconds`, and the
        cluster answers (an outage is waited out: a restart would not end it, so it fails `/readyz` only)."""
        return [st for st in self.backend.stalls() if st.seconds >= self.stall_seconds and not st.outage]

    async def _watch_stalls(self) -> None:
        """The watchdog: a stuck stage stops the service (`pipeteer run` exits with `EXIT_STALLED`, so that
        whatever supervises it starts it afresh), unless `exit_on_stall` is off (`/healthz` fails anyway)."""
        told: set[str] = set()
        while True:
            await asyncio.sleep(WATCH_EVERY)
            stuck = self.stuck()
            for st in stuck:
                if st.stage not in told:
                    told.add(st.stage)
                    log.error("%s: stuck%s", st.describe(),
                              "; stopping (exit status 3) so that it is started afresh" if self.exit_on_stall
                              else "; /healthz fails (PIPETEER_EXIT_ON_STALL=0: not exiting)")
            told &= {st.stage for st in stuck}
            if stuck and self.exit_on_stall:
                self.stalled_out = stuck
                self.closing.set()
                return

    def readers_of(self, schema: str) -> list[str]:
        """The stages of this service reading records of `schema` (`ns.Name (fingerprint …)`)."""
        return [s for s in self.stages if self.queues.stage_queue(s).codec.describe() == schema]

    def unknown_writers(self) -> list[dict[str, Any]]:
        """Records this service's stages could not read for want of their writer schema, per stage and
        writer: the reader's schema, the writer's fingerprint and how many. (Shown by `/readyz`, which
        answers without credentials: the first error, with item ids and paths, is in the log only.)"""
        return [
            {"stage": stage, "reader": w.reader, "writer_fingerprint": w.writer_fingerprint,
             "records": w.records}
            for w in unknown_writers.snapshot()
            for stage in self.readers_of(w.reader)
        ]

    def held(self) -> list[dict[str, Any]]:
        """Per stage, the pending items it holds because this version cannot read them (`BaseQueue.held`):
        how many, of which writer schemas, since when. (Ids are in the log and the console, not here:
        `/readyz` answers without credentials.)"""
        out = []
        for s in self.stages:
            held = self.queues.stage_queue(s).held()
            if held:
                out.append({"stage": s, "items": len(held),
                            "writer_fingerprints": sorted({h.writer_fingerprint for h in held}),
                            "oldest_since": min(h.since for h in held)})
        return out

    def check_release(self) -> list[str]:
        """Refuse to serve (`SchemaError`) when this version's states cannot run beside the versions
        already writing to the backend (`pipeteer.codec.catalog.check_release`), then publish the
        schemas the stages served here write with. Returns notes on older versions whose records
        would be held. Nothing to check on a backend without a catalog (memory; Kafka with a registry,
        which checks compatibility itself when a schema is registered)."""
        catalog = self.backend.schema_catalog()
        if catalog is None:
            return []
        plan = Plan.of(self.app.workflow)
        types = {q.path: q.Type for q in plan.queues}
        reads, writes = [], []
        for s in self.stages:
            stage = plan.stage(s)
            reads.append(codec_for(types[stage.queue]))
            writes += [codec_for(types[r.queue]) for r in stage.routes]
        return check_release(reads=reads, writes=writes, catalog=catalog,
                             where=f"stages {', '.join(self.stages)} of {self.app.name!r}")

    def unavailable(self, stage: str) -> str | None:
        """Why `stage` cannot serve a request now (None: it can)."""
        return self.queues.stage_queue(stage).unavailable() or self.unchecked

    async def _supervise(self, stage: str) -> None:
        delay = self.restart.initial
        loop = asyncio.get_running_loop()
        waiting: str | None = None  # why the stage waits for its backend: said once, when the wait begins
        while True:
            began = loop.time()
            try:
                await self.app.artifact(self.queues, stage)
                log.warning("stage %r returned; not restarting it", stage)
                return
            except asyncio.CancelledError:
                raise
            except Unavailable as e:  # not the stage's fault (brokers away, disk full): wait, without a traceback
                if loop.time() - began > RAN_A_WHILE:  # it worked meanwhile: a new wait, said anew
                    waiting, delay = None, self.restart.initial
                why = str(e.error if isinstance(e, BrokerUnreachable) else e)
                if waiting is None:
                    log.warning("stage %r waits for its backend: %s; trying again every %.0fs at most",
                                stage, why, UNAVAILABLE_PAUSE)
                elif why != waiting:
                    log.info("stage %r still waits for its backend: %s", stage, why)
                waiting = why
                await asyncio.sleep(min(delay, UNAVAILABLE_PAUSE))
                delay = min(delay * 2, self.restart.maximum)
            except Exception as e:
                if waiting is not None:
                    log.info("stage %r: its backend is available again", stage)
                    waiting = None
                if loop.time() - began > RAN_A_WHILE:
                    delay = self.restart.initial
                queue = self.queues.stage_queue(stage)
                gone = queue.lost(e)
                if gone is not None:  # another process of this stage completed it first: not a failure
                    log.info("stage %r: item %r was completed by another process; going on", stage, gone)
                    continue
                self.progress.of(stage).failed.inc()
                item = queue.fail(e)
                if item is not None:
                    # the queue retries that item after its own backoff (or dead-letters it); others go on now
                    log.exception("stage %r failed on item %r; restarting", stage, item)
                    await asyncio.sleep(self.restart.initial)
                    delay = self.restart.initial
                    continue
                log.exception("stage %r failed; restarting in %.1fs", stage, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.restart.maximum)

    async def _watch_oldest(self) -> None:
        """The oldest pending age of each stage, every PENDING_EVERY seconds (backends that do not report it)."""
        queues = {s: self.queues.stage_queue(s) for s in self.stages}
        while True:
            for s, raw in queues.items():
                try:
                    pending = await raw.pending()
                except Exception as e:  # a busy or missing file now: measured again next time
                    log.debug("stage %r: oldest pending age not measured: %s", s, e)
                    continue
                self.progress.of(s).oldest_pending.set(pending.oldest_age or 0.0)
            await asyncio.sleep(PENDING_EVERY)

    def start(self) -> None:
        """Check the release (an incompatible one raises `SchemaError` before anything runs), then start
        the stages. With the backend away, the check waits for it in the background, and so do the
        stages: pages and `/readyz` answer 503 with the reason meanwhile."""
        try:
            self.check_release()
        except SchemaError:
            raise
        except Exception as e:  # (the backend away: BrokerUnreachable, or a client error on the way)
            if isinstance(e, BrokerUnreachable):  # (said once, by the backend's watch: not again here)
                log.info("this release's schemas cannot be checked before the brokers answer: the stages wait")
            else:
                log.warning("this release's schemas cannot be checked yet (%s): the stages wait for it", e)
            self.unchecked = f"this release's schemas are not checked yet: {e}"
            self.watchers.append(asyncio.create_task(self._check_release_later(), name="release-check"))
        self.console.start()
        self.watchers.append(asyncio.create_task(self._watch_stalls(), name="watchdog"))
        if self.measures_pending:
            self.watchers.append(asyncio.create_task(self._watch_oldest(), name="oldest-pending"))
        for s in self.stages:
            self.queues.stage_queue(s).open()  # Kafka: join the group and restore pending items before any request
        if self.unchecked is None:
            self._start_stages()

    def _start_stages(self) -> None:
        for s in self.stages:
            if not self.app.is_web(s):
                self.tasks[s] = asyncio.create_task(self._supervise(s), name=f"stage:{s}")

    async def _check_release_later(self) -> None:
        """`check_release` again until the backend answers; then the stages start, or, when the release
        is refused, the service stops (`serve` raises the refusal)."""
        delay = self.restart.initial
        while True:
            await asyncio.sleep(delay)
            try:
                await asyncio.to_thread(self.check_release)
            except SchemaError as e:
                log.error("%s", e)
                self.refused = e
                self.closing.set()
                return
            except Exception as e:
                self.unchecked = f"this release's schemas are not checked yet: {e}"
                delay = min(delay * 2, UNAVAILABLE_PAUSE)  # (checked within seconds of the backend's return)
                continue
            log.info("this release's schemas are checked: starting the stages")
            self.unchecked = None
            self._start_stages()
            return

    async def stop(self) -> None:
        await self.console.stop()
        running = [*self.tasks.values(), *self.watchers]
        for t in running:
            t.cancel()
        for t in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.backend.close()

    async def serve(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        """Run until SIGINT or SIGTERM, then stop every stage and return (exit status 0)."""
        import uvicorn

        class Server(uvicorn.Server):
            # uvicorn re-raises the signal after shutting down, which would end the process with
            # status 143 before the stages are stopped: the service handles the signals itself.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        # proxy_headers off: the client address is the peer's, which is what a trusted proxy is checked by
        server = Server(uvicorn.Config(self.asgi, host=host, port=port, log_level="info", lifespan="off",
                                       proxy_headers=False, timeout_graceful_shutdown=5))
        loop = asyncio.get_running_loop()

        def exit_soon() -> None:
            server.should_exit = True
            self.console.closing.set()  # ends the live streams, so connections can close

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, exit_soon)
        self.start()

        async def stop_when_closing() -> None:
            await self.closing.wait()
            exit_soon()

        closer = asyncio.create_task(stop_when_closing())
        try:
            await server.serve()
        finally:
            closer.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()
        if self.refused is not None:
            raise self.refused


DETAIL_LIMIT = 300


def _count(listing: Callable[[], Sequence[Any]]) -> Callable[[], float]:
    """A gauge's function: how many `listing()` gives now."""
    return lambda: float(len(listing()))


def _short(text: str) -> str:
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT] + f"… ({len(text)} characters)"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if not isinstance(exc.detail, str) else _short(exc.detail)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # FastAPI's default answer echoes every input; this one names where and why, never the input
    errors = [
        {"loc": [str(p)[:60] for p in e.get("loc", ())], "msg": _short(str(e.get("msg", ""))), "type": e.get("type")}
        for e in list(exc.errors())[:20]
    ]
    return JSONResponse({"detail": errors}, status_code=422)


async def _try_again(request: Request, exc: Exception) -> Response:
    """A completion the backend could not make durable now (its transaction aborted while a broker moved,
    the brokers away, the disk full): 503 with Retry-After, not a 500 with a traceback. Nothing was done:
    the task is still pending, and the same request succeeds once the backend can take it."""
    log.info("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": _short(f"not done, try again: {exc}")}, status_code=503, headers={"Retry-After": "1"})


async def _locked(request: Request, exc: Exception) -> Response:
    """A completion of a task someone else holds (a lock taken in the console, or by another request): 409
    naming who and until when, whatever route it came by. Nothing was done."""
    assert isinstance(exc, TaskLocked)
    return JSONResponse({"detail": _short(str(exc)), "holder": exc.holder, "until": exc.until}, status_code=409)


def harden(app: FastAPI, docs: bool) -> None:
    """Error answers that never echo unbounded input, and no API docs unless asked for (user apps too)."""
    app.exception_handlers[StarletteHTTPException] = _http_error
    app.exception_handlers[HTTPException] = _http_error
    app.exception_handlers[RequestValidationError] = _validation_error
    app.exception_handlers[CommitAborted] = _try_again
    app.exception_handlers[Unavailable] = _try_again
    app.exception_handlers[TaskLocked] = _locked
    if not docs:
        hidden = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url} - {None}
        app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in hidden]
        app.openapi_url = app.docs_url = app.redoc_url = None
