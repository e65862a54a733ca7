"""What the console shows of a task, and the actions it offers, derived from the stage's types.

- A task is its state: each field shown by its type (an image as an image, other bytes as a
  size, text and numbers as text, nested values as JSON).
- The actions come from what the stage's inner `Qout` takes: `bool` → approve / reject;
  `bytes` → a file upload; a dataclass → a form with one input per field; `str`, `int`,
  `float` → one input; anything else → JSON, checked against the type.
- Annotations of `pipeteer.annotate` on that type or its fields say more: points, a polygon or
  boxes drawn on an image of the task (the actions are then 'annotate'; `image_field` says
  which image), a choice, a text area, a bounded number, a label and help line.
- `build(tp, data)` turns what a form sent (JSON) into a value of `tp`, strictly: `"10"` is
  not an int, `"yes"` is not a bool; the annotations' bounds hold. Errors name the field.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import functools
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from pipeteer import annotate
from pipeteer.runtime.media import image_type
from pipeteer.types import checker, is_union, type_name, union_members

TEXT_LIMIT = 2000


class FormError(ValueError):
    """A submitted value does not fit the stage's output type; says which field and why."""


@dataclass(frozen=True)
class Shown:
    """One field of a task as the page shows it: `kind` is 'image', 'bytes' or 'text'."""

    name: str
    kind: str
    text: str = ""
    size: int = 0
    label: str = ""
    """From a `pipeteer.annotate.Label` on the state's field ("": show the name)."""
    help: str = ""


def show(value: Any, name: str = "value") -> list[Shown]:
    """The fields of a state, in declaration order (a value that is not a dataclass is one field), each
    with the label its state class gives it (`Annotated[bytes, Label("Photo as taken")]`)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        labels = field_labels(type(value))
        return [dataclasses.replace(s, label=labels[f.name]["label"], help=labels[f.name]["help"]) if f.name in labels else s
                for f in dataclasses.fields(value) for s in _show_field(f.name, getattr(value, f.name))]
    return _show_field(name, value)


@functools.cache
def field_labels(tp: type) -> dict[str, dict[str, str]]:
    """`Label`s on the fields of a state class: name -> {label, help} (`img: Annotated[bytes, Label("Photo")]`)."""
    try:
        hints = typing.get_type_hints(tp, include_extras=True)
    except (NameError, TypeError):  # (a class whose annotations cannot be resolved here: no labels)
        return {}
    out = {}
    for name, hint in hints.items():
        for mark in annotate.split(hint)[1]:
            if isinstance(mark, annotate.Label):
                out[name] = {"label": mark.text, "help": mark.help}
    return out


def _show_field(name: str, v: Any) -> list[Shown]:
    if isinstance(v, bytes):
        return [Shown(name, "image" if image_type(v) else "bytes", size=len(v))]
    if isinstance(v, str):
        text = v
    elif isinstance(v, enum.Enum):
        text = str(v.value)
    elif isinstance(v, bool | int | float) or v is None:
        text = json.dumps(v)
    else:
        text = json.dumps(_jsonable(v), ensure_ascii=False)
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + f"… ({len(text)} characters)"
    return [Shown(name, "text", text=text)]


def field_bytes(value: Any, name: str) -> bytes | None:
    """The bytes of field `name` of a state (or the state itself, for `value`)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        v = getattr(value, name, None) if name in {f.name for f in dataclasses.fields(value)} else None
    else:
        v = value if name == "value" else None
    return v if isinstance(v, bytes) else None


def _jsonable(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [_jsonable(x) for x in v]
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v)


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """One input of a form. `kind` is 'text', 'textarea', 'number', 'integer', 'checkbox', 'select',
    'file', 'json', or one drawn on an image: 'points', 'polygon', 'boxes' (see `pipeteer.annotate`).

    `label` / `help` come from `Label` ("": show the name); `on` names the image field of the task's
    state to draw on (None: its first image, see `image_field`); `n` is the exact number of points
    or boxes (None: any), `point_labels` names them in order, `min_points` is a polygon's least
    number of corners; `minimum` / `maximum` / `step` bound a number; `multiline` / `max_length`
    shape a text.
    """

    name: str
    kind: str
    optional: bool = False
    choices: tuple[str, ...] = ()
    label: str = ""
    help: str = ""
    on: str | None = None
    n: int | None = None
    point_labels: tuple[str, ...] = ()
    min_points: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    multiline: bool = False
    max_length: int | None = None


