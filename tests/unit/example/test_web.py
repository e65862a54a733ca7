"""The example's two web stages, in process: the example app on memory queues (pipeteer's
TestDriver), the pages called through httpx's ASGI transport; and what the review console
makes of the manual stage (its `Corners` output, preview and guidelines)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import httpx
import pytest

from pipeteer.runtime.console.forms import FormError, actions_for, build, image_field
from pipeteer.testing import TestDriver
from topologies.perspective_correction import app
from topologies.perspective_correction.imaging import image_size, warp_with_corners
from topologies.perspective_correction.samples import make_sample, similarity
from topologies.perspective_correction.states import CORNER_NAMES, AutoCorrected, Corners, Input, ManualInput

# Samples 0-3 are easy (automatic correction succeeds); hard 100 and 102 go to a person.
EASY = [make_sample(seed) for seed in range(4)]
HARD = [make_sample(seed, hard=True) for seed in (100, 102)]
assert all(s.kind != "decoy" for s in HARD)  # these two must be refused by the automatic stage


@pytest.fixture
async def driver() -> AsyncIterator[TestDriver]:
    async with TestDriver(app) as t:
        for s in EASY:
            await t.push(f"easy-{s.seed}", Input(s.img))
        for s in HARD:
            await t.push(f"hard-{s.seed}", Input(s.img))
        await t.run_until_idle()
        yield t


async def test_tasks_list_the_pending_ids(driver: TestDriver) -> None:
    async with driver.client("validation") as v, driver.client("manual-correct") as m:
        assert (await v.get("/tasks")).json() == [{"id": f"easy-{s.seed}"} for s in EASY]
        assert (await m.get("/tasks")).json() == [{"id": f"hard-{s.seed}"} for s in HARD]


async def test_task_image_is_the_stage_input(driver: TestDriver) -> None:
    pending = await driver.pending("validation")
    async with driver.client("validation") as v, driver.client("manual-correct") as m:
        r = await v.get("/tasks/easy-0/image")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        state = pending["easy-0"]
        assert isinstance(state, AutoCorrected) and r.content == state.corrected
        r = await m.get("/tasks/hard-100/image")
        assert r.status_code == 200 and r.content == HARD[0].img
        r = await v.get("/tasks/nope/image")
        assert r.status_code == 404 and "'nope'" in r.json()["detail"]


async def test_approve_sends_the_correction_to_the_output(driver: TestDriver) -> None:
    async with driver.client("validation") as v:
        r = await v.post("/validate", params={"id": "easy-1", "ok": "true"})
        assert r.status_code == 200 and r.json() == {"id": "easy-1", "ok": True}
    out = (await driver.outputs())["easy-1"]
    assert out.img == EASY[1].img and similarity(out.corrected, EASY[1].page) >= 0.7
    assert "easy-1" not in await driver.pending("validation")


async def test_reject_sends_the_item_to_manual_correction(driver: TestDriver) -> None:
    async with driver.client("validation") as v, driver.client("manual-correct") as m:
        r = await v.post("/validate", params={"id": "easy-2", "ok": "false"})
        assert r.status_code == 200 and r.json() == {"id": "easy-2", "ok": False}
        assert {"id": "easy-2"} in (await m.get("/tasks")).json()
    assert await driver.pending("manual-correct") == {
        "hard-100": ManualInput(HARD[0].img),
        "hard-102": ManualInput(HARD[1].img),
        "easy-2": ManualInput(EASY[2].img),
    }


async def test_validating_twice_succeeds_once(driver: TestDriver) -> None:
    async with driver.client("validation") as v:
        assert (await v.post("/validate", params={"id": "easy-0", "ok": "true"})).status_code == 200
        again = await v.post("/validate", params={"id": "easy-0", "ok": "false"})
        assert again.status_code == 404
        assert again.json()["detail"] == "no pending task 'easy-0' in validation: unknown id, or already completed"
        assert (await v.post("/validate", params={"id": "unknown", "ok": "true"})).status_code == 404
    # The approval stands: the later rejection did not send it to manual correction.
    assert "easy-0" in await driver.outputs()
    assert "easy-0" not in await driver.pending("manual-correct")


async def test_concurrent_validations_of_one_task_succeed_once(driver: TestDriver) -> None:
    async with driver.client("validation") as v:
        answers = await asyncio.gather(
            *(v.post("/validate", params={"id": "easy-3", "ok": str(i % 2 == 0).lower()}) for i in range(6))
        )
    codes = sorted(r.status_code for r in answers)
    assert codes.count(200) == 1 and all(c in (404, 409) for c in codes if c != 200), codes
    winner = next(r.json() for r in answers if r.status_code == 200)
    # The item went exactly where the winning answer sent it.
    in_output = "easy-3" in await driver.outputs()
    in_manual = "easy-3" in await driver.pending("manual-correct")
    assert (in_output, in_manual) == ((True, False) if winner["ok"] else (False, True))


async def test_validate_needs_a_boolean(driver: TestDriver) -> None:
    async with driver.client("validation") as v:
        assert (await v.post("/validate", params={"id": "easy-0", "ok": "maybe"})).status_code == 422
        assert (await v.post("/validate", params={"id": "easy-0"})).status_code == 422
    assert "easy-0" in await driver.pending("validation")


async def test_validation_page_shows_each_task_with_buttons(driver: TestDriver) -> None:
    async with driver.client("validation") as v:
        r = await v.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for s in EASY:
        assert f'data-id="easy-{s.seed}"' in page
        assert f'<img src="/tasks/easy-{s.seed}/image"' in page
    assert page.count("Approve</button>") == len(EASY) and page.count("Reject</button>") == len(EASY)
    assert "4 pending" in page
    assert '<script src="/static/validation.js"></script>' in page  # the buttons post to /validate from there
    assert "<script>" not in page and "onclick" not in page  # no inline script: the CSP forbids it
    assert "http://" not in page and "https://" not in page  # no CDN, no external assets


async def test_manual_correction_with_the_true_corners(driver: TestDriver) -> None:
    s = HARD[0]
    async with driver.client("manual-correct") as m:
        r = await m.post("/correct", json={"id": "hard-100", "corners": [list(c) for c in s.corners]})
        assert r.status_code == 200, r.text
        body = r.json()
    out = (await driver.outputs())["hard-100"]
    assert out.img == s.img and similarity(out.corrected, s.page) >= 0.85
    assert (body["width"], body["height"]) == image_size(out.corrected)
    assert body["id"] == "hard-100"


@pytest.mark.parametrize(
    ("corners", "reason"),
    [
        ([[0, 0], [10, 0], [10, 10]], "expected 4 corners, got 3"),
        ([[0, 0], [100, 0], [100, 100], [0, 5000]], "outside the 640x480 image"),
        ([[0, 0], [100, 0], [200, 0], [0, 100]], "convex quadrilateral"),
    ],
)
async def test_bad_corners_are_a_422_naming_the_reason(
    driver: TestDriver, corners: list[list[float]], reason: str
) -> None:
    async with driver.client("manual-correct") as m:
        r = await m.post("/correct", json={"id": "hard-102", "corners": corners})
    assert r.status_code == 422
    assert reason in r.json()["detail"] and "'hard-102'" in r.json()["detail"]
    assert "hard-102" in await driver.pending("manual-correct")  # still waiting for a person


async def test_malformed_correction_bodies_are_422(driver: TestDriver) -> None:
    async with driver.client("manual-correct") as m:
        assert (await m.post("/correct", json={"id": "hard-102"})).status_code == 422
        assert (await m.post("/correct", json={"id": "hard-102", "corners": "abc"})).status_code == 422
        assert (await m.post("/correct", content=b"{", headers={"content-type": "application/json"})).status_code == 422


async def test_correcting_an_unknown_or_done_task_is_404(driver: TestDriver) -> None:
    corners = [list(c) for c in HARD[1].corners]
    async with driver.client("manual-correct") as m:
        r = await m.post("/correct", json={"id": "nope", "corners": corners})
        assert r.status_code == 404 and "'nope'" in r.json()["detail"]
        assert (await m.post("/correct", json={"id": "hard-102", "corners": corners})).status_code == 200
        again = await m.post("/correct", json={"id": "hard-102", "corners": corners})
        assert again.status_code == 404 and "already completed" in again.json()["detail"]
        answers = await asyncio.gather(
            *(m.post("/correct", json={"id": "hard-100", "corners": [list(c) for c in HARD[0].corners]})
              for _ in range(4))
        )
    codes = [r.status_code for r in answers]
    assert codes.count(200) == 1 and all(c in (404, 409) for c in codes if c != 200), codes
    assert set(await driver.outputs()) == {"hard-100", "hard-102"}


async def test_the_preview_is_the_corrected_page_small(driver: TestDriver) -> None:
    s = HARD[0]
    async with driver.client("manual-correct") as m:
        r = await m.post("/preview", json={"id": "hard-100", "corners": [list(c) for c in s.corners]})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert max(image_size(r.content)) <= 800 and similarity(r.content, s.page) >= 0.85
    assert "hard-100" in await driver.pending("manual-correct")  # a preview sends nothing on


async def test_the_preview_refuses_bad_corners_and_unknown_tasks(driver: TestDriver) -> None:
    async with driver.client("manual-correct") as m:
        flat = await m.post("/preview", json={"id": "hard-102", "corners": [[0, 0], [100, 0], [200, 0], [0, 100]]})
        assert flat.status_code == 422
        assert "convex quadrilateral" in flat.json()["detail"] and "'hard-102'" in flat.json()["detail"]
        assert (await m.post("/preview", json={"id": "hard-102", "corners": "abc"})).status_code == 422
        unknown = await m.post("/preview", json={"id": "nope", "corners": [list(c) for c in HARD[1].corners]})
        assert unknown.status_code == 404 and "'nope'" in unknown.json()["detail"]


async def test_manual_page_shows_the_oldest_task_to_click(driver: TestDriver) -> None:
    async with driver.client("manual-correct") as m:
        page = (await m.get("/")).text
        chosen = (await m.get("/", params={"id": "hard-102"})).text
        gone = (await m.get("/", params={"id": "nope"})).text
    assert '<img id="photo" src="/tasks/hard-100/image"' in page
    assert '<body data-base="/" data-task="hard-100">' in page
    assert 'href="/?id=hard-102"' in page  # the list of pending tasks
    assert "Submit this correction</button>" in page and "Undo</button>" in page and "Clear</button>" in page
    assert 'href="/console/?stage=manual-correct"' in page  # back to the review console, at the service root
    assert "http://" not in page and "https://" not in page
    assert '<img id="photo" src="/tasks/hard-102/image"' in chosen
    assert "is not pending" in gone and "data-task" not in gone


async def test_pages_escape_ids_and_accept_any_id(driver: TestDriver) -> None:
    odd = 'a/b <i>"x"</i> & ?'
    await driver.queues.stage("manual-correct").Qin.push(odd, ManualInput(EASY[0].img))
    async with driver.client("manual-correct") as m:
        page = (await m.get("/", params={"id": odd})).text
        assert "<i>" not in page and "&lt;i&gt;" in page
        assert 'data-task="a/b &lt;i&gt;&#34;x&#34;&lt;/i&gt; &amp; ?"' in page  # an attribute the script reads
        image = await m.get("/tasks/a%2Fb%20%3Ci%3E%22x%22%3C%2Fi%3E%20%26%20%3F/image")
        assert image.status_code == 200 and image.content == EASY[0].img
        r = await m.post("/correct", json={"id": odd, "corners": [list(c) for c in EASY[0].corners]})
        assert r.status_code == 200 and r.json()["id"] == odd


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def assert_inert(page: str) -> None:
    """No event-handler attribute anywhere, and every script is a file of the site (none inline)."""
    parser = _Elements()
    parser.feed(page)
    for tag, attrs in parser.found:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "script":
            assert str(attrs.get("src", "")).startswith("/"), attrs
    assert "<script>" not in page


HOSTILE_IDS = [
    "__BASE_JSON__ onerror=alert(3) x",
    "__TASK_JSON__ onerror=alert(4) x",
    '"><script>alert(1)</script>',
    "' onmouseover='alert(2)",
    "{{ 7*7 }} {% raw %}",
]


async def test_hostile_ids_are_inert_on_both_pages() -> None:
    """The ids of the stored-XSS report: placeholders, quotes, tags and template syntax stay text."""
    async with TestDriver(app) as t:
        for i, id in enumerate(HOSTILE_IDS):
            await t.queues.stage("validation").Qin.push(id, AutoCorrected(EASY[0].img, EASY[0].img))
            await t.queues.stage("manual-correct").Qin.push(id, ManualInput(HARD[i % len(HARD)].img))
        async with t.client("validation") as v, t.client("manual-correct") as m:
            pages = [(await v.get("/")).text, (await m.get("/")).text]
            pages += [(await m.get("/", params={"id": id})).text for id in HOSTILE_IDS]
    for page in pages:
        assert_inert(page)
        assert "49" not in page  # no template evaluated an id
    assert 'data-id="__BASE_JSON__ onerror=alert(3) x"' in pages[0]
    assert 'data-task="__TASK_JSON__ onerror=alert(4) x"' in pages[3]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]


async def test_validate_is_strict_and_paged(driver: TestDriver) -> None:
    async with driver.client("validation") as v:
        assert (await v.post("/validate", params={"id": "easy-0", "ok": "yes"})).status_code == 422
        assert (await v.post("/validate", params={"id": "easy-0", "ok": "1"})).status_code == 422
    async with driver.client("manual-correct") as m:
        loose = {"id": "hard-100", "corners": [["10", "10"], [1, 2], [3, 4], [5, 6]]}
        assert (await m.post("/correct", json=loose)).status_code == 422
        extra = {"id": "hard-100", "corners": [[1, 2]] * 4, "more": 1}
        assert (await m.post("/correct", json=extra)).status_code == 422


async def test_validation_count_is_true_past_one_page() -> None:
    async with TestDriver(app) as t:
        for i in range(74):
            await t.queues.stage("validation").Qin.push(f"v{i:02d}", AutoCorrected(b"png", b"png"))
        async with t.client("validation") as v:
            first, second = (await v.get("/")).text, (await v.get("/", params={"offset": 60})).text
    assert "74 pending" in first and first.count('class="card"') == 60 and "Showing 1–60 of 74" in first
    assert second.count('class="card"') == 14 and 'data-id="v73"' in second and "Showing 61–74 of 74" in second


async def test_empty_pages_say_so() -> None:
    async with TestDriver(app) as t:
        async with t.client("validation") as v, t.client("manual-correct") as m:
            assert "Nothing to validate" in (await v.get("/")).text
            assert "Nothing to correct" in (await m.get("/")).text
            assert (await v.get("/tasks")).json() == []


async def test_pages_link_under_the_mount_prefix(driver: TestDriver) -> None:
    from fastapi import FastAPI

    root = FastAPI()
    root.mount("/validation", driver.web("validation"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=root), base_url="http://test") as c:
        page = (await c.get("/validation/")).text
        assert '<img src="/validation/tasks/easy-0/image"' in page and 'data-base="/validation/"' in page
        assert '<script src="/validation/static/validation.js">' in page
        assert (await c.get("/validation/static/validation.js")).status_code == 200
        assert (await c.get("/validation/tasks/easy-0/image")).status_code == 200


async def test_driver_runs_the_real_automatic_stage_in_its_thread() -> None:
    from pipeteer.testing import TestDriver
    from topologies.perspective_correction import app
    from topologies.perspective_correction.samples import make_sample
    from topologies.perspective_correction.states import AutoCorrected, Input, ManualInput

    async with TestDriver(app) as t:
        await t.push("easy", Input(make_sample(1).img))
        await t.push("hard", Input(make_sample(2, hard=True).img))
        await t.run_until_idle()
        validation, manual = await t.pending("validation"), await t.pending("manual-correct")
        assert isinstance(validation["easy"], AutoCorrected)
        assert isinstance(manual.get("hard"), ManualInput) or isinstance(validation.get("hard"), AutoCorrected)
        assert await t.pending("auto-correct") == {}


# --- the manual stage in the review console: no page needed -----------------------------------


def test_the_console_asks_for_four_named_corners_on_the_photo() -> None:
    actions = actions_for(app.output_type("manual-correct"))
    assert actions.kind == "annotate" and actions.type_name == "Corners" and not actions.single
    (corners,) = actions.inputs
    assert (corners.name, corners.kind, corners.n, corners.on) == ("corners", "points", 4, "img")
    assert corners.point_labels == CORNER_NAMES == ("top-left", "top-right", "bottom-right", "bottom-left")
    assert corners.label == "The page's four corners" and corners.help
    assert image_field(ManualInput(HARD[0].img), corners.on) == "img"
    assert actions_for(app.output_type("validation")).kind == "decide"


def test_guidelines_are_written_for_both_human_stages() -> None:
    assert "Approve" in app.guidelines_for("validation") and "Reject" in app.guidelines_for("validation")
    assert "top-left, top-right, bottom-right" in app.guidelines_for("manual-correct")
    assert set(app.previews) == {"manual-correct"}


def test_the_preview_is_the_rectified_page_small_and_refuses_bad_corners() -> None:
    s, preview = HARD[0], app.previews["manual-correct"]
    png = preview(ManualInput(s.img), Corners(list(s.corners)))
    assert png.startswith(b"\x89PNG") and max(image_size(png)) <= 800
    assert similarity(png, s.page) >= 0.85
    big = preview(ManualInput(s.img), Corners([(0.0, 0.0), (640.0, 0.0), (640.0, 480.0), (0.0, 480.0)]))
    assert image_size(big) == (640, 480)
    with pytest.raises(ValueError, match="convex quadrilateral"):
        preview(ManualInput(s.img), Corners([(0.0, 0.0), (100.0, 0.0), (200.0, 0.0), (0.0, 100.0)]))


async def test_corners_built_from_the_console_json_make_the_output(driver: TestDriver) -> None:
    s = HARD[1]
    clicked = [[round(x, 1), round(y, 1)] for x, y in s.corners]  # what the widget sends
    value = build(app.output_type("manual-correct"), {"corners": clicked})
    assert value == Corners([(float(x), float(y)) for x, y in clicked])
    await driver.complete("manual-correct", "hard-102", value)
    out = (await driver.outputs())["hard-102"]
    assert out.img == s.img and out.corrected == warp_with_corners(s.img, clicked)
    assert similarity(out.corrected, s.page) >= 0.85
    with pytest.raises(FormError, match="corners: needs 4 points, got 3"):
        build(app.output_type("manual-correct"), {"corners": clicked[:3]})


async def test_the_manual_page_pushes_corners_and_the_workflow_warps_them(driver: TestDriver) -> None:
    s = HARD[0]
    async with driver.client("manual-correct") as m:
        r = await m.post("/correct", json={"id": "hard-100", "corners": [list(c) for c in s.corners]})
    assert r.status_code == 200
    assert (await driver.outputs())["hard-100"].corrected == warp_with_corners(s.img, s.corners)
