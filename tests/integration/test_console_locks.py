"""One lock layer for every route, over real HTTP on SQLite: the console, the app's own page, a second process.

Also what a review team runs on: skips that stick, logout releasing locks, taking back an applied
decision while its item waits downstream, search, reasons, per-reviewer numbers and the audit line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeteer import connect
from tests.integration.serving import TOKENS, Served, serve, write_tokens
from topologies.perspective_correction import app as example
from topologies.perspective_correction.states import AutoCorrected, ManualInput, Output

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
V = {"stage": "validation"}


def push(served: Served, ids: list[str]) -> None:
    async def go() -> None:
        q = connect(example, served.backend).stage("validation").Qin
        for i, id in enumerate(ids):
            await q.push(id, AutoCorrected(PNG + bytes([i % 256]), PNG))

    asyncio.run(go())


def pending(served: Served, stage: str) -> list[str]:
    async def go() -> list[str]:
        return list(await connect(example, served.backend).stage_queue(stage).keys())

    return asyncio.run(go())


def outputs(served: Served) -> dict[str, object]:
    async def go() -> dict[str, object]:
        return dict(await connect(example, served.backend).Qout.items())

    return asyncio.run(go())


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return {"PIPETEER_AUTH_TOKEN_FILE": str(write_tokens(tmp_path / "tokens"))}


@pytest.fixture
def served(tmp_path: Path, tokens: dict[str, str]) -> Iterator[Served]:
    with serve("topologies.perspective_correction:app", tmp_path, tokens,
               ("--stage", "validation", "--stage", "manual-correct", "--undo-seconds", "0")) as s:
        yield s


def client(served: Served, who: str) -> httpx.Client:
    return httpx.Client(base_url=served.base, headers=served.auth(who), timeout=30)


def test_a_console_lock_is_honoured_by_the_apps_own_page_and_names_its_holder(served: Served) -> None:
    push(served, ["photo-09", "photo-10"])
    with client(served, "alice") as alice, client(served, "bob") as bob:
        assert alice.post("/console/api/open", params={**V, "id": "photo-09"}).json()["holder"] == "alice"
        r = bob.post("/validation/validate", params={"id": "photo-09", "ok": "false"})
        assert r.status_code == 409 and r.json()["holder"] == "alice", r.text
        assert "photo-09" in r.json()["detail"] and "alice" in r.json()["detail"]
        assert "photo-09" in pending(served, "validation")
        # a task bob completes on the app page is his: alice's console answers 404 for it, never a second output
        assert bob.post("/validation/validate", params={"id": "photo-10", "ok": "true"}).status_code == 200
        assert alice.post("/console/api/open", params={**V, "id": "photo-10"}).status_code == 404
        done = alice.post("/console/api/decide", params={**V, "id": "photo-09"}, json={"value": True})
        assert done.json()["state"] == "applied"
    assert sorted(outputs(served)) == ["photo-09", "photo-10"]


def test_two_processes_on_one_file_share_the_locks(tmp_path: Path, tokens: dict[str, str]) -> None:
    with serve("topologies.perspective_correction:app", tmp_path, tokens, ("--stage", "validation", "--undo-seconds", "0")) as one, \
         serve("topologies.perspective_correction:app", tmp_path, tokens, ("--stage", "validation", "--undo-seconds", "0")) as two:
        push(one, ["a1", "a2", "a3"])
        with client(one, "alice") as alice, client(two, "bob") as bob:
            first = alice.post("/console/api/next", params=V).json()["task"]["id"]
            assert first == "a1"
            assert bob.post("/console/api/next", params=V).json()["task"]["id"] == "a2"  # a1 is alice's, in process one
            taken = bob.post("/console/api/open", params={**V, "id": "a1"})
            assert taken.status_code == 409 and "alice" in taken.json()["detail"]
            page = bob.post("/validation/validate", params={"id": "a1", "ok": "true"})
            assert page.status_code == 409 and page.json()["holder"] == "alice"
            listing = bob.get("/console/api/tasks", params=V).json()
            assert [(i["id"], i["holder"]) for i in listing["items"]] == [("a1", "alice"), ("a2", "bob"), ("a3", None)]
            assert alice.post("/console/api/decide", params={**V, "id": "a1"}, json={"value": True}).json()["state"] == "applied"
    assert list(outputs(one)) == ["a1"]


def test_logout_and_a_closed_tab_release_locks(served: Served) -> None:
    push(served, ["t1", "t2"])
    with httpx.Client(base_url=served.base, timeout=30) as browser, client(served, "bob") as bob:
        login = browser.post("/login", data={"token": TOKENS["alice"], "next": "/"})
        assert login.status_code == 303
        assert browser.post("/console/api/open", params={**V, "id": "t1"}).json()["holder"] == "alice"
        assert bob.post("/console/api/open", params={**V, "id": "t1"}).status_code == 409
        assert browser.post("/logout").status_code == 303
        assert bob.post("/console/api/open", params={**V, "id": "t1"}).json()["holder"] == "bob"
        # the page sends a release when its tab closes (navigator.sendBeacon): the task is free at once
        assert bob.post("/console/api/release", params={**V, "id": "t1"}).json() == {"released": True}
        listing = bob.get("/console/api/tasks", params=V).json()
        assert [i["holder"] for i in listing["items"]] == [None, None]


def test_a_skipped_task_stays_behind_until_nothing_else_is_left(served: Served) -> None:
    push(served, ["x", "y", "z"])
    with client(served, "bob") as bob:
        nxt = lambda **p: bob.post("/console/api/next", params={**V, **p}).json()["task"]  # noqa: E731
        assert nxt()["id"] == "x"
        assert nxt(skip="x")["id"] == "y"
        assert bob.post("/console/api/decide", params={**V, "id": "y"}, json={"value": True}).json()["state"] == "applied"
        assert nxt()["id"] == "z"  # not x: the skip sticks after y left the listing
        assert nxt(skip="z")["id"] == "x"  # nothing else left: the skipped ones come back, oldest skip first
        assert nxt(skip="x")["id"] == "z"


def test_an_applied_decision_is_taken_back_while_its_item_waits_downstream(served: Served) -> None:
    push(served, ["p1", "p2"])
    with client(served, "alice") as alice, client(served, "bob") as bob:
        assert alice.post("/console/api/decide", params={**V, "id": "p1"}, json={"value": False}).json()["state"] == "applied"
        assert "p1" in pending(served, "manual-correct")
        recent = alice.get("/console/api/recent", params=V).json()["items"]
        assert [(i["id"], i["decision"], i["undo"]) for i in recent] == [("p1", "rejected", "recall")]
        assert bob.post("/console/api/undo", params={**V, "id": "p1"}).status_code == 409  # not bob's decision
        back = alice.post("/console/api/undo", params={**V, "id": "p1"})
        assert back.json() == {"id": "p1", "state": "undone", "label": "rejected"}, back.text
        assert "p1" in pending(served, "validation") and "p1" not in pending(served, "manual-correct")
        assert alice.get("/console/api/task", params={**V, "id": "p1"}).json()["holder"] == "alice"
        assert alice.post("/console/api/decide", params={**V, "id": "p1"}, json={"value": True}).json()["state"] == "applied"
        # once a person downstream holds it, it is theirs: no taking back
        assert alice.post("/console/api/decide", params={**V, "id": "p2"}, json={"value": False}).json()["state"] == "applied"
        assert bob.post("/console/api/open", params={"stage": "manual-correct", "id": "p2"}).status_code == 200
        refused = alice.post("/console/api/undo", params={**V, "id": "p2"})
        assert refused.status_code == 409 and "bob" in refused.json()["detail"]
    out = outputs(served)
    assert list(out) == ["p1"] and isinstance(out["p1"], Output)


def test_search_filter_reasons_numbers_and_the_audit_line(tmp_path: Path, tokens: dict[str, str]) -> None:
    with serve("topologies.perspective_correction:app", tmp_path, tokens,
               ("--stage", "validation", "--stage", "manual-correct", "--undo-seconds", "0")) as s:
        push(s, [f"batch-{i:02d}" for i in range(30)] + ["other-1"])
        with client(s, "alice") as alice:
            found = alice.get("/console/api/tasks", params={**V, "match": "ch-1"}).json()
            assert found["total"] == 10 and found["items"][0]["id"] == "batch-10"
            assert alice.get("/console/api/tasks", params={**V, "older_than": 3600}).json()["total"] == 0
            assert alice.get("/console/api/tasks", params={**V, "older_than": 0}).json()["total"] == 31
            reasons = json.loads(alice.get("/console/", params=V).text.split('data-reasons="')[1].split('"')[0]
                                 .replace("&#34;", '"').replace("&quot;", '"'))
            assert reasons, "the example declares reject reasons for validation"
            bad = alice.post("/console/api/decide", params={**V, "id": "batch-00"}, json={"value": False, "reason": "<b>x"})
            assert bad.status_code == 422 and "reason" in bad.json()["detail"]
            r = alice.post("/console/api/decide", params={**V, "id": "batch-00"},
                           json={"value": False, "reason": reasons[0], "comment": "corner at the left cut"})
            assert r.json()["state"] == "applied"
            alice.post("/console/api/open", params={**V, "id": "batch-01"})
            time.sleep(0.3)
            assert alice.post("/console/api/decide", params={**V, "id": "batch-01"}, json={"value": True}).json()["state"] == "applied"
            team = alice.get("/console/api/team", params=V).json()
            assert [(r["reviewer"], r["today"], r["week"]) for r in team["reviewers"]] == [("alice", 2, 2)]
            assert team["reviewers"][0]["median_seconds"] is not None and team["reasons"] == {reasons[0]: 1}
            stages = {x["stage"]: x for x in alice.get("/console/api/stages").json()}
            assert stages["validation"]["done_today"] == 2 and stages["validation"]["rate_per_hour"] == 2
            assert stages["validation"]["empty_in"] is not None
            assert "alice" in alice.get("/").text
            metrics = alice.get("/metrics").text
            assert f'decision="rejected",reason="{reasons[0]}"' in metrics
    audit = [json.loads(line.split("pipeteer.audit", 1)[1].split(" ", 1)[1]) for line in s.stderr_lines()
             if "pipeteer.audit" in line]
    rejected = next(a for a in audit if a.get("id") == "batch-00")
    assert (rejected["decision"], rejected["reason"], rejected["comment"], rejected["reviewer"]) == (
        "rejected", reasons[0], "corner at the left cut", "alice")


def test_a_task_of_the_manual_stage_is_completed_by_four_points(served: Served) -> None:
    from topologies.perspective_correction.samples import make_sample

    sample = make_sample(3)

    async def go() -> None:
        await connect(example, served.backend).stage("manual-correct").Qin.push("m1", ManualInput(sample.img))

    asyncio.run(go())
    with client(served, "bob") as bob:
        task = bob.post("/console/api/next", params={"stage": "manual-correct"}).json()["task"]
        assert task["actions"]["kind"] == "annotate"
        corners = [list(map(float, c)) for c in sample.corners]
        value = {"corners": corners}
        preview = bob.post("/console/api/preview", params={"stage": "manual-correct", "id": "m1"}, json={"value": value})
        assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
        short = bob.post("/console/api/decide", params={"stage": "manual-correct", "id": "m1"},
                         json={"value": {"corners": corners[:3]}})
        assert short.status_code == 422 and "4" in short.json()["detail"]
        r = bob.post("/console/api/decide", params={"stage": "manual-correct", "id": "m1"}, json={"value": value})
        assert r.json()["state"] == "applied", r.text
    out = outputs(served)["m1"]
    assert isinstance(out, Output) and out.corrected.startswith(b"\x89PNG")
