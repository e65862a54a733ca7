"""The two human stages of the example, as FastAPI apps made from the stage's queues (the seed's style).

- `validation_api(Qin, Qout)`: a person looks at each automatic correction and approves or
  rejects it (`Qin` holds the corrected PNGs, `Qout` takes a bool).
- `manual_api(Qin, Qout)`: a person clicks the page's four corners on the original photo
  (`Qin` holds the originals, `Qout` takes the rectified PNG).

Each app serves a small self-contained HTML page at `/` (no external assets), `GET /tasks`
(pending ids), `GET /tasks/{id}/image`, and one POST that completes a task. Completing pushes to
`Qout`, which in pipeteer moves the item on to the next stage and removes it from this one in one
atomic step: a task completed twice (a double click, two reviewers) succeeds once, and the others
get 404 (already done) or 409 (being completed right now by another request of this process).

The apps are mounted under a prefix by the stage service (`/validation/`, `/manual-correct/`);
the pages build their links from the request's `root_path`, so they work at any prefix.

    queues = pipeteer.connect(app, "sqlite:///queues.db")
    api = validation_api(**queues["validation"]["internal"])    # what `pipeteer run` does
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from pipeteer import InexistentItem, ReadQueue, WriteQueue
from topologies.perspective_correction.imaging import image_size, warp_with_corners

__all__ = ["Correction", "manual_api", "validation_api"]

_HERE = Path(__file__).parent
# Pages list at most this many tasks; the rest show up as earlier ones are completed.
_PAGE_LIMIT = 60
_CURRENT = ' class="current"'


class Correction(BaseModel):
    """The body of `POST /correct`: the task id and the 4 clicked corners, `[x, y]` in image pixels."""

    id: str
    corners: list[list[float]]


class _Claims:
    """Ids being completed by a request of this process right now, so a concurrent twin gets 409 at once.

    Across processes the queue's atomic move decides: the loser's push raises `InexistentItem`.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._ids: set[str] = set()

    @contextmanager
    def claim(self, id: str) -> Iterator[None]:
        if id in self._ids:
            raise HTTPException(409, detail=f"task {id!r} of {self.stage} is being completed by another request")
        self._ids.add(id)
        try:
            yield
        finally:
            self._ids.discard(id)


def _not_pending(stage: str, id: str) -> HTTPException:
    return HTTPException(404, detail=f"no pending task {id!r} in {stage}: unknown id, or already completed")


def _media_type(img: bytes) -> str:
    if img.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if img.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "application/octet-stream"


def _base(request: Request) -> str:
    """The app's own URL prefix, ending with '/' (e.g. '/validation/' when mounted there)."""
    return str(request.scope.get("root_path", "")).rstrip("/") + "/"


def _js(value: Any) -> str:
    """A JSON literal safe to embed in a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _image_url(base: str, id: str) -> str:
    return f"{base}tasks/{quote(id, safe='')}/image"


def _render(template: str, **parts: str) -> str:
    page = (_HERE / template).read_text(encoding="utf-8")
    for key, value in parts.items():
        page = page.replace(f"__{key}__", value)
    return page


async def _pending_ids(Qin: ReadQueue[bytes]) -> list[str]:
    ids: list[str] = await Qin.keys()
    return ids


async def _read_image(Qin: ReadQueue[bytes], stage: str, id: str) -> bytes:
    try:
        img: bytes = await Qin.read(id)
    except InexistentItem:
        raise _not_pending(stage, id) from None
    return img


def _task_routes(app: FastAPI, Qin: ReadQueue[bytes], stage: str) -> None:
    """`GET /tasks` and `GET /tasks/{id}/image`, the same in both apps."""

    @app.get("/tasks")
    async def tasks() -> list[dict[str, str]]:
        """The pending tasks' ids, oldest first (not their images: fetch those one by one)."""
        return [{"id": id} for id in await _pending_ids(Qin)]

    # `:path` so that ids containing '/' (sent as %2F, which servers decode) still match.
    @app.get("/tasks/{id:path}/image", response_class=Response)
    async def image(id: str) -> Response:
        """The task's image, as stored (PNG or JPEG)."""
        img = await _read_image(Qin, stage, id)
        return Response(img, media_type=_media_type(img), headers={"Cache-Control": "no-store"})


