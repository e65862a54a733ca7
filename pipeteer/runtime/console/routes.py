"""The console's HTTP routes: its pages, and the JSON API under `/console/api/` the pages (and scripts) use.

Every route that names a task takes `stage` and `id` in the query. On Kafka with several
instances of a human stage, an action on a task this instance does not hold is forwarded to
the instance that does (see `peers`); `local=true` marks a forwarded request.

    GET  /console/api/tasks?stage=S&offset=0&limit=50&match=TEXT&older_than=SECONDS
    GET  /console/api/task?stage=S&id=ID             GET /console/api/field?stage=S&id=ID&name=FIELD
    POST /console/api/open?stage=S&id=ID             POST /console/api/next?stage=S[&skip=ID]
    POST /console/api/decide?stage=S&id=ID  {"value": ..., "reason": ..., "comment": ...}
    POST /console/api/undo?stage=S&id=ID             POST /console/api/release?stage=S&id=ID
    POST /console/api/preview?stage=S&id=ID {"value": ...}   (an image, where the app provides a preview)
    GET  /console/api/recent?stage=S   GET /console/api/team[?stage=S]   GET /console/api/stages
    GET  /console/api/events[?stage=S] (server-sent events)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from pipeteer.errors import InexistentItem, UnreadableRecord
from pipeteer.runtime.console import (
    HERE,
    LIVE_INTERVAL,
    PAGE_SIZE,
    PEER_DEPTH,
    STATIC,
    Console,
    not_pending,
    render,
    unreadable_task,
)
from pipeteer.runtime.console.desk import NothingToUndo
from pipeteer.runtime.console.forms import FormError, actions_for, build, field_bytes, image_type
from pipeteer.runtime.console.guard import reviewer
from pipeteer.runtime.console.peers import INSTANCE_HEADER
from pipeteer.runtime.console.stats import reasons as reason_counts
from pipeteer.runtime.metrics import audit_event

MAX_MATCH = 200
COMMENT_LIMIT = 500
AGES = {"": None, "1h": 3600.0, "4h": 4 * 3600.0, "1d": 86400.0, "7d": 7 * 86400.0}
"""The age filters the page offers (the API takes any number of seconds)."""


def _filters(match: str | None, older_than: float | None) -> tuple[str | None, float | None]:
    if match is not None and len(match) > MAX_MATCH:
        raise HTTPException(422, detail=f"match: at most {MAX_MATCH} characters")
    if older_than is not None and not older_than >= 0:
        raise HTTPException(422, detail="older_than: a number of seconds >= 0")
    return match or None, older_than


def _page_bounds(offset: int, limit: int, most: int = 500) -> None:
    if offset < 0 or not 1 <= limit <= most:
        raise HTTPException(422, detail=f"offset must be >= 0 and limit between 1 and {most}")


def routes(console: Console) -> APIRouter:
    router = APIRouter()

    async def routed(request: Request, stage: str, id: str, local: bool,
                     action: Callable[[], Awaitable[Any]], path: str | None = None) -> Any:
        """Act on a task here if this instance holds it (or was asked as a peer), else where it is held.

        Forwarded as this request (or as a POST to `path` with only stage and id, for `next`)."""
        if local or not console.peers or await console._raw(stage).has(id):
            return await action()
        if path is None:
            method, path = request.method, request.url.path
            params = {k: v for k, v in request.query_params.items() if k != "local"}
            body, content_type = await request.body() or None, request.headers.get("content-type")
        else:
            method, params, body, content_type = "POST", {"stage": stage, "id": id}, None, None
        r = await console.peers.forward(method, path, params, reviewer(), body, content_type)
        if r is None:
            raise not_pending(stage, id)
        return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))

    async def open_or_none(request: Request, stage: str, id: str) -> dict[str, Any] | None:
        """`next`'s try at one task: its detail, or None if it was taken or completed meanwhile."""
        try:
            opened = await routed(request, stage, id, False, lambda: console.open_here(stage, id), "/console/api/open")
        except HTTPException:
            return None
        if isinstance(opened, Response):  # answered by the peer holding it
            if opened.status_code != 200:
                return None
            answer: dict[str, Any] = json.loads(bytes(opened.body))
            return answer
        return dict(opened)

    @router.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        stages = await console.counts()
        return render("index.html", app=console.app_name, stages=stages, reviewer=reviewer(),
                      team=console.team())

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, detail="no such file")
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name],
                        headers={"Cache-Control": "no-cache"})

    @router.get("/console/", response_class=HTMLResponse)
    async def stage_page(stage: str) -> HTMLResponse:
        console.desk(stage)
        return render("stage.html", app=console.app_name, stage=stage, reviewer=reviewer(),
                      undo_seconds=console.settings.undo_seconds, own_page=f"/{stage}/",
                      guidelines=console.service.app.guidelines_for(stage),
                      reasons=json.dumps(console.reasons(stage)), preview=stage in console.service.app.previews)

    @router.get("/console/api/stages")
    async def stages() -> list[dict[str, Any]]:
        return await console.counts()

    @router.get("/console/api/team")
    async def team(stage: str | None = None) -> dict[str, Any]:
        if stage is not None:
            console.desk(stage)
        now = time.time()
        week = console.ledger.between(now - 7 * 86400, now, stage)
        return {"reviewers": [s.__dict__ for s in console.team(stage)], "reasons": reason_counts(week)}

    @router.get("/console/api/held")
    async def held(stage: str, response: Response, offset: int = 0, limit: int = PAGE_SIZE,
                   match: str | None = None, older_than: float | None = None) -> dict[str, Any]:
        """The tasks this instance holds, a page (what its peers merge into their listings)."""
        console.desk(stage)
        _page_bounds(offset, limit, PEER_DEPTH)
        match, older_than = _filters(match, older_than)
        response.headers[INSTANCE_HEADER] = console.peers.instance
        total, items = console.local_page(stage, offset, limit, match, older_than)
        return {"instance": console.peers.instance, "total": total, "items": items,
                "taken": console.locks.count(stage, time.time()), "backlog": console._raw(stage).backlog()}

    @router.get("/console/api/tasks")
    async def tasks(stage: str, offset: int = 0, limit: int = PAGE_SIZE, match: str | None = None,
                    older_than: float | None = None) -> dict[str, Any]:
        console.desk(stage)
        _page_bounds(offset, limit)
        match, older_than = _filters(match, older_than)
        total, items = await console.page(stage, offset, limit, match, older_than)
        return {
            "stage": stage, "total": total, "offset": offset, "limit": limit,
            "items": [{k: i[k] for k in ("id", "since", "holder", "until", "decided", "unreadable") if k in i}
                      for i in items],
        }

    @router.get("/console/api/task")
    async def task(request: Request, stage: str, id: str, local: bool = False) -> Any:
        console.desk(stage)
        return await routed(request, stage, id, local, lambda: console.detail(stage, id))

    @router.get("/console/api/field")
    async def field(request: Request, stage: str, id: str, name: str, local: bool = False) -> Any:
        console.desk(stage)

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

        return await routed(request, stage, id, local, local_field)

    @router.post("/console/api/open")
    async def open_task(request: Request, stage: str, id: str, local: bool = False) -> Any:
        console.desk(stage)
        return await routed(request, stage, id, local, lambda: console.open_here(stage, id))

    @router.post("/console/api/next")
    async def next_task(request: Request, stage: str, skip: str | None = None, after: str | None = None) -> dict[str, Any]:
        """The next task for the reviewer, opened; `skip` (or `after`): the task they pass on first."""
        desk = console.desk(stage)
        passed = skip if skip is not None else after
        if passed is not None:
            desk.skip(passed, reviewer())
        return await console.next_for(request, stage, open_or_none)

    @router.post("/console/api/release")
    async def release(request: Request, stage: str, id: str, local: bool = False) -> Any:
        desk = console.desk(stage)

        async def release_here() -> dict[str, Any]:
            return {"released": desk.release(id, reviewer())}

        return await routed(request, stage, id, local, release_here)

    @router.post("/console/api/decide")
    async def decide(request: Request, stage: str, id: str, local: bool = False) -> Any:
        console.desk(stage)

        async def decide_here() -> dict[str, Any]:
            value, label, reason, comment = await _decision(console, stage, request)
            return await console.decide_here(stage, id, value, label, reason, comment)

        return await routed(request, stage, id, local, decide_here)

    @router.post("/console/api/undo")
    async def undo(request: Request, stage: str, id: str, local: bool = False) -> Any:
        desk = console.desk(stage)

        async def undo_here() -> dict[str, Any]:
            me = reviewer()
            try:
                d = desk.undo(id, me, time.time())
            except NothingToUndo:
                if console.recalls:
                    return await console.recall(stage, id)
                raise HTTPException(409, detail=f"nothing to undo on task {id[:100]!r}: the decision was already "
                                                "applied") from None
            console.states.pop((stage, id), None)
            audit_event("undone", stage, id, me, decision=d.label, was="waiting")
            return {"id": id, "state": "undone", "label": d.label}

        if local or not console.peers or id in desk.waiting:
            return await undo_here()
        return await routed(request, stage, id, local, undo_here)

    @router.get("/console/api/recent")
    async def recent(stage: str) -> dict[str, Any]:
        console.desk(stage)
        return {"items": console.recent(stage)}

    @router.post("/console/api/preview")
    async def preview(request: Request, stage: str, id: str, local: bool = False) -> Any:
        console.desk(stage)
        make = console.service.app.previews.get(stage)
        if make is None:
            raise HTTPException(404, detail=f"the app gives no preview for {stage}")

        async def preview_here() -> Response:
            value, _, _, _ = await _decision(console, stage, request)
            try:
                state = await console._raw(stage).read(id)
            except InexistentItem:
                raise not_pending(stage, id) from None
            try:
                image = await asyncio.to_thread(make, state, value)
            except ValueError as e:
                raise HTTPException(422, detail=f"task {id[:100]!r}: {str(e)[:300]}") from None
            return Response(image, media_type=image_type(image) or "application/octet-stream",
                            headers={"Cache-Control": "no-store"})

        return await routed(request, stage, id, local, preview_here)

    @router.get("/console/api/events")
    async def events(request: Request, stage: str | None = None) -> StreamingResponse:
        if stage is not None:
            console.desk(stage)
        return StreamingResponse(_live(console, request, stage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return router


async def _decision(console: Console, stage: str, request: Request) -> tuple[Any, str, str | None, str | None]:
    """What the reviewer sent: (value for the stage's Qout, label, reason, comment); 422 naming what is wrong."""
    tp = console.service.app.output_type(stage)
    actions = actions_for(tp)
    if actions.kind == "upload":
        data = await request.body()
        if not data:
            raise HTTPException(422, detail="send the file as the request body")
        return data, f"uploaded {len(data)} bytes", None, None
    try:
        payload = json.loads(await request.body())
    except ValueError:
        raise HTTPException(422, detail="the body must be JSON: {\"value\": ...}") from None
    if not isinstance(payload, dict) or "value" not in payload:
        raise HTTPException(422, detail="the body must be JSON: {\"value\": ...}")
    reason, comment = payload.get("reason"), payload.get("comment")
    if reason is not None and reason not in console.reasons(stage):
        declared = ", ".join(console.reasons(stage)) or "none declared"
        raise HTTPException(422, detail=f"reason: {json.dumps(reason)[:80]} is not one of the stage's ({declared}); "
                                        "write your own in comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > COMMENT_LIMIT):
        raise HTTPException(422, detail=f"comment: text of at most {COMMENT_LIMIT} characters")
    try:
        value = build(tp, payload["value"])
    except FormError as e:
        raise HTTPException(422, detail=str(e)[:300]) from None
    if actions.kind == "decide":
        return value, "approved" if value else "rejected", reason, comment or None
    return value, "submitted", reason, comment or None


def _summary(snapshot: Any) -> Any:
    if isinstance(snapshot, Mapping):
        return {"stage": snapshot["stage"], "total": snapshot["total"]}
    return snapshot


async def _live(console: Console, request: Request, stage: str | None) -> AsyncIterator[str]:
    """Server-sent events: a 'change' whenever counts, the oldest tasks or the locks change."""
    last: Any = None
    beat = time.monotonic()
    while not console.closing.is_set():
        if await request.is_disconnected():
            return
        snapshot = await console.snapshot(stage)
        if snapshot != last:
            last = snapshot
            yield f"event: change\ndata: {json.dumps(_summary(snapshot))}\n\n"
            beat = time.monotonic()
        elif time.monotonic() - beat > 15:
            yield ": keep-alive\n\n"
            beat = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(console.closing.wait(), LIVE_INTERVAL)
