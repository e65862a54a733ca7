"""The console for a review team, in Chromium: both human stages of the example worked start to finish in it
by two reviewers (the manual one by clicking four corners), locks honoured across the console and the app
page, skips that stick, a task completed elsewhere, an expired session, long and bidi ids, the shortcuts."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page

from tests.integration.browser.test_console_browser import (
    corrected_pair,
    eventually,
    login,
    no_dialogs,
    outputs,
    pending,
    push,
    run,
)
from tests.integration.serving import Served, serve, write_tokens
from topologies.perspective_correction.imaging import image_size
from topologies.perspective_correction.samples import make_sample, similarity
from topologies.perspective_correction.states import AutoCorrected, Input, Output


def click_corners(page: Page, img: bytes, corners: list[tuple[float, float]], off: tuple[float, float] = (0, 0)) -> int:
    """Click the corners on the widget's canvas (the first one `off` by some pixels); returns the clicks made."""
    box = canvas_box(page)
    assert box is not None
    width, _ = image_size(img)
    scale = box["width"] / width
    points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in corners]
    page.mouse.click(points[0][0] + off[0], points[0][1] + off[1])
    for x, y in points[1:]:
        page.mouse.click(x, y)
    return len(points)


def canvas_box(page: Page) -> dict[str, float]:
    """Where the widget's canvas is, once its image is loaded (the hint asks for the first point)."""
    page.wait_for_selector(".pa-hint:has-text('of 4'), .pa-hint:has-text('placed')")
    box = page.locator("canvas.pa-canvas").bounding_box()
    assert box is not None
    return box


def drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    page.mouse.move(*end)
    page.mouse.up()


def test_both_human_stages_are_worked_in_the_console_by_two_reviewers(browser: Browser, tmp_path: Path, shots: Path) -> None:
    env = {"PIPETEER_AUTH_TOKEN_FILE": str(write_tokens(tmp_path / "tokens"))}
    with serve("topologies.perspective_correction:app", tmp_path, env, ("--undo-seconds", "1")) as s:
        samples = {"easy-1": make_sample(3), "easy-2": make_sample(5), "hard-1": make_sample(4, hard=True),
                   "hard-2": make_sample(8, hard=True)}
        push(s, "auto-correct", {id: Input(x.img) for id, x in samples.items()})
        alice = login(browser, s, "alice", "/console/?stage=validation")
        bob = login(browser, s, "bob", "/console/?stage=manual-correct")
        dialogs = no_dialogs(alice) + no_dialogs(bob)
        validation_keys = validated = 0
        eventually(lambda: len(pending(s, "validation")) + len(pending(s, "manual-correct")) == 4, timeout=60)
        # alice: every correction on screen is approved if it matches the page, else rejected (r, then a reason)
        while pending(s, "validation"):
            alice.wait_for_selector("#task-id bdi", timeout=20_000)
            id = alice.inner_text("#task-id bdi")
            alice.wait_for_timeout(550)
            good = id.startswith("easy")
            alice.keyboard.press("a" if good else "r")
            validation_keys += 1
            validated += 1
            if not good:
                alice.wait_for_selector("#reasons:not([hidden])")
                alice.keyboard.press("1")
                validation_keys += 1
            eventually(lambda id=id: id not in pending(s, "validation"), timeout=20)  # type: ignore[misc]
        alice.screenshot(path=str(shots / "team-validation-done.png"))
        # bob: four corners per photo on the console's canvas (one clicked off and dragged into place,
        # one extra click taken back with z), a preview of the warp, then Enter
        clicks = keys = 0
        done: list[str] = []
        eventually(lambda: len(pending(s, "manual-correct")) >= 1, timeout=30)
        while pending(s, "manual-correct"):
            bob.wait_for_selector("canvas.pa-canvas", timeout=20_000)
            id = bob.inner_text("#task-id bdi")
            sample = samples[id]
            bob.wait_for_timeout(550)
            box = canvas_box(bob)
            scale = box["width"] / image_size(sample.img)[0]
            first = (box["x"] + sample.corners[0][0] * scale, box["y"] + sample.corners[0][1] * scale)
            if not done:  # the first photo: a slip clicked and taken back, and a corner dragged into place
                bob.mouse.click(first[0] + 60, first[1] + 60)
                bob.keyboard.press("z")
                clicks += 1
                keys += 1
                clicks += click_corners(bob, sample.img, sample.corners, off=(25, 18))
                bob.wait_for_selector("#preview-img[src^='blob:']", timeout=20_000)
                box = canvas_box(bob)  # (where it is now)
                first = (box["x"] + sample.corners[0][0] * scale, box["y"] + sample.corners[0][1] * scale)
                drag(bob, (first[0] + 25, first[1] + 18), first)
                clicks += 1
                bob.wait_for_timeout(400)  # the preview of the corrected corners
            else:
                clicks += click_corners(bob, sample.img, sample.corners)
            bob.wait_for_selector("#preview-img[src^='blob:']", timeout=20_000)
            if not done:
                bob.screenshot(path=str(shots / "team-manual-corners.png"))
            bob.keyboard.press("Enter")
            keys += 1
            done.append(id)
            eventually(lambda id=id: id not in pending(s, "manual-correct"), timeout=20)  # type: ignore[misc]
        eventually(lambda: len(outputs(s)) == 4, timeout=30)
        out = outputs(s)
        for id, sample in samples.items():
            assert isinstance(out[id], Output) and similarity(out[id].corrected, sample.page) > 0.8, id
        index = login(browser, s, "alice", "/")
        index.wait_for_selector("table.team td.name:text('bob')")
        index.screenshot(path=str(shots / "team-index.png"))
        assert dialogs == []
        print(f"\nvalidation: {validation_keys} keys for {validated} tasks; manual: {clicks} clicks and {keys} keys "
              f"for {len(done)} tasks")