def validation_api(Qin: ReadQueue[bytes], Qout: WriteQueue[bool]) -> FastAPI:
    """The validation stage: approve or reject each automatic correction.

    `POST /validate?id=ID&ok=true|false` completes a task and answers `{"id": ..., "ok": ...}`;
    404 if the id is not pending (unknown or already validated), 409 if another request is
    validating it at this very moment.
    """
    stage = "validation"
    app = FastAPI(title="pipeteer example: validation of automatic corrections")
    claims = _Claims(stage)
    _task_routes(app, Qin, stage)

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> HTMLResponse:
        """Every pending correction with Approve / Reject buttons."""
        base = _base(request)
        ids = await _pending_ids(Qin)
        cards = "\n".join(
            f'<div class="card" data-id="{html.escape(id)}">'
            f'<img src="{html.escape(_image_url(base, id))}" alt="corrected image {html.escape(id)}" loading="lazy">'
            f'<div class="id">{html.escape(id)}</div>'
            '<div class="actions">'
            '<button type="button" class="approve" onclick="decide(this, true)">Approve</button>'
            '<button type="button" class="reject" onclick="decide(this, false)">Reject</button>'
            '</div><div class="msg"></div></div>'
            for id in ids[:_PAGE_LIMIT]
        )
        if not ids:
            cards = '<p class="empty">Nothing to validate. New corrections appear here as they arrive (Refresh).</p>'
        return HTMLResponse(_render("validation.html", COUNT=str(len(ids)), CARDS=cards, BASE_JSON=_js(base)))

    @app.post("/validate")
    async def validate(id: str, ok: bool) -> dict[str, Any]:
        """Approve (`ok=true`) or reject (`ok=false`) the correction of task `id`."""
        with claims.claim(id):
            try:
                await Qout.push(id, ok)
            except InexistentItem:
                raise _not_pending(stage, id) from None
        return {"id": id, "ok": ok}

    return app


def manual_api(Qin: ReadQueue[bytes], Qout: WriteQueue[bytes]) -> FastAPI:
    """The manual-correction stage: click the page's 4 corners on the original photo.

    `POST /correct` with `{"id": ..., "corners": [[x, y], ...]}` (image pixels, any order) warps
    the photo, pushes the rectified PNG and answers `{"id", "width", "height"}`; 422 with the
    reason if the corners cannot describe a page, 404 if the id is not pending, 409 if another
    request is correcting it at this very moment.
    """
    stage = "manual-correct"
    app = FastAPI(title="pipeteer example: manual perspective correction")
    claims = _Claims(stage)
    _task_routes(app, Qin, stage)

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request, id: str | None = None) -> HTMLResponse:
        """The task `id` (default: the oldest pending one) to click, and the list of pending tasks."""
        base = _base(request)
        ids = await _pending_ids(Qin)
        current = id if id is not None else (ids[0] if ids else None)
        links = "\n".join(
            f'<a href="{html.escape(base)}?id={html.escape(quote(t, safe=""))}"'
            f"{_CURRENT if t == current else ''}>{html.escape(t)}</a>"
            for t in ids[:_PAGE_LIMIT]
        )
        if current is None:
            task = '<section><p class="empty">Nothing to correct. Tasks appear here when automatic correction fails or a correction is rejected (Refresh).</p></section>'
        elif current not in ids:
            task = f'<section><p class="empty">Task <span class="id">{html.escape(current)}</span> is not pending (unknown, or already done).</p></section>'
            current = None
        else:
            task = (
                f'<section><div>Task <span class="id">{html.escape(current)}</span>: click the 4 corners of the page.</div>'
                '<div class="stage" id="stage">'
                f'<img id="photo" src="{html.escape(_image_url(base, current))}" alt="photo {html.escape(current)}" draggable="false">'
                '<svg><polygon id="outline" points="" fill="rgba(37,99,235,.15)" stroke="#2563eb" stroke-width="2"/></svg>'
                "</div>"
                '<div class="controls">'
                '<button type="button" onclick="undo()">Undo</button>'
                '<button type="button" onclick="reset()">Reset</button>'
                '<button type="button" id="submit" onclick="submit()" disabled>Submit</button>'
                '<span id="msg"></span></div></section>'
            )
        return HTMLResponse(
            _render(
                "manual.html",
                COUNT=str(len(ids)),
                LIST=links or '<span class="empty" style="padding: 0 14px">none</span>',
                TASK=task,
                BASE_JSON=_js(base),
                TASK_JSON=_js(current),
            )
        )

    @app.post("/correct")
    async def correct(body: Correction) -> dict[str, Any]:
        """Rectify task `id` from the clicked corners and send the result on."""
        img = await _read_image(Qin, stage, body.id)
        try:
            # OpenCV work off the event loop, so the page stays responsive for other people.
            out = await asyncio.to_thread(warp_with_corners, img, body.corners)
        except ValueError as e:
            raise HTTPException(422, detail=f"task {body.id!r}: {e}") from None
        with claims.claim(body.id):
            try:
                await Qout.push(body.id, out)
            except InexistentItem:
                raise _not_pending(stage, body.id) from None
        width, height = image_size(out)
        return {"id": body.id, "width": width, "height": height}

    return app
