"""What the console shows of a task, and the actions it offers, derived from the stage's types.

- A task is its state: each field shown by its type (an image as an image, other bytes as a
  size, text and numbers as text, nested values as JSON).
- The actions come from what the stage's inner `Qout` takes: `bool` → approve / reject;
  `bytes` → a file upload; a dataclass → a form with one input per field; `str`, `int`,
  `float` → one input; anything else → JSON, checked against the type.
- `build(tp, data)` turns what a form sent (JSON) into a value of `tp`, strictly: `"10"` is
  not an int, `"yes"` is not a bool. Errors name the field.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

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


def show(value: Any, name: str = "value") -> list[Shown]:
    """The fields of a state, in declaration order (a value that is not a dataclass is one field)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [s for f in dataclasses.fields(value) for s in _show_field(f.name, getattr(value, f.name))]
    return _show_field(name, value)


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
    """One input of a form: `kind` is 'text', 'number', 'integer', 'checkbox', 'select', 'file' or 'json'."""

    name: str
    kind: str
    optional: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Actions:
    """What a reviewer can send: 'decide' (approve/reject), 'upload' (a file) or 'form' (inputs)."""

    kind: str
    type_name: str
    inputs: tuple[Input, ...] = ()
    single: bool = False  # one input named 'value' that is the value itself, not a field of it


def actions_for(tp: Any) -> Actions:
    if tp is bool:
        return Actions("decide", "bool")
    if tp is bytes:
        return Actions("upload", "bytes")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        return Actions("form", type_name(tp), tuple(_input(f.name, hints[f.name]) for f in dataclasses.fields(tp)))
    return Actions("form", type_name(tp), (_input("value", tp),), single=True)


def _input(name: str, tp: Any) -> Input:
    optional = False
    if is_union(tp) and type(None) in union_members(tp):
        rest = [m for m in union_members(tp) if m is not type(None)]
        optional = True
        tp = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
    if tp is bool:
        return Input(name, "checkbox", optional)
    if tp is int:
        return Input(name, "integer", optional)
    if tp is float:
        return Input(name, "number", optional)
    if tp is str:
        return Input(name, "text", optional)
    if tp is bytes:
        return Input(name, "file", optional)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return Input(name, "select", optional, tuple(str(m.value) for m in tp))
    return Input(name, "json", optional)


def build(tp: Any, data: Any, where: str = "value") -> Any:
    """A value of type `tp` from JSON data, strictly (bytes come as base64 text); FormError if it does not fit."""
    value = _build(tp, data, where)
    if not checker(tp)(value):
        raise FormError(f"{where}: {json.dumps(data)[:80]} is not a {type_name(tp)}")
    return value


def _build(tp: Any, data: Any, where: str) -> Any:
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
        hints = typing.get_type_hints(tp)
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
    if origin in (list, tuple, set, frozenset) and isinstance(data, list):
        items = [build(args[0] if args else Any, x, f"{where}[{i}]") for i, x in enumerate(data)]
        return items if origin is list else origin(items)
    if origin is dict and isinstance(data, dict):
        return {k: build(args[1] if len(args) == 2 else Any, v, f"{where}.{k}") for k, v in data.items()}
    if isinstance(tp, types.GenericAlias | type):
        raise FormError(f"{where}: must be a {type_name(tp)}, not {json.dumps(data)[:40]}")
    raise FormError(f"{where}: values of type {type_name(tp)} cannot be entered in a form")
