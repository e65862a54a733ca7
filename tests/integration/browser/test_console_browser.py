"""The people's pages in a real headless Chromium (Debian's `chromium`, driven by Playwright).

A reviewer logs in, validates by keyboard alone, undoes, corrects four corners by clicking and
dragging; two reviewers get different tasks; hostile ids stay text on every page; another site
cannot complete a task. Screenshots go to `$PIPETEER_SCREENSHOTS` (default: the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeteer import connect
from tests.integration.serving import TOKENS, Served, serve, write_tokens
from tests.integration.test_sqlite_processes import free_port
from topologies.perspective_correction import app
from topologies.perspective_correction.samples import make_sample
from topologies.perspective_correction.states import AutoCorrected, Input, ManualInput, Output

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium for the browser tests (.ci/run installs it)")
    pytest.skip("no chromium here (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
HOSTILE = ["__BASE_JSON__ onerror=alert(3) x", "__TASK_JSON__ onerror=alert(4) x", '"><script>alert(1)</script>',
           "' onmouseover='alert(2)", "<img src=x onerror=alert(5)>"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("PIPETEER_SCREENSHOTS", tmp_path / "screenshots"))
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = {"PIPETEER_AUTH_TOKEN_FILE": str(write_tokens(tmp_path / "tokens"))}
    args = ("--stage", "validation", "--stage", "manual-correct", "--undo-seconds", "2")
    with serve("topologies.perspective_correction:app", tmp_path, env, args) as s:
        yield s


def run(coro_fn: Callable[[], Any]) -> Any:
    """Run a coroutine from a test: in a thread of its own, as Playwright's sync API holds this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()


def push(served: Served, stage: str, items: dict[str, Any]) -> None:
    async def go() -> None:
        q = connect(app, served.backend).stage(stage).Qin
        for id, v in items.items():
            await q.push(id, v)

    run(go)


def outputs(served: Served) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        return dict(await connect(app, served.backend).Qout.items())

    result: dict[str, Any] = run(go)
    return result


def pending(served: Served, stage: str) -> list[str]:
    async def go() -> list[str]:
        ids: list[str] = await connect(app, served.backend).stage(stage).Qin.keys()
        return ids

    result: list[str] = run(go)
    return result


def eventually(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def no_dialogs(page: Page) -> list[str]:
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(d.message), d.dismiss()))
    return seen


def login(browser: Browser, served: Served, who: str, target: str = "/") -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    page.goto(served.base + target)
    assert "/login" in page.url  # sent to log in first
    page.fill("#token", TOKENS[who])
    page.keyboard.press("Enter")
    page.wait_for_url(served.base + target)
    return page


def corrected_pair(seed: int) -> AutoCorrected:
    s = make_sample(seed)
    return AutoCorrected(s.img, s.page)


def test_validate_by_keyboard_alone_with_undo(browser: Browser, served: Served, shots: Path) -> None:
    push(served, "validation", {f"doc-{i}": corrected_pair(i) for i in range(4)})
    page = login(browser, served, "alice")
    dialogs = no_dialogs(page)
    page.wait_for_selector("tr[data-stage=validation] .pending:text('4')")
    page.screenshot(path=str(shots / "console-index.png"))
    page.click("tr[data-stage=validation] a.button")
    page.wait_for_selector("#task-id:has-text('doc-0')")
    page.wait_for_selector("figure img")
    page.screenshot(path=str(shots / "console-validation.png"))
    keys = 0
    for expected, key in (("doc-0", "a"), ("doc-1", "r"), ("doc-2", "a")):
        page.wait_for_selector(f"#task-id:has-text('{expected}')")
        page.wait_for_timeout(550)  # the guard against a click meant for the previous task
        page.keyboard.press(key)
        keys += 1
        if key == "r":  # the example declares reject reasons: a digit picks one
            page.wait_for_selector("#reasons:not([hidden])")
            page.screenshot(path=str(shots / "console-reject-reasons.png"))
            page.keyboard.press("1")
            keys += 1
    page.wait_for_selector("#task-id:has-text('doc-3')")
    page.wait_for_timeout(550)
    page.keyboard.press("u")  # take back the last decision (doc-2, approved)
    page.wait_for_selector("#status:has-text('Undone: doc-2')")
    page.wait_for_selector("#task-id:has-text('doc-2')")
    page.wait_for_timeout(550)
    page.keyboard.press("r")
    page.wait_for_selector("#reasons:not([hidden])")
    page.keyboard.press("2")
    keys += 2
    page.wait_for_selector("#task-id:has-text('doc-3')")
    page.wait_for_selector("#recent li")
    page.screenshot(path=str(shots / "console-after-decisions.png"))
    eventually(lambda: set(outputs(served)) == {"doc-0"} and set(pending(served, "manual-correct")) == {"doc-1", "doc-2"})
    assert isinstance(outputs(served)["doc-0"], Output)
    assert keys == 6 and dialogs == []  # a key per approval, two per rejection (r, a reason), no click


def test_two_reviewers_get_different_tasks_and_see_the_other_one_taken(browser: Browser, served: Served) -> None:
    push(served, "validation", {f"doc-{i}": corrected_pair(i) for i in range(3)})
    alice = login(browser, served, "alice", "/console/?stage=validation")
    alice.wait_for_selector("#task-id:has-text('doc-0')")
    bob = login(browser, served, "bob", "/console/?stage=validation")
    bob.wait_for_selector("#task-id:has-text('doc-1')")
    bob.wait_for_selector("#list li[data-id='doc-0'] .badge:text('alice')")
    bob.wait_for_timeout(550)
    bob.click("#approve")
    alice.wait_for_timeout(550)
    alice.click("#approve")
    eventually(lambda: set(outputs(served)) == {"doc-0", "doc-1"}, timeout=20)


