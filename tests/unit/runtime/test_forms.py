"""What the console shows of a task and builds from a form, derived from types."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Annotated

import pytest

from pipeteer.annotate import Boxes, Choice, Label, Number, Points, Polygon, Text
from pipeteer.runtime.console.forms import FormError, actions_for, build, field_bytes, image_field, show

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 10


class Team(enum.Enum):
    OPS = "ops"
    DEV = "dev"


@dataclass
class Triage:
    priority: int
    team: Team
    note: str | None = None
    urgent: bool = False


@dataclass
class Photo:
    img: bytes
    corrected: bytes
    blob: bytes
    caption: str
    tags: list[str]


def test_states_show_images_as_images_and_the_rest_as_text() -> None:
    shown = show(Photo(PNG, PNG, b"\x01\x02", "<b>hi</b>", ["a"]))
    assert [(s.name, s.kind) for s in shown] == [
        ("img", "image"), ("corrected", "image"), ("blob", "bytes"), ("caption", "text"), ("tags", "text")]
    assert shown[3].text == "<b>hi</b>" and shown[4].text == '["a"]' and shown[2].size == 2
    assert field_bytes(Photo(PNG, b"c", b"", "", []), "corrected") == b"c"
    assert field_bytes(Photo(PNG, b"c", b"", "", []), "caption") is None
    assert [s.kind for s in show(PNG)] == ["image"]


def test_actions_follow_the_output_type() -> None:
    assert actions_for(bool).kind == "decide"
    assert actions_for(bytes).kind == "upload"
    form = actions_for(Triage)
    assert form.kind == "form" and not form.single
    assert [(i.name, i.kind, i.optional) for i in form.inputs] == [
        ("priority", "integer", False), ("team", "select", False), ("note", "text", True), ("urgent", "checkbox", False)]
    assert form.inputs[1].choices == ("ops", "dev")
    assert actions_for(float).single and actions_for(list[int]).inputs[0].kind == "json"


def test_build_is_strict_and_names_the_field() -> None:
    assert build(Triage, {"priority": 2, "team": "dev", "note": None}) == Triage(2, Team.DEV, None)
    with pytest.raises(FormError, match="priority: must be a whole number"):
        build(Triage, {"priority": "2", "team": "dev"})
    with pytest.raises(FormError, match="team: must be one of ops, dev"):
        build(Triage, {"priority": 2, "team": "qa"})
    with pytest.raises(FormError, match="unknown field"):
        build(Triage, {"priority": 2, "team": "dev", "x": 1})
    with pytest.raises(FormError, match="team: is required"):
        build(Triage, {"priority": 2})
    with pytest.raises(FormError, match="must be true or false"):
        build(bool, "yes")
    assert build(float, 3) == 3.0 and build(list[int], [1, 2]) == [1, 2]
    with pytest.raises(FormError):
        build(list[int], [1, "2"])
    assert build(bytes, "AAE=") == b"\x00\x01"


# --- annotations (pipeteer.annotate) ---------------------------------------------------------

CORNERS = ("top-left", "top-right", "bottom-right", "bottom-left")
Point = tuple[float, float]


@dataclass
class Marked:
    corners: Annotated[list[Point], Points(4, on="img", labels=CORNERS), Label("Corners", help="in order")]
    outline: Annotated[list[Point], Polygon(min_points=3)]
    faces: Annotated[list[tuple[float, float, float, float]], Boxes()]
    verdict: Annotated[str, Choice(("keep", "drop"))]
    note: Annotated[str, Text(multiline=True, max_length=5)] | None = None
    score: Annotated[int, Number(min=0, max=10, step=1)] = 0
    ratio: Annotated[float, Number(max=1.0)] = 0.5
    photo: Annotated[bytes, Label("Photo")] = b""


GOOD = {"corners": [[0, 0], [10, 0], [10.5, 10], [0, 10]], "outline": [[0, 0], [1, 0], [0, 1]],
        "faces": [[1, 2, 3, 4]], "verdict": "keep"}


def test_annotations_become_inputs_and_drawing_makes_an_annotate_form() -> None:
    actions = actions_for(Marked)
    assert actions.kind == "annotate" and actions.type_name == "Marked" and not actions.single
    by = {i.name: i for i in actions.inputs}
    assert [i.kind for i in actions.inputs] == [
        "points", "polygon", "boxes", "select", "textarea", "integer", "number", "file"]
    c = by["corners"]
    assert (c.on, c.n, c.point_labels, c.label, c.help) == ("img", 4, CORNERS, "Corners", "in order")
    assert by["outline"].min_points == 3 and by["outline"].on is None and by["faces"].n is None
    assert by["verdict"].choices == ("keep", "drop")
    assert by["note"].optional and by["note"].multiline and by["note"].max_length == 5
    assert (by["score"].minimum, by["score"].maximum, by["score"].step) == (0, 10, 1)
    assert by["photo"].label == "Photo"
    # the JSON shape of an unannotated input keeps its old fields, with the new ones at their defaults
    plain = asdict(actions_for(Triage))["inputs"][0]
    assert {k: plain[k] for k in ("name", "kind", "optional", "choices")} == {
        "name": "priority", "kind": "integer", "optional": False, "choices": ()}
    assert plain["label"] == "" and plain["on"] is None and plain["point_labels"] == ()
    assert actions_for(Triage).kind == "form"


def test_a_top_level_annotated_type_is_one_input() -> None:
    tp = Annotated[list[Point], Points(2, labels=("a", "b"))]
    actions = actions_for(tp)
    assert actions.kind == "annotate" and actions.single and actions.type_name == "list[tuple[float, float]]"
    assert build(tp, [[1, 2], [3, 4]]) == [(1.0, 2.0), (3.0, 4.0)]
    assert actions_for(Annotated[bool, Label("Straight?")]).kind == "decide"
    assert actions_for(Annotated[str, Choice(("a",))]).inputs[0].kind == "select"


def test_annotations_that_do_not_fit_their_type_are_refused() -> None:
    with pytest.raises(FormError, match=r"Points annotates list\[tuple\[float, float\]\], not list\[int\]"):
        actions_for(Annotated[list[int], Points(2)])

    @dataclass
    class Bad:
        x: Annotated[int, Choice(("a",)), Text()]

    with pytest.raises(FormError, match="one input annotation per field, got Choice, Text"):
        actions_for(Bad)


def test_build_reads_points_polygons_and_boxes() -> None:
    m = build(Marked, GOOD)
    assert m.corners == [(0.0, 0.0), (10.0, 0.0), (10.5, 10.0), (0.0, 10.0)]
    assert all(type(x) is float for p in m.corners for x in p)
    assert m.faces == [(1.0, 2.0, 3.0, 4.0)] and m.verdict == "keep" and m.score == 0
    cases = [
        ({"corners": [[0, 0], [1, 0], [1, 1]]}, "corners: needs 4 points, got 3"),
        ({"corners": [[0, 0], [1, 0], [1, 1], [0, -1]]}, r"corners\[3\]: image pixels are not negative"),
        ({"corners": [[0, 0], [1, 0], [1, 1], [0, "1"]]}, r"corners\[3\]: must be \[x, y\], numbers"),
        ({"corners": [[0, 0], [1, 0], [1, 1], [0, True]]}, r"corners\[3\]: must be \[x, y\]"),
        ({"corners": [[0, 0], [1, 0], [1, 1], [0, 1, 2]]}, r"corners\[3\]: must be \[x, y\]"),
        ({"corners": [[0, 0], [1, 0], [1, 1], [0, float("inf")]]}, r"corners\[3\]: must be \[x, y\]"),
        ({"corners": "0,0"}, r"corners: must be a list of \[x, y\]"),
        ({"outline": [[0, 0], [1, 1]]}, "outline: needs at least 3 points, got 2"),
        ({"faces": [[3, 2, 1, 4]]}, r"faces\[0\]: a box needs x0 < x1 and y0 < y1"),
        ({"faces": [[1, 2, 3]]}, r"faces\[0\]: must be \[x0, y0, x1, y1\]"),
        ({"verdict": "maybe"}, "verdict: must be one of keep, drop"),
        ({"note": "toolong"}, "note: at most 5 characters, got 7"),
        ({"score": 11}, "score: must be at most 10, got 11"),
        ({"score": -1}, "score: must be at least 0, got -1"),
        ({"score": 2.0}, "score: must be a whole number"),
        ({"score": True}, "score: must be a whole number"),
        ({"ratio": 1.5}, "ratio: must be at most 1, got 1.5"),
        ({"ratio": "0.5"}, "ratio: must be a number"),
        ({"photo": 3}, "photo: must be a file"),
    ]
    for change, message in cases:
        with pytest.raises(FormError, match=message):
            build(Marked, {**GOOD, **change})
    assert build(Marked, {**GOOD, "note": None, "score": 10, "ratio": 1}).ratio == 1.0
    assert build(Marked, {**GOOD, "photo": "AAE="}).photo == b"\x00\x01"


def test_image_field_names_the_image_to_draw_on() -> None:
    photo = Photo(b"raw", PNG, b"", "c", [])
    assert image_field(photo, None) == "corrected"  # the first field holding an image
    assert image_field(photo, "img") == "img"  # named: any bytes field
    with pytest.raises(FormError, match=r"'caption', is not an image field of Photo \(image fields: corrected\)"):
        image_field(photo, "caption")
    with pytest.raises(FormError, match="'nope', is not an image field"):
        image_field(photo, "nope")
    assert image_field(PNG, None) == "value" and image_field("text", None) is None


def test_a_task_shows_the_labels_its_state_class_gives_its_fields() -> None:
    from topologies.perspective_correction.states import AutoCorrected

    shown = show(AutoCorrected(b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n"))
    assert [(s.name, s.label) for s in shown] == [("img", "Photo as taken"), ("corrected", "Automatic correction")]