DRAWN = frozenset({"points", "polygon", "boxes"})
"""Input kinds drawn on an image of the task."""


@dataclass(frozen=True)
class Actions:
    """What a reviewer can send: 'decide' (approve/reject), 'upload' (a file), 'form' (inputs) or
    'annotate' (inputs, at least one of them drawn on an image: points, a polygon, boxes)."""

    kind: str
    type_name: str
    inputs: tuple[Input, ...] = ()
    single: bool = False  # one input named 'value' that is the value itself, not a field of it


def actions_for(tp: Any) -> Actions:
    """The actions for a stage whose inner `Qout` takes `tp`; FormError if an annotation does not fit.

    >>> from typing import Annotated
    >>> from pipeteer.annotate import Points
    >>> a = actions_for(Annotated[list[tuple[float, float]], Points(2, labels=("from", "to"))])
    >>> a.kind, a.single, a.inputs[0].kind, a.inputs[0].n, a.inputs[0].point_labels
    ('annotate', True, 'points', 2, ('from', 'to'))
    """
    if reasons := annotate.problems(tp):
        raise FormError("; ".join(reasons))
    base = annotate.split(tp)[0]
    if base is bool:
        return Actions("decide", "bool")
    if base is bytes:
        return Actions("upload", "bytes")
    if dataclasses.is_dataclass(base) and isinstance(base, type):
        hints = typing.get_type_hints(base, include_extras=True)
        inputs = tuple(_input(f.name, hints[f.name]) for f in dataclasses.fields(base))
        single = False
    else:
        inputs, single = (_input("value", tp),), True
    kind = "annotate" if any(i.kind in DRAWN for i in inputs) else "form"
    return Actions(kind, type_name(base), inputs, single=single)


def _unwrap(tp: Any) -> tuple[Any, bool, tuple[annotate.Mark, ...]]:
    """The type of one input without Annotated wrappers or None, whether None is allowed, its marks."""
    tp, marks = annotate.split(tp)
    optional = False
    if is_union(tp) and type(None) in union_members(tp):
        rest = [m for m in union_members(tp) if m is not type(None)]
        optional = True
        tp = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
        tp, more = annotate.split(tp)
        marks += more
    return tp, optional, marks


def _input(name: str, tp: Any) -> Input:
    tp, optional, marks = _unwrap(tp)
    named: dict[str, Any] = {}
    for m in marks:
        if isinstance(m, annotate.Label):
            named.update(label=m.text, help=m.help)
    for m in marks:
        if isinstance(m, annotate.Points):
            return Input(name, "points", optional, on=m.on, n=m.n, point_labels=m.labels, **named)
        if isinstance(m, annotate.Polygon):
            return Input(name, "polygon", optional, on=m.on, min_points=m.min_points, **named)
        if isinstance(m, annotate.Boxes):
            return Input(name, "boxes", optional, on=m.on, n=m.n, point_labels=m.labels, **named)
        if isinstance(m, annotate.Choice):
            return Input(name, "select", optional, m.options, **named)
        if isinstance(m, annotate.Text):
            kind = "textarea" if m.multiline else "text"
            return Input(name, kind, optional, multiline=m.multiline, max_length=m.max_length, **named)
        if isinstance(m, annotate.Number):
            kind = "integer" if tp is int else "number"
            return Input(name, kind, optional, minimum=m.min, maximum=m.max, step=m.step, **named)
    if tp is bool:
        return Input(name, "checkbox", optional, **named)
    if tp is int:
        return Input(name, "integer", optional, **named)
    if tp is float:
        return Input(name, "number", optional, **named)
    if tp is str:
        return Input(name, "text", optional, **named)
    if tp is bytes:
        return Input(name, "file", optional, **named)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return Input(name, "select", optional, tuple(str(m.value) for m in tp), **named)
    return Input(name, "json", optional, **named)