def test_a_lock_taken_in_the_console_is_honoured_on_the_app_page(browser: Browser, served: Served) -> None:
    push(served, "validation", {"photo-09": corrected_pair(1)})
    alice = login(browser, served, "alice", "/console/?stage=validation")
    alice.wait_for_selector("#task-id:has-text('photo-09')")
    bob = login(browser, served, "bob", "/validation/")
    bob.wait_for_selector(".card[data-id='photo-09'] button.reject")
    bob.click(".card[data-id='photo-09'] button.reject")
    bob.wait_for_selector(".card[data-id='photo-09'] .msg:has-text('alice')")
    assert pending(served, "validation") == ["photo-09"]
    alice.wait_for_timeout(550)
    alice.keyboard.press("a")
    eventually(lambda: list(outputs(served)) == ["photo-09"])


def test_skip_sticks_and_a_task_completed_elsewhere_is_said(browser: Browser, served: Served, shots: Path) -> None:
    push(served, "validation", {f"s-{i}": corrected_pair(i) for i in range(3)})
    page = login(browser, served, "bob", "/console/?stage=validation")
    page.wait_for_selector("#task-id:has-text('s-0')")
    page.wait_for_timeout(550)
    page.keyboard.press("n")
    page.wait_for_selector("#task-id:has-text('s-1')")
    page.wait_for_timeout(550)
    page.keyboard.press("a")
    page.wait_for_selector("#task-id:has-text('s-2')")  # not s-0: skipped ones come last
    # s-2 completed elsewhere (a script pops it): the page says so and its buttons go dead
    from pipeteer import connect
    from topologies.perspective_correction import app

    async def pop() -> None:
        await connect(app, served.backend).stage_queue("validation").pop("s-2")

    run(pop)
    page.wait_for_selector("#status:has-text('completed elsewhere')", timeout=15_000)
    assert page.is_disabled("#approve")
    page.screenshot(path=str(shots / "console-completed-elsewhere.png"))
    page.keyboard.press("n")
    page.wait_for_selector("#task-id:has-text('s-0')")


def test_an_expired_session_mid_task_goes_to_the_login_page_and_back(browser: Browser, served: Served) -> None:
    push(served, "validation", {"e-0": corrected_pair(1), "e-1": corrected_pair(2)})
    page = login(browser, served, "alice", "/console/?stage=validation")
    page.wait_for_selector("#task-id:has-text('e-0')")
    page.context.clear_cookies()  # the session is gone (expired)
    page.wait_for_timeout(550)
    page.keyboard.press("a")
    page.wait_for_url("**/login?next=*")
    assert "Bearer" not in page.content()
    page.fill("#token", "alice-token-0123456789")
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/?stage=validation")
    page.wait_for_selector("#task-id:has-text('e-0')")  # still hers, still pending
    assert pending(served, "validation") == ["e-0", "e-1"]


def test_long_and_bidi_ids_stay_readable_and_the_shortcuts_sheet(browser: Browser, served: Served, shots: Path) -> None:
    img = make_sample(1).img
    long_id, bidi_id = "x" * 5000, "\u202etxt.exe"
    push(served, "validation", {long_id: AutoCorrected(img, img), bidi_id: AutoCorrected(img, img)})
    page = login(browser, served, "alice", "/console/?stage=validation")
    favicon = page.request.get(served.base + "/favicon.ico")
    assert favicon.status == 200
    page.wait_for_selector("#task-id bdi")
    head = page.locator(".taskhead").bounding_box()
    assert head is not None and head["height"] < 80  # one line, not two screens
    assert "5000 characters" in page.inner_text("#task-id")
    texts = page.locator("#list li a").all_inner_texts()
    assert any("⟨U+202E⟩txt.exe" in t for t in texts), texts
    page.keyboard.press("?")
    page.wait_for_selector("#help:not([hidden])")
    page.screenshot(path=str(shots / "console-shortcuts.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#help", state="hidden")
    page.screenshot(path=str(shots / "console-long-ids.png"))


def test_closing_the_tab_releases_the_task_and_n_waits_out_the_click_guard(browser: Browser, served: Served) -> None:
    import httpx

    push(served, "validation", {"c-0": corrected_pair(1), "c-1": corrected_pair(2)})
    page = login(browser, served, "alice", "/console/?stage=validation")
    page.wait_for_selector("#task-id:has-text('c-0')")
    page.keyboard.press("n")  # within the guard after a task appears: ignored, as a click would be
    page.wait_for_timeout(300)
    assert page.inner_text("#task-id bdi") == "c-0"
    with httpx.Client(base_url=served.base, headers=served.auth("bob")) as bob:
        assert bob.post("/console/api/open", params={"stage": "validation", "id": "c-0"}).status_code == 409
        page.close(run_before_unload=True)
        eventually(lambda: bob.post("/console/api/open", params={"stage": "validation", "id": "c-0"}).status_code == 200)
