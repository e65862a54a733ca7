"""Small helpers over Python type annotations, shared by every layer.

`conforms(value, tp)` says whether a value may be stored as `tp`; `type_name(tp)`
spells a type the way users wrote it, for error messages.

What a value of a declared type is: a value the codec can store as that type (what SQLite and
Kafka hold), checked deeply, the same on every backend and in every check. An `int` is an int that
is not a bool, within Avro's 64-bit long; a `float` a float (NaN and infinities too) or such an int
that a 64-bit float can hold; a `bool` True or False; a `str` a str that UTF-8 can encode (no lone
surrogate); `bytes` bytes, a bytearray or a one-dimensional memoryview of bytes; a `datetime` a
timezone-aware one (its `utcoffset()` is not None); a `date` a date that is not a datetime; a
`UUID`, an `Enum` member, or an instance of any other class that is not a dataclass, an instance
of it (subclasses included); an `Annotated[Decimal, AvroDecimal(precision, scale)]` a finite Decimal
with at most `scale` digits after the point and `precision - scale` before it; a `list[X]` a list
of X (a list itself: fastavro writes no subclass); a `dict[str, X]` a dict of str keys and X
values; `X | Y` either, except that an int is the union's `int` when it has one, never its
`float`; a dataclass (a state class) an instance of it or of a subclass whose every field holds a
value of the field's declared type. `NewType` and `Annotated` metadata other than `AvroDecimal`
change nothing (the bounds of `pipeteer.annotate` are the console form's to check). Types the
codec has no schema for are checked here alone: `Any` takes anything, `Literal[...]` one of its
values (of its class: `True` is not `Literal[1]`), `tuple[...]` a tuple of those items. The codec
(`pipeteer.codec.check`) tests values with the predicates below and words its refusals;
`tests/unit/test_one_type_check.py` holds the two to one meaning.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import re
import types
import typing
import uuid
import zoneinfo
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pipeteer.errors import SchemaError

NoneType = type(None)

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
"""The range of Avro's long, which an `int` is stored as."""

DOUBLE_INT_LIMIT = 2**1024 - 2**970
"""Ints strictly between ±this convert to a 64-bit float; from it on, `float(n)` overflows."""

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class AvroDecimal:
    """Marks a `Decimal` with the precision and scale Avro's decimal logical type needs.

    >>> from typing import Annotated
    >>> from decimal import Decimal
    >>> Price = Annotated[Decimal, AvroDecimal(precision=12, scale=2)]
    >>> conforms(Decimal("1234.50"), Price), conforms(Decimal("0.125"), Price)
    (True, False)
    """

    precision: int
    scale: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.precision, int) and self.precision > 0):
            raise SchemaError(f"AvroDecimal precision must be a positive int, got {self.precision!r}")
        if not (isinstance(self.scale, int) and 0 <= self.scale <= self.precision):
            raise SchemaError(
                f"AvroDecimal scale must be an int between 0 and the precision ({self.precision}), got {self.scale!r}"
            )


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


def field_types(cls: type) -> dict[str, Any]:
    """The annotations of a dataclass, resolved (`Annotated` kept) as its class body sees them: its
    own names (nested classes) and itself, so that a class defined inside a function can still refer
    to itself (`next: "Node | None"`). Raises what `typing.get_type_hints` raises when one does not
    resolve."""
    localns = {**vars(cls), cls.__name__: cls}
    return typing.get_type_hints(cls, localns=localns, include_extras=True)


def decimal_mark(tp: Any) -> tuple[Any, AvroDecimal | None]:
    """Of an `Annotated[...]` type: its base type and its `AvroDecimal` mark, if it has one
    (`Annotated[Decimal, AvroDecimal(9, 2)]` → `(Decimal, AvroDecimal(9, 2))`)."""
    base, *extras = get_args(tp)
    marks = [m for m in extras if isinstance(m, AvroDecimal)]
    return base, (marks[0] if marks else None)


# ------------------------------------------------------------------------------------- the values


def fits_long(value: Any) -> bool:
    """An int (not a bool) within Avro's long."""
    return isinstance(value, int) and not isinstance(value, bool) and LONG_MIN <= value <= LONG_MAX