def image_field(state: Any, on: str | None) -> str | None:
    """The field of the task's `state` an annotation draws on: `on`, checked to be an image (bytes)
    field of the state, or (`on` None) its first image field; None if it has none. FormError if `on`
    names no bytes field. A state that is not a dataclass is one field, 'value'.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Task:
    ...     name: str
    ...     img: bytes
    >>> png = b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8)
    >>> image_field(Task("a", png), None), image_field(Task("a", png), "img")
    ('img', 'img')
    >>> image_field(Task("a", png), "name")
    Traceback (most recent call last):
      ...
    pipeteer.runtime.console.forms.FormError: the image to draw on, 'name', is not an image field of Task (image fields: img)
    """
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
        what = type(state).__qualname__
    else:
        fields, what = {"value": state}, "the task's state"
    images = [k for k, v in fields.items() if isinstance(v, bytes) and image_type(v)]
    if on is None:
        return images[0] if images else None
    if not isinstance(fields.get(on), bytes):
        listed = ", ".join(images) or "none"
        raise FormError(f"the image to draw on, {on!r}, is not an image field of {what} (image fields: {listed})")
    return on


def build(tp: Any, data: Any, where: str = "value") -> Any:
    """A value of type `tp` from JSON data, strictly (bytes come as base64 text); FormError if it does not fit.

    Annotations of `pipeteer.annotate` are checked too: points come as `[[x, y], ...]` (image
    pixels, finite and not negative) and become a list of `(x, y)` float tuples:

    >>> from typing import Annotated
    >>> from pipeteer.annotate import Points
    >>> build(Annotated[list[tuple[float, float]], Points(2)], [[1, 2], [3.5, 4]], "ends")
    [(1.0, 2.0), (3.5, 4.0)]
    >>> build(Annotated[list[tuple[float, float]], Points(2)], [[1, 2]], "ends")
    Traceback (most recent call last):
      ...
    pipeteer.runtime.console.forms.FormError: ends: needs 2 points, got 1
    """
    value = _build(tp, data, where)
    if not checker(tp)(value):
        raise FormError(f"{where}: {json.dumps(data)[:80]} is not a {type_name(tp)}")
    return value


