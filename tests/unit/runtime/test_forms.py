"""What the console shows of a task and builds from a form, derived from types."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pytest

from pipeteer.runtime.console.forms import FormError, actions_for, build, field_bytes, show

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
