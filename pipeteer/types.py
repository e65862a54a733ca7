"""Small helpers over Python type annotations, shared by every layer.

`conforms(value, tp)` says whether a value may be stored as `tp`; `type_name(tp)`
spells a type the way users wrote it, for error messages.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import types
import typing
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin

NoneType = type(None)


def is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def union_members(tp: Any) -> tuple[Any, ...]:
    """The members of a union, or `(tp,)` for any other type."""
    return get_args(tp) if is_union(tp) else (tp,)


def type_name(tp: Any) -> str:
    if get_origin(tp) is typing.Annotated:  # metadata (AvroDecimal, pipeteer.annotate) is not the type
        return type_name(get_args(tp)[0])
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
    return checker(tp)(value)


def checker(tp: Any) -> Callable[[Any], bool]:
    """`conforms(·, tp)` as one function, made once per type: the hot paths (every push and move)
    keep it, instead of walking the annotation for each value."""
    try:
        return _cached_checker(tp)
    except TypeError:  # an unhashable annotation: not cached
        return _checker(tp)


@functools.lru_cache(maxsize=1024)
def _cached_checker(tp: Any) -> Callable[[Any], bool]:
    return _checker(tp)


def _checker(tp: Any) -> Callable[[Any], bool]:
    if tp is Any or tp is typing.Any:
        return _always
    if tp is None or tp is NoneType:
        return _is_none
    if get_origin(tp) is typing.Annotated:  # metadata does not change what the value is
        return _checker(get_args(tp)[0])
    if is_union(tp):
        members = tuple(_checker(a) for a in get_args(tp))
        return lambda value: any(check(value) for check in members)
    origin = get_origin(tp)
    if origin is typing.Literal:
        allowed = get_args(tp)
        return lambda value: value in allowed
    if origin in (list, typing.List):  # noqa: UP006
        (item_tp,) = get_args(tp) or (Any,)
        item = _checker(item_tp)
        return lambda value: isinstance(value, list) and all(item(v) for v in value)
    if origin in (dict, typing.Dict):  # noqa: UP006
        args = get_args(tp) or (str, Any)
        key, val = _checker(args[0]), _checker(args[1])
        return lambda value: isinstance(value, dict) and all(key(k) and val(v) for k, v in value.items())
    if origin is tuple:
        return lambda value: isinstance(value, tuple)
    if origin is not None:
        return lambda value: isinstance(value, origin)
    if tp is float:
        return lambda value: type(value) is float or (isinstance(value, (int, float)) and not isinstance(value, bool))
    if tp is int:
        return lambda value: type(value) is int or (isinstance(value, int) and not isinstance(value, bool))
    if tp is bytes:
        return lambda value: isinstance(value, (bytes, bytearray, memoryview))
    if tp is datetime.date:
        return lambda value: isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)
    if isinstance(tp, type):
        return lambda value: type(value) is tp or isinstance(value, tp)
    return _always


def _always(value: Any) -> bool:
    return True


def _is_none(value: Any) -> bool:
    return value is None


def value_type_name(value: Any) -> str:
    return type_name(type(value))


def is_state_class(tp: Any) -> bool:
    """A user-defined class that can be a workflow state (routing is by these)."""
    return isinstance(tp, type) and (
        dataclasses.is_dataclass(tp)
        or not (tp.__module__ == "builtins" or issubclass(tp, (enum.Enum, decimal.Decimal, datetime.date)))
    )
