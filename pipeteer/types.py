"""Small helpers over Python type annotations, shared by every layer.

`conforms(value, tp)` says whether a value may be stored as `tp`; `type_name(tp)`
spells a type the way users wrote it, for error messages.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import types
import typing
from typing import Any, Union, get_args, get_origin

NoneType = type(None)


def is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def union_members(tp: Any) -> tuple[Any, ...]:
    """The members of a union, or `(tp,)` for any other type."""
    return get_args(tp) if is_union(tp) else (tp,)


def type_name(tp: Any) -> str:
    if tp is None or tp is NoneType:
        return "None"
    if is_union(tp):
        return " | ".join(type_name(a) for a in get_args(tp))
    origin = get_origin(tp)
    if origin is not None:
        args = ", ".join(type_name(a) for a in get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp)


def conforms(value: Any, tp: Any) -> bool:
    """Whether `value` can be stored under the declared type `tp` (checked deeply for containers)."""
    if tp is Any or tp is typing.Any:
        return True
    if tp is None or tp is NoneType:
        return value is None
    if is_union(tp):
        return any(conforms(value, a) for a in get_args(tp))
    origin = get_origin(tp)
    if origin is typing.Literal:
        return value in get_args(tp)
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = get_args(tp) or (Any,)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    if origin in (dict, typing.Dict):  # noqa: UP006
        args = get_args(tp) or (str, Any)
        return isinstance(value, dict) and all(
            conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items()
        )
    if origin is tuple:
        return isinstance(value, tuple)
    if origin is not None:
        return isinstance(value, origin)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is bytes:
        return isinstance(value, (bytes, bytearray, memoryview))
    if tp is datetime.date:
        return isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def value_type_name(value: Any) -> str:
    return type_name(type(value))


def is_state_class(tp: Any) -> bool:
    """A user-defined class that can be a workflow state (routing is by these)."""
    return isinstance(tp, type) and (
        dataclasses.is_dataclass(tp)
        or not (tp.__module__ == "builtins" or issubclass(tp, (enum.Enum, decimal.Decimal, datetime.date)))
    )
