"""The example's own manual-correction page (`/manual-correct/`) in a real headless Chromium.

A reviewer clicks four corners (one wrong, taken back with `z`), checks the preview of the corrected
page, submits with Enter and goes back to the review console; a task a reviewer holds in the
console is refused with their name.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page

from tests.integration.browser.test_console_browser import (
    eventually,
    login,
    no_dialogs,
    outputs,
    pending,
    push,
)
from tests.integration.serving import Served
from topologies.perspective_correction.samples import Sample, make_sample, similarity
from topologies.perspective_correction.states import ManualInput


def on_screen(page: Page, sample: Sample) -> list[tuple[float, float]]:
    """The sample's true corners, in the page's pixels."""
    page.wait_for_function("document.getElementById('photo').naturalWidth > 0")
    box = page.locator("#photo").bounding_box()
    assert box is not None
    natural = page.evaluate("[document.getElementById('photo').naturalWidth, document.getElementById('photo').naturalHeight]")
    sx, sy = box["width"] / natural[0], box["height"] / natural[1]
    return [(box["x"] + x * sx, box["y"] + y * sy) for x, y in sample.corners]


def test_corners_with_an_undo_a_preview_and_enter(browser: Browser, served: Served, shots: Path) -> None:
    sample = make_sample(7, hard=True)
    push(served, "manual-correct", {"hard-7": ManualInput(sample.img)})
    page = login(browser, served, "bob", "/manual-correct/")
    dialogs = no_dialogs(page)
    corners = on_screen(page, sample)
    for x, y in corners[:3]:
        page.mouse.click(x, y)
    page.mouse.click(corners[3][0] + 60, corners[3][1] - 50)  # a wrong fourth corner...
    page.wait_for_selector("#preview:not([hidden]), #preview-msg.error")
    page.keyboard.press("z")  # ...taken back: no preview, nothing to submit
    page.wait_for_selector("#preview", state="hidden")
    assert page.locator(".marker").count() == 3 and page.locator("#submit").is_disabled()
    page.mouse.click(*corners[3])
    page.wait_for_selector("#preview-box:not(.stale) #preview:not([hidden])")
    page.wait_for_selector("#submit:enabled:has-text('Submit this correction')")
    page.keyboard.press("?")
    page.wait_for_selector("#keys:not([hidden])")
    page.screenshot(path=str(shots / "manual-page-preview.png"))
    page.keyboard.press("Enter")
    page.wait_for_selector("#msg:has-text('Done: hard-7')")
    eventually(lambda: "hard-7" in outputs(served))
    assert similarity(outputs(served)["hard-7"].corrected, sample.page) > 0.8
    page.wait_for_selector("text=Nothing to correct")  # the next task loaded: there is none
    page.click("#console")
    page.wait_for_url(served.base + "/console/?stage=manual-correct")
    page.wait_for_selector("body[data-stage='manual-correct']")
    assert dialogs == []


def test_a_task_held_in_the_console_is_refused_naming_the_holder(browser: Browser, served: Served) -> None:
    sample = make_sample(7, hard=True)
    push(served, "manual-correct", {"held": ManualInput(sample.img)})
    alice = login(browser, served, "alice", "/console/?stage=manual-correct")
    alice.wait_for_selector("#task-id:has-text('held')")  # she holds it while she works on it
    bob = login(browser, served, "bob", "/manual-correct/")
    for x, y in on_screen(bob, sample):
        bob.mouse.click(x, y)
    bob.wait_for_selector("#submit:enabled")
    bob.keyboard.press("Enter")
    bob.wait_for_selector("#msg.error:has-text('alice')")
    assert pending(served, "manual-correct") == ["held"] and outputs(served) == {}
