"""Which requests the stage gate holds to their stage's availability, and what it answers (in-process ASGI)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from pipeteer.runtime.availability import StageGate


def gate(down: dict[str, str]) -> StageGate:
    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/{path:path}", ok)])
    return StageGate(app, ["validation", "manual-correct"], down.get)


@pytest.mark.parametrize(
    ("path", "stages"),
    [
        ("/validation/", ["validation"]),
        ("/validation/tasks/1/image", ["validation"]),
        ("/validation-other/", []),
        ("/console/api/tasks?stage=manual-correct", ["manual-correct"]),
        ("/console/api/stages", ["validation", "manual-correct"]),
        ("/console/api/events", []),
        ("/metrics", []),
        ("/readyz", []),
    ],
)
def test_requests_are_held_to_the_stages_they_act_on(path: str, stages: list[str]) -> None:
    route, _, query = path.partition("?")
    assert gate({}).stages_of({"type": "http", "path": route, "query_string": query.encode()}) == stages


async def test_an_unavailable_stage_answers_503_with_the_reason_and_others_pass() -> None:
    app = gate({"validation": "stage 'validation': cannot reach the Kafka brokers at k:9092"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        held = await http.get("/validation/")
        assert held.status_code == 503 and held.headers["retry-after"] == "5"
        assert held.json() == {"detail": "unavailable: stage 'validation': cannot reach the Kafka brokers at k:9092"}
        passed = await http.get("/manual-correct/")
        assert passed.status_code == 200 and passed.text == "ok"
        assert (await http.get("/metrics")).status_code == 200