def _build(tp: Any, data: Any, where: str) -> Any:
    if typing.get_origin(tp) is typing.Annotated:
        base, marks = annotate.split(tp)
        drawn = [m for m in marks if isinstance(m, annotate.Points | annotate.Polygon | annotate.Boxes)]
        if drawn and not (data is None and is_union(base) and type(None) in union_members(base)):
            return _drawn(drawn[0], data, where)
        value = build(base, data, where)
        for mark in marks:
            _check_mark(mark, value, where)
        return value
    if tp is Any:
        return data
    if is_union(tp):
        members = union_members(tp)
        if data is None and type(None) in members:
            return None
        problems = []
        for m in members:
            if m is type(None):
                continue
            try:
                return build(m, data, where)
            except FormError as e:
                problems.append(str(e))
        raise FormError(problems[0] if len(problems) == 1 else f"{where}: fits none of {type_name(tp)}")
    if tp is type(None):
        if data is not None:
            raise FormError(f"{where}: must be empty")
        return None
    if tp is bool:
        if not isinstance(data, bool):
            raise FormError(f"{where}: must be true or false, not {json.dumps(data)[:40]}")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise FormError(f"{where}: must be a whole number, not {json.dumps(data)[:40]}")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise FormError(f"{where}: must be a number, not {json.dumps(data)[:40]}")
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise FormError(f"{where}: must be text, not {json.dumps(data)[:40]}")
        return data
    if tp is bytes:
        if not isinstance(data, str):
            raise FormError(f"{where}: must be a file (base64 text)")
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            raise FormError(f"{where}: is not valid base64") from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for m in tp:
            if str(m.value) == data or m.value == data:
                return m
        raise FormError(f"{where}: must be one of {', '.join(str(m.value) for m in tp)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, dict):
            raise FormError(f"{where}: must be an object with fields {', '.join(f.name for f in dataclasses.fields(tp))}")
        hints = typing.get_type_hints(tp, include_extras=True)
        names = {f.name for f in dataclasses.fields(tp)}
        if unknown := sorted(set(data) - names):
            raise FormError(f"{where}: unknown field(s) {', '.join(unknown)}")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = build(hints[f.name], data[f.name], f"{where}.{f.name}" if where != "value" else f.name)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise FormError(f"{f.name}: is required")
        return tp(**kwargs)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple and isinstance(data, list) and args and args[-1] is not Ellipsis:
        if len(data) != len(args):
            raise FormError(f"{where}: must be a list of {len(args)} values, got {len(data)}")
        return tuple(build(a, x, f"{where}[{i}]") for i, (a, x) in enumerate(zip(args, data, strict=True)))
    if origin in (list, tuple, set, frozenset) and isinstance(data, list):
        items = [build(args[0] if args else Any, x, f"{where}[{i}]") for i, x in enumerate(data)]
        return items if origin is list else origin(items)
    if origin is dict and isinstance(data, dict):
        return {k: build(args[1] if len(args) == 2 else Any, v, f"{where}.{k}") for k, v in data.items()}
    if isinstance(tp, types.GenericAlias | type):
        raise FormError(f"{where}: must be a {type_name(tp)}, not {json.dumps(data)[:40]}")
    raise FormError(f"{where}: values of type {type_name(tp)} cannot be entered in a form")


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _drawn(mark: annotate.Points | annotate.Polygon | annotate.Boxes, data: Any, where: str) -> list[Any]:
    """Points or boxes from `[[x, y], ...]` / `[[x0, y0, x1, y1], ...]`, in image pixels."""
    boxes = isinstance(mark, annotate.Boxes)
    what, size, shape = ("box", 4, "[x0, y0, x1, y1]") if boxes else ("point", 2, "[x, y]")
    if not isinstance(data, list):
        raise FormError(f"{where}: must be a list of {shape}, not {json.dumps(data)[:40]}")
    n = mark.min_points if isinstance(mark, annotate.Polygon) else mark.n
    if isinstance(mark, annotate.Polygon):
        if len(data) < mark.min_points:
            raise FormError(f"{where}: needs at least {mark.min_points} points, got {len(data)}")
    elif n is not None and len(data) != n:
        raise FormError(f"{where}: needs {n} {what}{'es' if boxes else 's'}, got {len(data)}")
    out = []
    for i, item in enumerate(data):
        at = f"{where}[{i}]"
        if not (isinstance(item, list) and len(item) == size and all(_number(x) for x in item)):
            raise FormError(f"{at}: must be {shape}, numbers, not {json.dumps(item)[:40]}")
        if any(x < 0 for x in item):
            raise FormError(f"{at}: image pixels are not negative, got {json.dumps(item)}")
        if boxes and not (item[0] < item[2] and item[1] < item[3]):
            raise FormError(f"{at}: a box needs x0 < x1 and y0 < y1, got {json.dumps(item)}")
        out.append(tuple(float(x) for x in item))
    return out


def _check_mark(mark: annotate.Mark, value: Any, where: str) -> None:
    """A built value against a Choice, Text or Number annotation (None passes: the type allowed it)."""
    if value is None:
        return
    if isinstance(mark, annotate.Choice) and value not in mark.options:
        raise FormError(f"{where}: must be one of {', '.join(mark.options)}")
    if isinstance(mark, annotate.Text) and mark.max_length is not None and len(value) > mark.max_length:
        raise FormError(f"{where}: at most {mark.max_length} characters, got {len(value)}")
    if isinstance(mark, annotate.Number):
        if not math.isfinite(value):
            raise FormError(f"{where}: must be a finite number")
        if mark.min is not None and value < mark.min:
            raise FormError(f"{where}: must be at least {mark.min:g}, got {value:g}")
        if mark.max is not None and value > mark.max:
            raise FormError(f"{where}: must be at most {mark.max:g}, got {value:g}")
