"""What a person does with a human stage's output, said on its type with `typing.Annotated`.

The review console derives a human stage's page from the type its inner `Qout` takes: a `bool`
is approve / reject, a dataclass a form. The annotations here say more, on the output type
itself or on fields of an output dataclass:

- `Points(n, on=, labels=)` on `list[tuple[float, float]]`: click `n` points on an image of the task.
- `Polygon(on=, min_points=)` on `list[tuple[float, float]]`: click the corners of a closed outline.
- `Boxes(n, on=, labels=)` on `list[tuple[float, float, float, float]]`: drag boxes (x0, y0, x1, y1).
- `Choice(options)` on `str`, `Text(multiline=, max_length=)` on `str`, `Number(min=, max=, step=)`
  on `int` / `float`: a select, a text area, a bounded number.
- `Label(text, help=)` on any field: what the field is called on the page, and a help line.

Coordinates are image pixels of the image field `on` of the task's state (None: its first image).
Annotations change nothing else: the value is a plain list, str or number, with the same Avro
schema as without them. They are checked when made:

>>> from dataclasses import dataclass
>>> from typing import Annotated
>>> from pipeteer.annotate import Label, Points
>>> @dataclass
... class Corners:
...     corners: Annotated[list[tuple[float, float]],
...                        Points(4, on="img", labels=("top-left", "top-right", "bottom-right", "bottom-left")),
...                        Label("The page's four corners")]
>>> Corners([(10.0, 12.0), (610.0, 8.5), (630.0, 850.0), (4.0, 842.0)]).corners[1]
(610.0, 8.5)
>>> Points(0)
Traceback (most recent call last):
  ...
pipeteer.errors.SpecError: invalid annotation Points: n must be a whole number >= 1 (or None for any number), got 0

`split(tp)` gives the type under the annotations and the annotations of this module on it;
`problems(tp)` lists annotations that do not fit the type they annotate:

>>> split(Annotated[str, Label("Note")])
(<class 'str'>, (Label(text='Note', help=''),))
>>> problems(Annotated[int, Points(2)])
['Points annotates list[tuple[float, float]], not int']
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from pipeteer.errors import SpecError
from pipeteer.types import NoneType, is_union, type_name, union_members

__all__ = ["Boxes", "Choice", "Label", "Number", "Points", "Polygon", "Text", "problems", "split"]

POINT = tuple[float, float]
BOX = tuple[float, float, float, float]


def _labels(value: Any, reasons: list[str], what: str = "labels") -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        reasons.append(f"{what} must be a tuple of texts, got {value!r}")
        return ()
    if not all(isinstance(x, str) and x.strip() for x in value):
        reasons.append(f"{what} must be non-empty texts, got {value!r}")
    elif len(set(value)) != len(value):
        reasons.append(f"{what} must be distinct, got {value!r}")
    return tuple(value)


def _count(value: Any, what: str, reasons: list[str], none: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        reasons.append(f"{what} must be a whole number >= 1{none}, got {value!r}")


def _on(value: Any, reasons: list[str]) -> None:
    if value is not None and not (isinstance(value, str) and value.isidentifier()):
        reasons.append(f"on must name a field of the task's state (or be None for its first image), got {value!r}")


def _done(owner: object, reasons: list[str]) -> None:
    if reasons:
        raise SpecError(f"annotation {type(owner).__name__}", reasons)


@dataclass(frozen=True)
class Points:
    """`n` points (x, y) clicked on the image field `on` of the task (None: its first image),
    in image pixels; `labels` names each point in order ("top-left", ...), shown as the person
    clicks. `ordered`: whether the order of the points means something (with labels it must)."""

    n: int | None = None
    on: str | None = None
    ordered: bool = True
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        reasons: list[str] = []
        _count(self.n, "n", reasons, " (or None for any number)")
        _on(self.on, reasons)
        if not isinstance(self.ordered, bool):
            reasons.append(f"ordered must be True or False, got {self.ordered!r}")
        labels = _labels(self.labels, reasons)
        object.__setattr__(self, "labels", labels)
        if labels and isinstance(self.n, int) and len(labels) != self.n:
            reasons.append(f"labels name {len(labels)} point(s) but n is {self.n}: give one label per point")
        if labels and self.ordered is False:
            reasons.append("labels name the points in the order they are clicked: they need ordered=True")
        _done(self, reasons)


@dataclass(frozen=True)
class Polygon:
    """A closed outline of at least `min_points` corners clicked on the image field `on`."""

    on: str | None = None
    min_points: int = 3

    def __post_init__(self) -> None:
        reasons: list[str] = []
        _on(self.on, reasons)
        if isinstance(self.min_points, bool) or not isinstance(self.min_points, int) or self.min_points < 3:
            reasons.append(f"min_points must be a whole number >= 3 (a polygon has 3 corners or more), got {self.min_points!r}")
        _done(self, reasons)


@dataclass(frozen=True)
class Boxes:
    """`n` boxes (x0, y0, x1, y1) dragged on the image field `on`; `labels` names each box in order."""

    n: int | None = None
    on: str | None = None
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        reasons: list[str] = []
        _count(self.n, "n", reasons, " (or None for any number)")
        _on(self.on, reasons)
        labels = _labels(self.labels, reasons)
        object.__setattr__(self, "labels", labels)
        if labels and isinstance(self.n, int) and len(labels) != self.n:
            reasons.append(f"labels name {len(labels)} box(es) but n is {self.n}: give one label per box")
        _done(self, reasons)


@dataclass(frozen=True)
class Choice:
    """One of `options` (a select)."""

    options: tuple[str, ...]

    def __post_init__(self) -> None:
        reasons: list[str] = []
        options = _labels(self.options, reasons, "options")
        if not options and not reasons:
            reasons.append("options must not be empty")
        object.__setattr__(self, "options", options)
        _done(self, reasons)


@dataclass(frozen=True)
class Text:
    """Free text: one line, or `multiline` (a text area); at most `max_length` characters."""

    multiline: bool = False
    max_length: int | None = None

    def __post_init__(self) -> None:
        reasons: list[str] = []
        if not isinstance(self.multiline, bool):
            reasons.append(f"multiline must be True or False, got {self.multiline!r}")
        _count(self.max_length, "max_length", reasons, " (or None for no limit)")
        _done(self, reasons)


@dataclass(frozen=True)
class Number:
    """A number between `min` and `max` (inclusive, None: no bound), entered in steps of `step`."""

    min: float | None = None
    max: float | None = None
    step: float | None = None

    def __post_init__(self) -> None:
        reasons: list[str] = []
        for name in ("min", "max", "step"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)):
                reasons.append(f"{name} must be a finite number or None, got {v!r}")
        if not reasons:
            if self.min is not None and self.max is not None and self.min > self.max:
                reasons.append(f"min ({self.min}) must not be above max ({self.max})")
            if self.step is not None and self.step <= 0:
                reasons.append(f"step must be above 0, got {self.step}")
        _done(self, reasons)


@dataclass(frozen=True)
class Label:
    """What a field is called on the page (any field), with an optional help line under it."""

    text: str
    help: str = ""

    def __post_init__(self) -> None:
        reasons: list[str] = []
        if not isinstance(self.text, str) or not self.text.strip():
            reasons.append(f"text must be a non-empty text, got {self.text!r}")
        if not isinstance(self.help, str):
            reasons.append(f"help must be a text, got {self.help!r}")
        _done(self, reasons)


Mark = Points | Polygon | Boxes | Choice | Text | Number | Label
INPUTS = (Points, Polygon, Boxes, Choice, Text, Number)
"""The annotations that say what input a field is (at most one per field); `Label` goes with any."""


def split(tp: Any) -> tuple[Any, tuple[Mark, ...]]:
    """The type under `Annotated` wrappers, and the annotations of this module on it (others ignored).

    >>> split(int)
    (<class 'int'>, ())
    """
    marks: list[Mark] = []
    while typing.get_origin(tp) is Annotated:
        tp, *extras = typing.get_args(tp)
        marks += [m for m in extras if isinstance(m, Mark)]
    return tp, tuple(marks)


def _fits(mark: Mark, tp: Any) -> str | None:
    """What `mark` annotates, if `tp` (Annotated wrappers removed) is not that; None if it fits."""
    if is_union(tp) and NoneType in union_members(tp):  # an optional field: the value's type
        rest = [m for m in union_members(tp) if m is not NoneType]
        tp = rest[0] if len(rest) == 1 else tp
    if isinstance(mark, Points | Polygon):
        return None if tp == list[POINT] else f"list[{type_name(POINT)}]"
    if isinstance(mark, Boxes):
        return None if tp == list[BOX] else f"list[{type_name(BOX)}]"
    if isinstance(mark, Choice | Text):
        return None if tp is str else "str"
    if isinstance(mark, Number):
        return None if tp in (int, float) else "int or float"
    return None


def problems(tp: Any, where: str = "") -> list[str]:
    """Annotations of this module that do not fit the type they annotate, on `tp` or on the fields of
    `tp` if it is a dataclass (one level: the fields are the form's inputs)."""
    found: list[str] = []
    prefix = f"{where}: " if where else ""
    base, marks = split(tp)
    if dataclasses.is_dataclass(base) and isinstance(base, type):
        try:
            hints = typing.get_type_hints(base, include_extras=True)
        except Exception as e:  # unresolved annotations: the codec says it better
            return [f"{prefix}cannot read the annotations of {type_name(base)} ({e})"]
        for f in dataclasses.fields(base):
            found += problems_of_field(hints.get(f.name, f.type), f"{prefix}{base.__name__}.{f.name}")
        marks = tuple(m for m in marks if not isinstance(m, Label))
        if marks:
            found.append(f"{prefix}{type(marks[0]).__name__} annotates a field, not the dataclass {type_name(base)}")
        return found
    return problems_of_field(tp, where)


def problems_of_field(tp: Any, where: str = "") -> list[str]:
    """Problems with the annotations of one input: wrong base type, two input annotations."""
    prefix = f"{where}: " if where else ""
    marks = list(split(tp)[1])
    if is_union(tp):  # Annotated inside an optional: `Annotated[str, Choice(...)] | None`
        for m in union_members(tp):
            marks += split(m)[1]
    found = []
    inputs = [m for m in marks if isinstance(m, INPUTS)]
    if len(inputs) > 1:
        found.append(f"{prefix}one input annotation per field, got {', '.join(type(m).__name__ for m in inputs)}")
    if len([m for m in marks if isinstance(m, Label)]) > 1:
        found.append(f"{prefix}one Label per field")
    for m in inputs:
        want = _fits(m, _strip(tp))
        if want is not None:
            found.append(f"{prefix}{type(m).__name__} annotates {want}, not {type_name(_strip(tp))}")
    return found


def _strip(tp: Any) -> Any:
    """`tp` without Annotated wrappers, also inside an optional (`Annotated[str, X] | None` → `str | None`)."""
    tp = split(tp)[0]
    if is_union(tp):
        members = tuple(split(m)[0] for m in union_members(tp))
        return typing.Union[members]  # noqa: UP007
    return tp
