"""The built-in review console of `pipeteer run`: every human stage's pending tasks, worked in a browser.

`/` lists the stages with their pending counts (live); `/console/?stage=NAME` is a stage's
desk: the pending tasks, oldest first and paginated, and one task at a time, shown from its
state with the actions its output type calls for (see `forms`). Keyboard: `a` approve, `r`
reject, `n` next, `u` undo. A task opened is leased to its reviewer and a decision waits out an
undo window before it is applied (see `desk`). The JSON API under `/console/api/` is what the
page uses, and works for scripts as well (`?stage=` and `?id=` in the query, so any id works).

The app's own web pages stay where they were (`/<stage>/`), linked from the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from pipeteer import settings
from pipeteer.errors import InexistentItem, PipeteerError, UnreadableRecord
from pipeteer.queues.base import BaseQueue
from pipeteer.runtime.console.desk import Decision, Desk, NothingToUndo, TaskTaken, candidates
from pipeteer.runtime.console.forms import FormError, actions_for, build, field_bytes, image_type, show
from pipeteer.runtime.console.peers import INSTANCE_HEADER, Peers, parse_peers
from pipeteer.runtime.security import current_reviewer
from pipeteer.spec import Wrapped

log = logging.getLogger("pipeteer.console")

HERE = Path(__file__).parent
PAGE_SIZE = 50
LIVE_INTERVAL = 1.0
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), auto_reload=False
)
STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "annotate.css": "text/css; charset=utf-8",
    "annotate.js": "text/javascript; charset=utf-8",
}


@dataclass(frozen=True)
class ConsoleSettings:
    """`lease_seconds`: how long an opened task stays with its reviewer; `undo_seconds`: the undo window;
    `peers`: the other instances of the same human stages (see `peers`), from `PIPETEER_CONSOLE_PEERS`."""

    lease_seconds: float = 300.0
    undo_seconds: float = 5.0
    peers: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ConsoleSettings:
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(peers=parse_peers(settings.CONSOLE_PEERS.get(env) or ""), **given)


def render(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(template).render(**context))


def reviewer() -> str:
    return current_reviewer.get() or "anonymous"


def unreadable_task(stage: str, id: str) -> str:
    """What the console answers for a task this version cannot read."""
    return (f"task {id[:100]!r} of {stage} was written by another version of the workflow and cannot be read "
            "by this one yet: it is kept (not lost), and a version that can read it will serve it")


class Console:
    """The console of one stage service: its human stages' desks and the routes that serve them."""

    def __init__(self, service: Any, settings: ConsoleSettings = ConsoleSettings()) -> None:
        self.service = service
        self.app_name: str = service.app.name
        self.settings = settings
        self.human: list[str] = [s for s in service.stages if s in service.web]
        self.desks = {s: Desk(settings.lease_seconds, settings.undo_seconds) for s in self.human}
        self.closing = asyncio.Event()
        self._applier: asyncio.Task[None] | None = None
        # One snapshot per stage (None: all stages) shared by every live view, however many are open
        self._snapshots: dict[str | None, tuple[float, Any]] = {}
        self.peers = Peers(settings.peers, lambda name: service.security.session_cookie(name, seconds=60))

    # --- queues of a stage ---

    def _raw(self, stage: str) -> BaseQueue[Any]:
        return self.service.queues.stage_queue(stage)

    def _qout(self, stage: str) -> Any:
        return self.service.app.stage_queues(self.service.queues, stage)["Qout"]

    def _output_type(self, stage: str) -> Any:
        s = self.service.app.stages()[stage]
        return s.inner_output_type() if isinstance(s, Wrapped) else s.Tout

    async def pending(self, stage: str) -> list[str]:
        ids: list[str] = await self._raw(stage).keys()
        return ids

    async def held(self, stage: str) -> list[dict[str, Any]]:
        """The tasks this instance holds: id, holder, whether decided, and since when it waits (for merging).
        A task this version cannot read (another version's, mid-rollout) is listed too, marked `unreadable`."""
        raw = self._raw(stage)
        timed = raw.pending_since()  # wall clock: comparable across instances
        unreadable = {h.id for h in raw.held()}
        desk = self.desks[stage]
        now = time.time()
        return [{"id": id, "holder": desk.holder(id, now), "decided": id in desk.waiting, "since": t,
                 **({"unreadable": True} if id in unreadable else {})} for id, t in timed]

    async def listing(self, stage: str) -> list[dict[str, Any]]:
        """Every pending task of the stage, this instance's and its peers', oldest first."""
        items = await self.held(stage)
        if self.peers:
            for answer in await self.peers.ask_all("GET", "/console/api/held", {"stage": stage}, reviewer()):
                items += answer.get("items", [])
            items.sort(key=lambda i: i["since"])
        return items

    async def routed(self, request: Request, stage: str, id: str, local: bool,
                     action: Callable[[], Awaitable[Any]], path: str | None = None) -> Any:
        """Act on a task here if this instance holds it (or was asked as a peer), else where it is held.

        Forwarded as this request (or as a POST to `path` with only stage and id, for `next`)."""
        if local or not self.peers or await self._raw(stage).has(id):
            return await action()
        if path is None:
            method, path = request.method, request.url.path
            params = {k: v for k, v in request.query_params.items() if k != "local"}
            body, content_type = await request.body() or None, request.headers.get("content-type")
        else:
            method, params, body, content_type = "POST", {"stage": stage, "id": id}, None, None
        r = await self.peers.forward(method, path, params, reviewer(), body, content_type)
        if r is None:
            raise HTTPException(404, detail=f"task {id[:100]!r} of {stage} is not pending (unknown, or already completed)")
        return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))

    def _desk(self, stage: str | None) -> Desk:
        if stage not in self.desks:
            raise HTTPException(404, detail=f"no human stage {str(stage)[:100]!r} here (stages: {', '.join(self.human)})")
        return self.desks[stage]

    async def detail(self, stage: str, id: str) -> dict[str, Any]:
        try:
            state = await self._raw(stage).read(id)
        except InexistentItem:
            raise HTTPException(404, detail=f"task {id[:100]!r} of {stage} is not pending (unknown, or already completed)") from None
        except UnreadableRecord:
            raise HTTPException(409, detail=unreadable_task(stage, id)) from None
        desk = self.desks[stage]
        return {
            "id": id,
            "stage": stage,
            "fields": [asdict(f) for f in show(state)],
            "holder": desk.holder(id, time.time()),
            "actions": asdict(actions_for(self._output_type(stage))),
        }

    async def open(self, request: Request, stage: str, id: str, local: bool = False, path: str | None = None) -> Any:
        """Lease the task to the reviewer (where it is held) and give its detail; 409 if someone else has it."""
        desk = self.desks[stage]

        async def open_here() -> dict[str, Any]:
            out = await self.detail(stage, id)
            try:
                lease = desk.lease(id, reviewer(), time.time())
            except TaskTaken as e:
                raise HTTPException(409, detail=str(e)) from None
            out["holder"] = lease.reviewer
            out["lease_until"] = lease.until
            return out

        return await self.routed(request, stage, id, local, open_here, path)

    # --- applying decisions ---

    async def apply(self, stage: str, d: Decision) -> str:
        """Push one decision through the stage's `Qout` (the atomic move); 'applied' or why not."""
        token = current_reviewer.set(d.reviewer)
        try:
            await self._qout(stage).push(d.id, d.value)
        except InexistentItem:
            log.warning("stage %r: %s's decision on %r not applied: the task was completed elsewhere", stage, d.reviewer, d.id)
            return "completed elsewhere"
        except PipeteerError as e:
            log.error("stage %r: %s's decision on %r failed: %s", stage, d.reviewer, d.id, e)
            return f"failed: {e}"
        finally:
            current_reviewer.reset(token)
        return "applied"

    async def _apply_due(self) -> None:
        while not self.closing.is_set():
            now = time.time()
            for stage, desk in self.desks.items():
                for d in desk.due(now):
                    await self.apply(stage, d)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), 0.2)

    def start(self) -> None:
        if self._applier is None and self.desks:
            self._applier = asyncio.create_task(self._apply_due(), name="console:decisions")

    async def stop(self) -> None:
        """Apply every decision still in its undo window (the reviewer meant it), then stop."""
        self.closing.set()
        if self._applier is not None:
            await self._applier
            self._applier = None
        for stage, desk in self.desks.items():
            for id in list(desk.waiting):
                d = desk.take(id)
                if d is not None:
                    await self.apply(stage, d)
        await self.peers.close()

    # --- HTTP ---

    def routes(self) -> APIRouter:
        router = APIRouter()
        console = self

        @router.get("/", response_class=HTMLResponse)
        async def index() -> HTMLResponse:
            stages = await console.stage_counts()
            return render("index.html", app=console.app_name, stages=stages, reviewer=reviewer())

        @router.get("/static/{name}")
        async def static(name: str) -> Response:
            if name not in STATIC:
                raise HTTPException(404, detail="no such file")
            return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name],
                            headers={"Cache-Control": "no-cache"})

        @router.get("/console/", response_class=HTMLResponse)
        async def stage_page(stage: str) -> HTMLResponse:
            console._desk(stage)
            return render("stage.html", app=console.app_name, stage=stage, reviewer=reviewer(),
                          undo_seconds=console.settings.undo_seconds,
                          own_page=f"/{stage}/")

        @router.get("/console/api/stages")
        async def stages() -> list[dict[str, Any]]:
            return await console.stage_counts()

        @router.get("/console/api/held")
        async def held(stage: str, response: Response) -> dict[str, Any]:
            """The tasks this instance holds (what its peers merge into their listings)."""
            console._desk(stage)
            response.headers[INSTANCE_HEADER] = console.peers.instance
            return {"instance": console.peers.instance, "items": await console.held(stage)}

        @router.get("/console/api/tasks")
        async def tasks(stage: str, offset: int = 0, limit: int = PAGE_SIZE) -> dict[str, Any]:
            console._desk(stage)
            if offset < 0 or not 1 <= limit <= 500:
                raise HTTPException(422, detail="offset must be >= 0 and limit between 1 and 500")
            items = await console.listing(stage)
            return {
                "stage": stage,
                "total": len(items),
                "offset": offset,
                "limit": limit,
                "items": [{"id": i["id"], "holder": i["holder"], **({"unreadable": True} if i.get("unreadable") else {})}
                          for i in items[offset : offset + limit]],
            }

        @router.get("/console/api/task")
        async def task(request: Request, stage: str, id: str, local: bool = False) -> Any:
            console._desk(stage)
            return await console.routed(request, stage, id, local, lambda: console.detail(stage, id))

        @router.get("/console/api/field")
        async def field(request: Request, stage: str, id: str, name: str, local: bool = False) -> Any:
            console._desk(stage)

            async def local_field() -> Response:
                try:
                    state = await console._raw(stage).read(id)
                except InexistentItem:
                    raise HTTPException(404, detail="task is not pending") from None
                except UnreadableRecord:
                    raise HTTPException(409, detail=unreadable_task(stage, id)) from None
                data = field_bytes(state, name)
                if data is None:
                    raise HTTPException(404, detail="no such bytes field")
                return Response(data, media_type=image_type(data) or "application/octet-stream",
                                headers={"Cache-Control": "private, max-age=300",
                                         "Content-Disposition": "inline" if image_type(data) else "attachment"})

            return await console.routed(request, stage, id, local, local_field)

        @router.post("/console/api/open")
        async def open_task(request: Request, stage: str, id: str, local: bool = False) -> Any:
            console._desk(stage)
            return await console.open(request, stage, id, local)

        @router.post("/console/api/next")
        async def next_task(request: Request, stage: str, after: str | None = None) -> dict[str, Any]:
            console._desk(stage)
            items = await console.listing(stage)
            listed = [(i["id"], i["holder"]) for i in items if not i["decided"]]
            for id in candidates(reviewer(), listed, after)[:20]:
                try:
                    opened = await console.open(request, stage, id, path="/console/api/open")
                except HTTPException:  # taken or completed meanwhile: the next one
                    continue
                if isinstance(opened, Response):  # answered by the peer holding it
                    if opened.status_code != 200:
                        continue
                    opened = json.loads(bytes(opened.body))
                return {"task": opened, "total": len(items)}
            return {"task": None, "total": len(items)}

        @router.post("/console/api/release")
        async def release(request: Request, stage: str, id: str, local: bool = False) -> Any:
            desk = console._desk(stage)

            async def release_here() -> dict[str, Any]:
                return {"released": desk.release(id, reviewer())}

            return await console.routed(request, stage, id, local, release_here)

        @router.post("/console/api/decide")
        async def decide(request: Request, stage: str, id: str, local: bool = False) -> Any:
            desk = console._desk(stage)

            async def decide_here() -> dict[str, Any]:
                value, label = await console._decision(stage, request)
                if not await console._raw(stage).has(id):
                    raise HTTPException(404, detail=f"task {id[:100]!r} of {stage} is not pending (unknown, or already completed)")
                try:
                    d = desk.decide(id, reviewer(), value, label, time.time())
                except TaskTaken as e:
                    raise HTTPException(409, detail=str(e)) from None
                if console.settings.undo_seconds <= 0 and desk.take(id) is not None:
                    outcome = await console.apply(stage, d)
                    if outcome != "applied":
                        raise HTTPException(409, detail=f"task {id[:100]!r}: {outcome}")
                    return {"id": id, "state": "applied", "label": label}
                return {"id": id, "state": "waiting", "label": label, "undo_seconds": console.settings.undo_seconds}

            return await console.routed(request, stage, id, local, decide_here)

        @router.post("/console/api/undo")
        async def undo(request: Request, stage: str, id: str, local: bool = False) -> Any:
            desk = console._desk(stage)

            async def undo_here() -> dict[str, Any]:
                try:
                    d = desk.undo(id, reviewer(), time.time())
                except NothingToUndo:
                    raise HTTPException(409, detail=f"nothing to undo on task {id[:100]!r}: the decision was already applied") from None
                return {"id": id, "state": "undone", "label": d.label}

            if local or not console.peers or id in desk.waiting:
                return await undo_here()
            return await console.routed(request, stage, id, local, undo_here)

        @router.get("/console/api/events")
        async def events(request: Request, stage: str | None = None) -> StreamingResponse:
            if stage is not None:
                console._desk(stage)
            return StreamingResponse(console._live(request, stage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

        return router

    async def _decision(self, stage: str, request: Request) -> tuple[Any, str]:
        tp = self._output_type(stage)
        actions = actions_for(tp)
        if actions.kind == "upload":
            data = await request.body()
            if not data:
                raise HTTPException(422, detail="send the file as the request body")
            return data, f"uploaded {len(data)} bytes"
        try:
            payload = json.loads(await request.body())
        except ValueError:
            raise HTTPException(422, detail="the body must be JSON: {\"value\": ...}") from None
        if not isinstance(payload, dict) or "value" not in payload:
            raise HTTPException(422, detail="the body must be JSON: {\"value\": ...}")
        try:
            value = build(tp, payload["value"])
        except FormError as e:
            raise HTTPException(422, detail=str(e)[:300]) from None
        if actions.kind == "decide":
            return value, "approved" if value else "rejected"
        return value, "submitted"

    async def stage_counts(self) -> list[dict[str, Any]]:
        out = []
        for s in self.service.stages:
            if s in self.desks:
                items = await self.listing(s)
                out.append({"stage": s, "human": True, "pending": len(items),
                            "taken": sum(1 for i in items if i["holder"])})
            else:
                out.append({"stage": s, "human": False, "pending": len(await self.pending(s)), "taken": 0})
        return out

    async def snapshot(self, stage: str | None) -> Any:
        """What a live view compares: computed at most once per interval, whoever asks."""
        now = time.monotonic()
        cached = self._snapshots.get(stage)
        if cached is not None and now - cached[0] < LIVE_INTERVAL / 2:
            return cached[1]
        if stage is None:
            value: Any = await self.stage_counts()
        else:
            items = await self.listing(stage)
            value = {"stage": stage, "total": len(items),
                     "head": [(i["id"], i["holder"], i["decided"]) for i in items[:PAGE_SIZE]]}
        self._snapshots[stage] = (now, value)
        return value

    async def _live(self, request: Request, stage: str | None) -> AsyncIterator[str]:
        """Server-sent events: a 'change' whenever counts, the oldest tasks or the leases change."""
        last: Any = None
        beat = time.monotonic()
        while not self.closing.is_set():
            if await request.is_disconnected():
                return
            snapshot = await self.snapshot(stage)
            if snapshot != last:
                last = snapshot
                yield f"event: change\ndata: {json.dumps(_summary(snapshot))}\n\n"
                beat = time.monotonic()
            elif time.monotonic() - beat > 15:
                yield ": keep-alive\n\n"
                beat = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), LIVE_INTERVAL)


def _summary(snapshot: Any) -> Any:
    if isinstance(snapshot, Mapping):
        return {"stage": snapshot["stage"], "total": snapshot["total"]}
    return snapshot


def login_page(next_path: str, error: str | None = None) -> HTMLResponse:
    response = render("login.html", next=next_path, error=error)
    if error:
        response.status_code = 401
    return response


__all__: Sequence[str] = ["Console", "ConsoleSettings", "login_page"]