def fits_double(value: Any) -> bool:
    """A float, or an int (not a bool) that a 64-bit float can hold."""
    if isinstance(value, float):
        return True
    return isinstance(value, int) and not isinstance(value, bool) and -DOUBLE_INT_LIMIT < value < DOUBLE_INT_LIMIT


_SURROGATE = re.compile("[\ud800-\udfff]")


def is_utf8_text(value: Any) -> bool:
    """A str that UTF-8 can encode: one with no lone surrogate (as `os.fsdecode` leaves for
    undecodable bytes). `isascii()` answers most strings at once, without reading them."""
    return isinstance(value, str) and (value.isascii() or _SURROGATE.search(value) is None)


def is_bytes_like(value: Any) -> bool:
    """bytes, a bytearray, or a one-dimensional memoryview of bytes (not of ints or floats)."""
    if isinstance(value, bytes | bytearray):
        return True
    return isinstance(value, memoryview) and value.ndim == 1 and value.format in ("B", "c")


def is_aware(value: Any) -> bool:
    """A timezone-aware datetime (a naive one means a different instant on every machine)."""
    return isinstance(value, datetime.datetime) and value.utcoffset() is not None


def is_date(value: Any) -> bool:
    """A date that is not a datetime (which is a subclass of date)."""
    return isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)


def decimal_fits(value: Any, precision: int, scale: int) -> str | None:
    """None if `value` is a finite Decimal of at most `scale` digits after the point and
    `precision - scale` before it; else what is wrong ("not a finite Decimal", "too many digits")."""
    if not isinstance(value, decimal.Decimal) or not value.is_finite():
        return "not a finite Decimal"
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # pragma: no cover - only NaN and infinities have a str exponent
        return "not a finite Decimal"
    if exponent < 0:
        after, before = -exponent, max(0, len(digits) + exponent)
    else:
        after, before = 0, len(digits) + exponent
    if not value:  # 0.000 has no digit before the point, whatever its exponent
        before = 0
    if after > scale or before > precision - scale:
        return "too many digits"
    return None


# ------------------------------------------------------------------------------------- the checks


def conforms(value: Any, tp: Any) -> bool:
    """Whether `value` can be stored under the declared type `tp` (checked deeply: see the module's
    docstring for what a value of each type is).

    >>> conforms([1, 2], list[int]), conforms([1, True], list[int])
    (True, False)
    """
    return checker(tp)(value)


def checker(tp: Any) -> Check:
    """`conforms(·, tp)` as one function, made once per type: the hot paths (every push and move)
    keep it, instead of walking the annotation for each value."""
    try:
        return _cached_checker(tp)
    except TypeError:  # an unhashable annotation: not cached
        return _Builder().check(tp)


@functools.lru_cache(maxsize=1024)
def _cached_checker(tp: Any) -> Check:
    return _Builder().check(tp)


