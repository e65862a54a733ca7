"""Requests to a stage that cannot serve now get a quick 503 naming why, instead of waiting on its queue.

A web stage (or the console acting on one) whose backend is unreachable, or that is still joining
its consumer group, would otherwise hold the request until a client timeout and then fail with a
bare 500. The gate asks the stage's queue (`BaseQueue.unavailable`) and gives the stage up to `WAIT` seconds
to become available (a start-up that is nearly done), then answers 503 with the reason and a
`Retry-After`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

WAIT = 0.5
"""Seconds a request waits for its stage to become available before the 503 (the answer comes within a second)."""
RETRY_AFTER = 5


class StageGate:
    """ASGI middleware: `/<stage>/…` and `/console/api/…?stage=<stage>` answer 503 while the stage is unavailable.

    `unavailable(stage)` gives the reason a stage cannot serve now, or None; `web` names the stages it guards.
    """

    def __init__(self, app: ASGIApp, web: list[str], unavailable: Callable[[str], str | None]) -> None:
        self.app = app
        self.web = web
        self.unavailable = unavailable

    def stages_of(self, scope: Scope) -> list[str]:
        path: str = scope.get("path", "")
        for s in self.web:
            if path == f"/{s}" or path.startswith(f"/{s}/"):
                return [s]
        if path.startswith("/console/api/") and not path.startswith("/console/api/events"):
            query: Mapping[str, list[str]] = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            named = [s for s in query.get("stage", []) if s in self.web]
            return named or list(self.web)
        return []

    def reason(self, stages: list[str]) -> str | None:
        reasons = [r for s in stages if (r := self.unavailable(s)) is not None]
        return "; ".join(reasons) if reasons else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stages = self.stages_of(scope) if scope["type"] == "http" else []
        reason = self.reason(stages) if stages else None
        deadline = time.monotonic() + WAIT
        while reason is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            reason = self.reason(stages)
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": f"unavailable: {reason}"}).encode()
        await send({
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(RETRY_AFTER).encode()), (b"cache-control", b"no-store")],
        })
        await send({"type": "http.response.body", "body": body})
