"""The review console's API over real HTTP: leases, two reviewers, the undo window, forms, uploads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeteer import connect
from tests.apps.triage import Team, Ticket, Triaged
from tests.apps.triage import app as triage_app
from tests.integration.serving import Served, serve, write_tokens
from topologies.perspective_correction import app as example
from topologies.perspective_correction.states import AutoCorrected, Output

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def push_validation(served: Served, n: int) -> None:
    async def go() -> None:
        q = connect(example, served.backend).stage("validation").Qin
        for i in range(n):
            await q.push(f"t{i:03d}", AutoCorrected(PNG + bytes([i % 256]), PNG))

    asyncio.run(go())


def outputs(served: Served, app: object = example) -> dict[str, object]:
    async def go() -> dict[str, object]:
        return dict(await connect(app, served.backend).Qout.items())  # type: ignore[arg-type]

    return asyncio.run(go())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = {"PIPETEER_AUTH_TOKEN_FILE": str(write_tokens(tmp_path / "tokens"))}
    with serve("topologies.perspective_correction:app", tmp_path, env, ("--stage", "validation", "--stage", "manual-correct", "--undo-seconds", "0")) as s:
        yield s


def test_two_reviewers_get_different_tasks_and_one_completion_wins(served: Served) -> None:
    push_validation(served, 3)
    with httpx.Client(base_url=served.base, headers=served.auth("alice")) as alice, \
         httpx.Client(base_url=served.base, headers=served.auth("bob")) as bob:
        a = alice.post("/console/api/next", params={"stage": "validation"}).json()["task"]
        b = bob.post("/console/api/next", params={"stage": "validation"}).json()["task"]
        assert (a["id"], b["id"]) == ("t000", "t001")
        assert [f["kind"] for f in a["fields"]] == ["image", "image"] and a["actions"]["kind"] == "decide"
        listing = alice.get("/console/api/tasks", params={"stage": "validation"}).json()
        assert [(i["id"], i["holder"]) for i in listing["items"]] == [("t000", "alice"), ("t001", "bob"), ("t002", None)]
        taken = bob.post("/console/api/open", params={"stage": "validation", "id": "t000"})
        assert taken.status_code == 409 and taken.json()["detail"].startswith("task 't000' of validation is being worked on by alice (locked until ")
        assert bob.post("/console/api/decide", params={"stage": "validation", "id": "t000"},
                        json={"value": True}).status_code == 409
        r = alice.post("/console/api/decide", params={"stage": "validation", "id": "t000"}, json={"value": True})
        assert r.json() == {"id": "t000", "state": "applied", "label": "approved"}
        again = bob.post("/console/api/decide", params={"stage": "validation", "id": "t000"}, json={"value": False})
        assert again.status_code == 404 and "not pending" in again.json()["detail"]
        strict = alice.post("/console/api/decide", params={"stage": "validation", "id": "t002"}, json={"value": "yes"})
        assert strict.status_code == 422 and "must be true or false" in strict.json()["detail"]
    assert list(outputs(served)) == ["t000"]


def test_concurrent_completions_of_one_task_emit_once(served: Served) -> None:
    push_validation(served, 1)

    async def go() -> list[int]:
        async with httpx.AsyncClient(base_url=served.base, headers=served.auth("alice")) as alice, \
                   httpx.AsyncClient(base_url=served.base, headers=served.auth("bob")) as bob:
            calls = [c.post("/console/api/decide", params={"stage": "validation", "id": "t000"}, json={"value": True})
                     for _ in range(10) for c in (alice, bob)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    codes = asyncio.run(go())
    assert codes.count(200) == 1 and set(codes) <= {200, 404, 409}, codes
    assert list(outputs(served)) == ["t000"]


def test_a_decision_can_be_undone_within_its_window(tmp_path: Path) -> None:
    env = {"PIPETEER_AUTH_TOKEN_FILE": str(write_tokens(tmp_path / "tokens"))}
    with serve("topologies.perspective_correction:app", tmp_path, env, ("--stage", "validation", "--undo-seconds", "1")) as s, \
         httpx.Client(base_url=s.base, headers=s.auth("alice")) as alice:
        push_validation(s, 2)
        decide = {"stage": "validation", "id": "t000"}
        assert alice.post("/console/api/decide", params=decide, json={"value": False}).json()["state"] == "waiting"
        assert alice.post("/console/api/undo", params=decide).json() == {"id": "t000", "state": "undone", "label": "rejected"}
        assert alice.post("/console/api/decide", params=decide, json={"value": True}).json()["state"] == "waiting"
        deadline = time.monotonic() + 10
        while not outputs(s) and time.monotonic() < deadline:
            time.sleep(0.1)
        # applied, and waiting in the workflow's output: taken back (the task is alice's again), and decided anew
        late = alice.post("/console/api/undo", params=decide)
        assert late.json() == {"id": "t000", "state": "undone", "label": "approved"} and not outputs(s)
        assert alice.post("/console/api/decide", params=decide, json={"value": True}).json()["state"] == "waiting"
        while not outputs(s) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alice.post("/console/api/undo", params={"stage": "validation", "id": "t001"}).status_code == 409
        assert alice.post("/console/api/decide", params={"stage": "validation", "id": "t001"}, json={"value": True}).json()["state"] == "waiting"
    # stopping the service applies what was still in its window: the reviewer meant it
    assert isinstance(outputs(s)["t000"], Output) and set(outputs(s)) == {"t000", "t001"}


def test_pages_count_every_task(served: Served) -> None:
    push_validation(served, 120)
    with httpx.Client(base_url=served.base, headers=served.auth("alice")) as alice:
        page = alice.get("/console/api/tasks", params={"stage": "validation", "offset": 100}).json()
        assert page["total"] == 120 and [i["id"] for i in page["items"]] == [f"t{i:03d}" for i in range(100, 120)]
        stages = {s["stage"]: s for s in alice.get("/console/api/stages").json()}
        assert stages["validation"]["pending"] == 120 and stages["validation"]["human"]
        with alice.stream("GET", "/console/api/events", params={"stage": "validation"}) as events:
            lines = events.iter_lines()
            assert next(lines) == "event: change"
            assert next(lines) == 'data: {"stage": "validation", "total": 120}'


def test_an_upload_completes_a_bytes_stage(tmp_path: Path) -> None:
    from tests.apps.retouch import Retouched, Shot
    from tests.apps.retouch import app as retouch

    with serve("tests.apps.retouch:app", tmp_path, {}, ("--undo-seconds", "0")) as s, httpx.Client(base_url=s.base) as bob:
        asyncio.run(connect(retouch, s.backend).Qin.push("m1", Shot(PNG)))
        task = bob.post("/console/api/next", params={"stage": "retouch"}).json()["task"]
        assert task["actions"]["kind"] == "upload" and task["id"] == "m1"
        img = bob.get("/console/api/field", params={"stage": "retouch", "id": "m1", "name": "img"})
        assert img.content == PNG and img.headers["content-type"] == "image/png"
        r = bob.post("/console/api/decide", params={"stage": "retouch", "id": "m1"}, content=PNG + b"fixed",
                     headers={"Content-Type": "application/octet-stream"})
        assert r.json()["state"] == "applied", r.text
        assert outputs(s, retouch) == {"m1": Retouched(PNG, PNG + b"fixed")}


def test_a_form_is_built_from_a_dataclass_output(tmp_path: Path) -> None:
    with serve("tests.apps.triage:app", tmp_path, {}, ("--undo-seconds", "0")) as s, httpx.Client(base_url=s.base) as http:
        asyncio.run(connect(triage_app, s.backend).Qin.push("k1", Ticket("printer", "<img src=x onerror=alert(1)>")))
        task = http.post("/console/api/next", params={"stage": "triage"}).json()["task"]
        assert task["actions"]["kind"] == "form"
        assert [i["name"] for i in task["actions"]["inputs"]] == ["priority", "team", "note"]
        assert task["fields"][1] == {"name": "body", "kind": "text", "text": "<img src=x onerror=alert(1)>", "size": 0,
                                     "label": "", "help": ""}
        bad = http.post("/console/api/decide", params={"stage": "triage", "id": "k1"},
                        json={"value": {"priority": "1", "team": "ops"}})
        assert bad.status_code == 422 and bad.json()["detail"].startswith("priority: must be a whole number")
        ok = http.post("/console/api/decide", params={"stage": "triage", "id": "k1"},
                       json={"value": {"priority": 1, "team": "ops", "note": None}})
        assert ok.json()["state"] == "applied", ok.text
        assert outputs(s, triage_app) == {"k1": Triaged("printer", 1, Team.OPS, None)}


def test_a_task_of_an_unreadable_version_is_listed_and_answered_409_never_500(served: Served) -> None:
    """A task written with a schema this version cannot read (a hostile id too): listed and marked,
    opening it answers 409 naming why (escaped JSON, no echo of the bytes), the other tasks are served,
    and without credentials nothing about it is shown."""
    import dataclasses

    from pipeteer.codec import codec_for

    @dataclasses.dataclass
    class Foreign:  # what another version writes to the stage's queue
        text: str

    hostile = '<script>alert(1)</script>\u202etxt.exe'

    async def go() -> None:
        q = connect(example, served.backend).stage_queue("validation")
        own, q.codec = q.codec, codec_for(Foreign, namespace="elsewhere")
        await q._push(hostile, Foreign("not an image"))
        q.codec = own

    asyncio.run(go())
    push_validation(served, 2)
    with httpx.Client(base_url=served.base) as anonymous:
        assert anonymous.get("/console/api/tasks", params={"stage": "validation"}).status_code == 401
        assert anonymous.get("/console/api/task", params={"stage": "validation", "id": hostile}).status_code == 401
    with httpx.Client(base_url=served.base, headers=served.auth("alice")) as alice:
        listing = alice.get("/console/api/tasks", params={"stage": "validation"}).json()
        assert sorted(i["id"] for i in listing["items"]) == sorted([hostile, "t000", "t001"])  # kept and listed
        r = alice.get("/console/api/task", params={"stage": "validation", "id": hostile})
        assert r.status_code == 409 and "another version" in r.json()["detail"] and "not an image" not in r.text
        assert alice.get("/console/api/task", params={"stage": "validation", "id": "t000"}).status_code == 200
        listing = alice.get("/console/api/tasks", params={"stage": "validation"}).json()
        marked = {i["id"]: i.get("unreadable", False) for i in listing["items"]}
        assert marked == {hostile: True, "t000": False, "t001": False}  # marked once this version met it