class _Builder:
    """Makes the check of one type, and of the types inside it. Each check tests the commonest
    exact class first (`value.__class__ is int`, no MRO walk), then the precise rule for the rest
    (subclasses, bounds). A dataclass's check is generated source, like the codec's encoder: one
    straight-line test per field."""

    def __init__(self) -> None:
        self.records: dict[type, Check] = {}  # made, or being made (recursive dataclasses)

    def check(self, tp: Any) -> Check:
        if tp is Any or tp is object:
            return _always
        if tp is None or tp is NoneType:
            return _is_none
        if isinstance(tp, typing.NewType):
            return self.check(tp.__supertype__)
        origin = get_origin(tp)
        if origin is typing.Annotated:
            base, mark = decimal_mark(tp)
            return self.check(base) if mark is None or base is not decimal.Decimal else _decimal(mark)
        if origin in (Union, types.UnionType):
            members = get_args(tp)
            if any(_plain(m) is int for m in members):  # an int is the union's int, never its float
                return _any_of(tuple(_is_float_not_int if _plain(m) is float else self.check(m) for m in members))
            return _any_of(tuple(self.check(m) for m in members))
        if origin is typing.Literal:
            return _literal(get_args(tp))
        if origin is list:
            return self._list(*(get_args(tp) or (Any,)))
        if origin is dict:
            return self._dict(*(get_args(tp) or (Any, Any)))
        if origin is tuple:
            return self._tuple(get_args(tp))
        if origin is not None:
            return _instance_of(origin)
        if not isinstance(tp, type):
            return _always  # not a type (a TypeVar, a string): nothing to hold a value to
        simple = _SIMPLE.get(tp)
        if simple is not None:
            return simple
        if dataclasses.is_dataclass(tp):
            return self._record(tp)
        return _instance_of(tp)

    def _list(self, item_tp: Any) -> Check:
        items = self._all(item_tp)
        return lambda value: value.__class__ is list and items(value)  # fastavro writes no list subclass

    def _dict(self, key_tp: Any, value_tp: Any) -> Check:
        keys, values = self._all(key_tp), self._all(value_tp)
        return lambda value: (
            (value.__class__ is dict or isinstance(value, dict)) and keys(value) and values(value.values())
        )

    def _tuple(self, args: tuple[Any, ...]) -> Check:
        if not args:  # bare `tuple`
            return _instance_of(tuple)
        if len(args) == 2 and args[1] is Ellipsis:
            items = self._all(args[0])
            return lambda value: isinstance(value, tuple) and items(value)
        each = tuple(self.check(a) for a in args)
        n = len(each)
        return lambda value: (
            isinstance(value, tuple) and len(value) == n and all(ok(x) for ok, x in zip(each, value, strict=True))
        )

    def _all(self, tp: Any) -> Callable[[Collection[Any]], bool]:
        """Whether every item of a collection is a value of `tp`. `map(type, items)` and friends run
        in C: a collection of plain items is answered without a Python call per item."""
        item = self.check(tp)
        plain = _plain(tp)
        if plain is int:
            return lambda xs: (
                _INT.issuperset(map(type, xs)) and (not xs or (LONG_MIN <= min(xs) and max(xs) <= LONG_MAX))
            ) or all(map(item, xs))
        if plain is str:
            return lambda xs: (_STR.issuperset(map(type, xs)) and all(map(str.isascii, xs))) or all(map(item, xs))
        settled = _settled_by_class(plain)
        if settled:
            return lambda xs: settled.issuperset(map(type, xs)) or all(map(item, xs))
        return lambda xs: all(map(item, xs))

    def _record(self, cls: type) -> Check:
        known = self.records.get(cls)
        if known is not None:
            return known
        try:
            hints = field_types(cls)
        except Exception:  # annotations that do not resolve (the codec refuses such a class too)
            return _instance_of(cls)
        cell: list[Check] = []
        self.records[cls] = lambda value: cell[0](value)  # fields of the class's own type refer back
        env: dict[str, Any] = {
            "cls": cls, "LONG_MIN": LONG_MIN, "LONG_MAX": LONG_MAX, "datetime": datetime.datetime, "ZONES": _ZONES
        }
        body = []
        for i, f in enumerate(dataclasses.fields(cls)):
            tp = hints.get(f.name, f.type)
            env[f"ok{i}"] = self.check(tp)
            quick = _inline(tp, f"x{i}")
            test = f"{quick} or ok{i}(x{i})" if quick else f"ok{i}(x{i})"
            body += [f"        x{i} = value.{f.name}", f"        if not ({test}):", "            return False"]
        lines = [
            "def check(value):",
            "    if value.__class__ is not cls and not isinstance(value, cls):",
            "        return False",
            "    try:",
            *(body or ["        pass"]),
            "    except AttributeError:  # a field never set (init=False without a default)",
            "        return False",
            "    return True",
        ]
        exec(compile("\n".join(lines), f"<pipeteer check of {cls.__qualname__}>", "exec"), env)
        check: Check = env["check"]
        cell.append(check)
        self.records[cls] = check
        return check


def _always(value: Any) -> bool:
    return True


def _is_none(value: Any) -> bool:
    return value is None


def _instance_of(cls: type) -> Check:
    return lambda value: value.__class__ is cls or isinstance(value, cls)


def _is_int(value: Any) -> bool:
    if value.__class__ is int:
        return LONG_MIN <= value <= LONG_MAX
    return fits_long(value)


def _is_float(value: Any) -> bool:
    return value.__class__ is float or fits_double(value)


def _is_float_not_int(value: Any) -> bool:
    return value.__class__ is float or isinstance(value, float)


def _is_bool(value: Any) -> bool:
    return value is True or value is False


def _is_str(value: Any) -> bool:
    return (value.__class__ is str and value.isascii()) or is_utf8_text(value)


