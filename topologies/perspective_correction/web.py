"""The two human stages of the example, as FastAPI apps made from the stage's queues (the seed's style).

- `validation_api(Qin, Qout)`: a person looks at each automatic correction and approves or
  rejects it (`Qin` holds the corrected PNGs, `Qout` takes a bool).
- `manual_api(Qin, Qout)`: a person clicks the page's four corners on the original photo, sees
  the rectified page (`POST /preview`) and submits it (`Qin` holds the originals, `Qout` takes the
  `Corners`; the workflow's `post_manual` warps).
  The review console works this stage with no page at all, from the `Corners` type's
  annotations; this app is kept as an example of a stage's own page.
- `manual_preview(state, corners)`: the rectified page, small, that the console shows before
  the person submits (the app's `previews`).

Each app serves a small self-contained page at `/` (rendered by Jinja2 with autoescaping; its
script and style are files under `static/`, so the service's CSP needs no inline script),
`GET /tasks` (pending ids), `GET /tasks/{id}/image`, and one POST that completes a task.
Completing pushes to `Qout`, which in pipeteer moves the item on to the next stage and removes
it from this one in one atomic step: a task completed twice (a double click, two reviewers)
succeeds once, and the others get 404 (already done) or 409 (being completed right now by
another request of this process). Inputs are strict: `ok` is `true` or `false`, corners are
JSON numbers, and corners that cannot describe a page are refused (422) before anything is pushed.

The apps are mounted under a prefix by the stage service (`/validation/`, `/manual-correct/`);
the pages build their links from the request's `root_path`, so they work at any prefix. The
service's review console (`/`) works these stages too (it links to these pages).

    queues = pipeteer.connect(app, "sqlite:///queues.db")
    api = validation_api(**queues["validation"]["internal"])    # what `pipeteer run` does
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from pipeteer import InexistentItem, ReadQueue, WriteQueue
from topologies.perspective_correction.imaging import image_size, preview_with_corners, warp_with_corners
from topologies.perspective_correction.states import Corners, ManualInput

__all__ = ["Correction", "manual_api", "manual_preview", "validation_api"]

_HERE = Path(__file__).parent
# Pages show this many tasks at a time (the validation page pages through the rest).
_PAGE_LIMIT = 60
# Previews are at most this many pixels a side: enough to check a page, quick to make and send.
_PREVIEW_SIDE = 800
_TEMPLATES = Environment(loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(default=True))
_TEMPLATES.filters["urlencode_all"] = lambda s: quote(str(s), safe="")
_STATIC = {"example.css": "text/css; charset=utf-8", "validation.js": "text/javascript; charset=utf-8",
           "manual.js": "text/javascript; charset=utf-8"}

Coordinate = StrictFloat | StrictInt


class Correction(BaseModel):
    """The body of `POST /correct`: the task id and the 4 clicked corners, `[x, y]` in image pixels."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: Annotated[str, Field(max_length=1024)]
    corners: Annotated[list[Annotated[list[Coordinate], Field(min_length=2, max_length=2)]], Field(max_length=16)]


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


def _render(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_TEMPLATES.get_template(template).render(**context))


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
    """`GET /tasks`, `GET /tasks/{id}/image` and the page's static files, the same in both apps."""

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in _STATIC:
            raise HTTPException(404, detail="no such file")
        return Response((_HERE / "static" / name).read_bytes(), media_type=_STATIC[name])

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
    async def page(request: Request, offset: Annotated[int, Field(ge=0)] = 0) -> HTMLResponse:
        """Pending corrections with Approve / Reject buttons, a page at a time (the count is all of them)."""
        ids = await _pending_ids(Qin)
        return _render("validation.html", base=_base(request), total=len(ids), offset=offset,
                       limit=_PAGE_LIMIT, ids=ids[offset : offset + _PAGE_LIMIT])

    @app.post("/validate")
    async def validate(id: str, ok: Literal["true", "false"]) -> dict[str, Any]:
        """Approve (`ok=true`) or reject (`ok=false`) the correction of task `id`."""
        decision = ok == "true"
        with claims.claim(id):
            try:
                await Qout.push(id, decision)
            except InexistentItem:
                raise _not_pending(stage, id) from None
        return {"id": id, "ok": decision}

    return app


def manual_preview(state: ManualInput, value: Corners) -> bytes:
    """The page as the person's corners would rectify it, at most 800 pixels a side (PNG), for the
    console to show before they submit; `InvalidCorners` (a ValueError) for corners that cannot
    describe a page, which the console then refuses to submit."""
    return preview_with_corners(state.img, value.corners, max_side=_PREVIEW_SIDE)


def manual_api(Qin: ReadQueue[bytes], Qout: WriteQueue[Corners]) -> FastAPI:
    """The manual-correction stage: click the page's 4 corners on the original photo.

    `POST /correct` with `{"id": ..., "corners": [[x, y], ...]}` (image pixels, any order) checks
    that the corners rectify the photo, pushes them as `Corners` (the workflow's `post_manual`
    makes the rectified page of them) and answers `{"id", "width", "height"}` of that page; 422
    with the reason if the corners cannot describe a page, 404 if the id is not pending, 409 if
    another request is correcting it at this very moment (or, in `pipeteer run`, a reviewer holds it
    in the console: the answer's `detail` names them).

    `POST /preview` with the same body answers the rectified page, small (PNG), and sends nothing
    on: the page shows it so the person can check their corners before submitting.
    """
    stage = "manual-correct"
    app = FastAPI(title="pipeteer example: manual perspective correction")
    claims = _Claims(stage)
    _task_routes(app, Qin, stage)

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request, id: str | None = None) -> HTMLResponse:
        """The task `id` (default: the oldest pending one) to click, and the list of pending tasks."""
        ids = await _pending_ids(Qin)
        current = id if id is not None else (ids[0] if ids else None)
        missing = None
        if current is not None and current not in ids:
            missing, current = current, None
        return _render("manual.html", base=_base(request), total=len(ids), ids=ids[:_PAGE_LIMIT],
                       current=current, missing=missing)

    @app.post("/preview", response_class=Response)
    async def preview(body: Correction) -> Response:
        """The page as the clicked corners would rectify task `id`, at most 800 pixels a side (PNG)."""
        img = await _read_image(Qin, stage, body.id)
        try:
            png = await asyncio.to_thread(preview_with_corners, img, body.corners, max_side=_PREVIEW_SIDE)
        except ValueError as e:
            raise HTTPException(422, detail=f"task {body.id!r}: {e}") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/correct")
    async def correct(body: Correction) -> dict[str, Any]:
        """Check that the clicked corners rectify task `id`, and send them on."""
        img = await _read_image(Qin, stage, body.id)
        try:
            # OpenCV work off the event loop, so the page stays responsive for other people.
            out = await asyncio.to_thread(warp_with_corners, img, body.corners)
        except ValueError as e:
            raise HTTPException(422, detail=f"task {body.id!r}: {e}") from None
        corners = Corners([(float(x), float(y)) for x, y in body.corners])
        with claims.claim(body.id):
            try:
                # the workflow's post_manual warps them again as it moves the item on: the same page
                await Qout.push(body.id, corners)
            except InexistentItem:
                raise _not_pending(stage, body.id) from None
        width, height = image_size(out)
        return {"id": body.id, "width": width, "height": height}

    return app
