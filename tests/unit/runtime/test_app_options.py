"""The App's options for people's stages: previews and guidelines, validated when built; annotated output types."""

from __future__ import annotations

import doctest
from dataclasses import dataclass
from typing import Annotated, Any

import pytest

import pipeteer.annotate
import pipeteer.runtime.app
from pipeteer import App, Pipeline, Workflow, Wrapped
from pipeteer.annotate import Boxes, Choice, Label, Number, Points, Polygon, Text
from pipeteer.codec import codec_for
from pipeteer.errors import SpecError
from pipeteer.types import checker, type_name


@dataclass
class Task:
    img: bytes


@dataclass
class LabelledTask:
    img: Annotated[bytes, Label("Photo", help="as taken")]


@dataclass
class Corners:
    corners: Annotated[list[tuple[float, float]], Points(4, on="img"), Label("Corners")]


@dataclass
class Prepared:
    img: bytes


@dataclass
class Done:
    img: bytes
    n: int


def post_click(task: Prepared, c: Corners) -> Done:
    return Done(task.img, len(c.corners))


async def prepare(Qin: Any, Qout: Any) -> None:
    """An automatic stage."""


def click_page(Qin: Any, Qout: Any) -> Any:
    """Click the page's four corners, top-left first.

    Details for developers, not shown to people.
    """


def bare_page(Qin: Any, Qout: Any) -> Any:
    return None


workflow = Workflow(Task, Done, pipelines={
    "prepare": Wrapped(Task, Pipeline(bytes, bytes), pre=lambda t: t.img, post=lambda t, b: Prepared(b)),
    "click": Wrapped(Prepared, Pipeline(bytes, Corners), pre=lambda t: t.img, post=post_click),
}, name="clicks")
ARTIFACTS = {"prepare": prepare, "click": click_page}


def preview(task: Task, c: Corners) -> bytes:
    return task.img


def test_options_are_kept_and_guidelines_fall_back_to_the_artifact_docstring() -> None:
    app = App(workflow, ARTIFACTS, previews={"click": preview})
    assert app.previews["click"] is preview
    assert app.guidelines_for("click") == "Click the page's four corners, top-left first."
    assert App(workflow, ARTIFACTS, guidelines={"click": "Corners, clockwise."}).guidelines_for("click") == (
        "Corners, clockwise.")
    assert App(workflow, {**ARTIFACTS, "click": bare_page}).guidelines_for("click") == ""
    assert app.output_type("click") is Corners and app.output_type("prepare") is bytes


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"previews": {"nope": preview}}, "previews names no stage 'nope' (stages: prepare, click)"),
        ({"previews": {"prepare": preview}}, "previews['prepare']: 'prepare' is an automatic stage"),
        ({"previews": {"click": b"png"}}, "previews['click'] is b'png', not a callable (state, value)"),
        ({"guidelines": {"nope": "x"}}, "guidelines names no stage 'nope'"),
        ({"guidelines": {"prepare": "x"}}, "guidelines['prepare']: 'prepare' is an automatic stage"),
        ({"guidelines": {"click": 3}}, "guidelines['click'] must be a text, got 3"),
    ],
)
def test_bad_options_are_refused_naming_the_stage(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match="invalid app of workflow 'clicks'") as e:
        App(workflow, ARTIFACTS, **options)
    assert message in str(e.value)


def test_every_bad_option_is_listed_at_once() -> None:
    with pytest.raises(SpecError, match="for 2 reasons"):
        App(workflow, ARTIFACTS, previews={"nope": preview}, guidelines={"click": 3})  # type: ignore[dict-item]


def test_an_annotation_that_does_not_fit_a_web_stages_output_is_refused() -> None:
    @dataclass
    class Wrong:
        corners: Annotated[list[float], Points(4)]

    bad = Workflow(Task, Done, pipelines={
        "click": Wrapped(Task, Pipeline(bytes, Wrong), pre=lambda t: t.img, post=lambda t, w: Done(t.img, 0)),
    }, name="clicks")
    with pytest.raises(SpecError, match=r"stage 'click': Wrong.corners: Points annotates list\[tuple\[float, float\]\]"):
        App(bad, {"click": click_page})


def test_annotated_types_are_plain_types_to_queues_and_codecs() -> None:
    tp = Annotated[list[tuple[float, float]], Points(2)]
    assert type_name(tp) == "list[tuple[float, float]]"
    assert checker(tp)([(1.0, 2.0)]) and not checker(tp)("x")
    assert checker(Annotated[int, Label("n")])(3) and not checker(Annotated[int, Label("n")])(True)
    plain, labelled = codec_for(Task).schema, codec_for(LabelledTask).schema
    assert {**plain, "name": "x"} == {**labelled, "name": "x"}  # the same schema but the record's name
    assert codec_for(LabelledTask).decode(codec_for(LabelledTask).encode(LabelledTask(b"\x01"))) == LabelledTask(b"\x01")
    one = Workflow(Task, Done, pipelines={
        "click": Wrapped(Task, Pipeline(bytes, tp), pre=lambda t: t.img, post=lambda t, p: Done(t.img, len(p))),
    }, name="clicks")
    assert App(one, {"click": click_page}).output_type("click") is tp


@pytest.mark.parametrize("module", [pipeteer.annotate, pipeteer.runtime.app])
def test_docstring_examples(module: Any) -> None:
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Points(0), "n must be a whole number >= 1"),
        (lambda: Points(True), "n must be a whole number >= 1"),
        (lambda: Points(3, labels=("a", "b")), "labels name 2 point(s) but n is 3"),
        (lambda: Points(2, labels=("a", "a")), "labels must be distinct"),
        (lambda: Points(1, labels="a"), "labels must be a tuple of texts"),
        (lambda: Points(2, ordered=False, labels=("a", "b")), "they need ordered=True"),
        (lambda: Points(on="not a field"), "on must name a field"),
        (lambda: Polygon(min_points=2), "min_points must be a whole number >= 3"),
        (lambda: Boxes(0), "n must be a whole number >= 1"),
        (lambda: Boxes(1, labels=("a", "b")), "labels name 2 box(es) but n is 1"),
        (lambda: Choice(()), "options must not be empty"),
        (lambda: Choice(("a", "a")), "options must be distinct"),
        (lambda: Choice("ab"), "options must be a tuple of texts"),
        (lambda: Text(max_length=0), "max_length must be a whole number >= 1"),
        (lambda: Number(min=2, max=1), "min (2) must not be above max (1)"),
        (lambda: Number(step=0), "step must be above 0"),
        (lambda: Number(min=float("nan")), "min must be a finite number"),
        (lambda: Label(""), "text must be a non-empty text"),
    ],
)
def test_annotations_are_checked_when_made(make: Any, message: str) -> None:
    with pytest.raises(SpecError, match="invalid annotation") as e:
        make()
    assert message in str(e.value)


def test_annotations_are_hashable_values() -> None:
    assert Points(2, labels=["a", "b"]) == Points(2, labels=("a", "b"))  # type: ignore[arg-type]
    assert hash(Choice(("a", "b"))) == hash(Choice(("a", "b")))
    assert Polygon().min_points == 3 and Text().multiline is False and Number().min is None