def _is_bytes(value: Any) -> bool:
    return value.__class__ is bytes or is_bytes_like(value)


_ZONES = frozenset({datetime.timezone, zoneinfo.ZoneInfo})
"""tzinfo classes that always give an offset: a datetime with one is aware without asking it (a
`utcoffset()` call makes a timedelta)."""


def _is_datetime(value: Any) -> bool:
    return (value.__class__ is datetime.datetime and value.tzinfo.__class__ in _ZONES) or is_aware(value)


def _is_date(value: Any) -> bool:
    return value.__class__ is datetime.date or is_date(value)


_SIMPLE: dict[Any, Check] = {
    int: _is_int,
    float: _is_float,
    bool: _is_bool,
    str: _is_str,
    bytes: _is_bytes,
    datetime.datetime: _is_datetime,
    datetime.date: _is_date,
}


def _decimal(mark: AvroDecimal) -> Check:
    precision, scale = mark.precision, mark.scale
    return lambda value: decimal_fits(value, precision, scale) is None


def _any_of(members: tuple[Check, ...]) -> Check:
    if _is_none in members and len(members) > 1:  # `X | None`: None first, it is one test
        rest = _any_of(tuple(m for m in members if m is not _is_none))
        return lambda value: value is None or rest(value)
    if len(members) == 1:
        return members[0]
    if len(members) == 2:
        first, second = members
        return lambda value: first(value) or second(value)

    def any_of(value: Any) -> bool:
        for check in members:
            if check(value):
                return True
        return False

    return any_of


def _literal(allowed: tuple[Any, ...]) -> Check:
    # Of the same class, not only equal: True == 1 and 1.0 == 1, but neither is Literal[1].
    return lambda value: any(value.__class__ is a.__class__ and value == a for a in allowed)


_INT, _STR = frozenset({int}), frozenset({str})


def _settled_by_class(tp: Any) -> frozenset[type]:
    """Classes whose every instance is a value of `tp` (so a list of them needs no call per item)."""
    tp = _plain(tp)
    if tp is None or tp is NoneType:
        return frozenset({NoneType})
    if is_union(tp):
        return frozenset().union(*(_settled_by_class(m) for m in get_args(tp)))
    if tp is bytes:
        return frozenset({bytes, bytearray})
    if tp in (float, bool, datetime.date, uuid.UUID) or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return frozenset({tp})
    return frozenset()  # int (a range), str (surrogates), datetime (aware), records (fields)...


_INLINE: dict[Any, str] = {
    int: "({x}.__class__ is int and LONG_MIN <= {x} <= LONG_MAX)",
    float: "{x}.__class__ is float",
    bool: "{x}.__class__ is bool",
    str: "({x}.__class__ is str and {x}.isascii())",
    datetime.datetime: "({x}.__class__ is datetime and {x}.tzinfo.__class__ in ZONES)",
    bytes: "{x}.__class__ is bytes",
    NoneType: "{x} is None",
    None: "{x} is None",
}


def _plain(tp: Any) -> Any:
    """`tp` without what does not change its values: `Annotated` metadata (but `AvroDecimal`) and `NewType`."""
    while True:
        if isinstance(tp, typing.NewType):
            tp = tp.__supertype__
        elif get_origin(tp) is typing.Annotated and decimal_mark(tp)[1] is None:
            tp = get_args(tp)[0]
        else:
            return tp


def _inline(tp: Any, x: str) -> str | None:
    """An expression, true for the commonest values of `tp`, that a dataclass's generated check
    tests before calling the full check of the field."""
    tp = _plain(tp)
    if is_union(tp):
        parts = [_inline(m, x) for m in get_args(tp)]
        return None if None in parts else "(" + " or ".join(typing.cast(list[str], parts)) + ")"
    try:
        template = _INLINE.get(tp)
    except TypeError:  # unhashable
        return None
    return None if template is None else template.format(x=x)


def is_state_class(tp: Any) -> bool:
    """A user-defined class that can be a workflow state (routing is by these)."""
    return isinstance(tp, type) and (
        dataclasses.is_dataclass(tp)
        or not (tp.__module__ == "builtins" or issubclass(tp, (enum.Enum, decimal.Decimal, datetime.date)))
    )