def test_a_four_corner_correction_with_a_dragged_corner(browser: Browser, served: Served, shots: Path) -> None:
    sample = make_sample(7, hard=True)
    push(served, "manual-correct", {"hard-7": ManualInput(sample.img)})
    page = login(browser, served, "bob", "/manual-correct/")
    dialogs = no_dialogs(page)
    page.wait_for_selector("#photo")
    page.wait_for_function("document.getElementById('photo').naturalWidth > 0")
    box = page.locator("#photo").bounding_box()
    assert box is not None
    natural = page.evaluate("[document.getElementById('photo').naturalWidth, document.getElementById('photo').naturalHeight]")
    sx, sy = box["width"] / natural[0], box["height"] / natural[1]
    corners = [(box["x"] + x * sx, box["y"] + y * sy) for x, y in sample.corners]
    first = corners[0]
    page.mouse.click(first[0] + 40, first[1] + 30)  # off by a little: dragged into place below
    for x, y in corners[1:]:
        page.mouse.click(x, y)
    page.mouse.move(first[0] + 40, first[1] + 30)
    page.mouse.down()
    page.mouse.move(first[0] + 20, first[1] + 15)
    page.mouse.move(first[0], first[1])
    page.mouse.up()
    page.screenshot(path=str(shots / "manual-corners.png"))
    page.click("#submit")
    page.wait_for_selector("#msg:has-text('Done')")
    eventually(lambda: "hard-7" in outputs(served))
    from topologies.perspective_correction.samples import similarity

    assert similarity(outputs(served)["hard-7"].corrected, sample.page) > 0.8 and dialogs == []


def test_hostile_ids_stay_text_on_every_page(browser: Browser, served: Served, shots: Path) -> None:
    img = make_sample(1).img
    push(served, "validation", {id: AutoCorrected(img, img) for id in HOSTILE})
    push(served, "manual-correct", {id: ManualInput(img) for id in HOSTILE})
    page = login(browser, served, "alice")
    dialogs = no_dialogs(page)
    urls = ["/", "/console/?stage=validation", "/console/?stage=manual-correct", "/validation/", "/manual-correct/"]
    urls += [f"/manual-correct/?id={id}" for id in HOSTILE]
    for url in urls:
        page.goto(served.base + url)
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(300)
        assert page.evaluate("document.querySelectorAll('[onerror],[onmouseover]').length") == 0, url
    page.goto(served.base + "/console/?stage=validation")
    page.wait_for_selector("#list li")
    assert page.locator("#list li a").all_inner_texts() == sorted(HOSTILE, key=pending(served, "validation").index)
    page.screenshot(path=str(shots / "console-hostile-ids.png"))
    page.goto(served.base + "/validation/")
    assert HOSTILE[0] in page.locator(".card .id").all_inner_texts()
    assert dialogs == []


def test_another_site_cannot_complete_a_task(browser: Browser, served: Served, tmp_path: Path) -> None:
    push(served, "validation", {"victim": corrected_pair(1)})
    host, port = served.base.removeprefix("http://").split(":")
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "index.html").write_text(
        f'<form id="f" method="post" action="http://{host}:{port}/validation/validate?id=victim&ok=true"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    evil_port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", evil_port), partial(SimpleHTTPRequestHandler, directory=str(evil)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = login(browser, served, "alice")  # a logged-in reviewer visits another site
        page.goto(f"http://localhost:{evil_port}/index.html")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(500)
        assert "authentication required" in page.content() or "cross-origin" in page.content()
    finally:
        server.shutdown()
        server.server_close()
    assert pending(served, "validation") == ["victim"] and outputs(served) == {}


def test_the_whole_example_is_worked_from_the_console(browser: Browser, tmp_path: Path, shots: Path) -> None:
    """All stages of the example with authentication on: photos in, a person works both human stages."""
    env = {"PIPETEER_AUTH_TOKEN_FILE": str(write_tokens(tmp_path / "tokens"))}
    with serve("topologies.perspective_correction:app", tmp_path, env, ("--undo-seconds", "1")) as s:
        samples = {"easy": make_sample(3), "hard": make_sample(4, hard=True)}
        push(s, "auto-correct", {id: Input(x.img) for id, x in samples.items()})
        page = login(browser, s, "alice", "/console/?stage=validation")
        page.wait_for_selector("#task-id:has-text('easy')", timeout=30_000)
        page.wait_for_timeout(550)
        page.keyboard.press("a")
        eventually(lambda: "easy" in outputs(s) or False, timeout=20)
        manual = pending(s, "manual-correct")
        assert manual == ["hard"] or "hard" in pending(s, "validation")
        page.screenshot(path=str(shots / "console-example.png"))


def test_both_reviewers_approving_one_card_emit_it_once(browser: Browser, served: Served) -> None:
    push(served, "validation", {"shared": corrected_pair(2)})
    alice = login(browser, served, "alice", "/validation/")
    bob = login(browser, served, "bob", "/validation/")
    for page in (alice, bob):
        page.wait_for_selector(".card[data-id=shared] button.approve")
    alice.click(".card[data-id=shared] button.approve")
    bob.click(".card[data-id=shared] button.approve")
    for page in (alice, bob):
        page.wait_for_selector(".card[data-id=shared].done")
    messages = sorted(p.inner_text(".card[data-id=shared] .msg") for p in (alice, bob))
    assert messages[0] == "approved", messages
    assert "no pending task 'shared'" in messages[1] or "being completed by another request" in messages[1], messages
    eventually(lambda: list(outputs(served)) == ["shared"])
