"""Slow, precise value checks: which value does not fit which node, and where.

The converters check types with fast exact-class tests; when one fails (or fastavro
rejects a value), this module walks the value once more to say precisely what is
wrong: `Input.items[3].name: expected str, found int 7`. It is also how field
defaults are validated when a schema is derived.

What a value of each type is, is written once, in `pipeteer.types` (its module docstring):
the primitive and logical values are tested with its predicates (`fits_long`, `is_aware`,
`decimal_fits`, ...), so that a queue's `conforms` check on push and the codec accept the
same values (`tests/unit/test_one_type_check.py` holds them to it).
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

from pipeteer.codec.nodes import (
    ArrayNode,
    EnumNode,
    LogicalNode,
    MapNode,
    Node,
    PrimNode,
    RecordNode,
    UnionNode,
)
from pipeteer.types import (
    decimal_fits,
    fits_double,
    fits_long,
    is_aware,
    is_bytes_like,
    is_date,
    is_utf8_text,
    type_name,
)


def python_name(node: Node) -> str:
    """The Python spelling of what `node` accepts, for messages."""
    if isinstance(node, LogicalNode) and node.logical == "timestamp-micros":
        return "datetime (timezone-aware)"
    if isinstance(node, LogicalNode) and node.logical == "decimal":
        return f"Decimal (precision {node.precision}, scale {node.scale})"
    return type_name(node.tp)


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # e.g. a dataclass with a field never set: its repr fails, the message must not
        text = f"<{type_name(type(value))} object>"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type_name(type(value))} {text}"


def accepts(node: Node, value: Any) -> bool:
    """Whether `value` can be encoded as `node` (checked deeply)."""
    return mismatch(node, value) is None


def mismatch(node: Node, value: Any, path: str = "") -> str | None:
    """None if `value` fits `node`, else `path: expected X, found Y`."""
    problem = _problem(node, value, path)
    return problem


def detail(node: Node, value: Any) -> str | None:
    """`mismatch`, when it says more than "expected X, found Y" of the whole value: the field or item
    at fault (`Shape.corner.x: expected int, found str 'x'`), or a hint (a naive datetime, an int
    outside the Avro long); else None."""
    problem = mismatch(node, value)
    return None if problem == _expected(node, value, "") else problem


def _expected(node: Node, value: Any, path: str, extra: str = "") -> str:
    where = f"{path}: " if path else ""
    return f"{where}expected {python_name(node)}, found {_short(value)}{extra}"


def _problem(node: Node, value: Any, path: str) -> str | None:
    if isinstance(node, PrimNode):
        return (
            None if _prim_ok(node.avro, value) else _expected(node, value, path, _prim_hint(node.avro, value))
        )
    if isinstance(node, LogicalNode):
        return _logical_problem(node, value, path)
    if isinstance(node, RecordNode):
        if not isinstance(value, node.tp):
            return _expected(node, value, path)
        prefix = path or node.tp.__qualname__
        for f in node.fields:
            try:
                attr = getattr(value, f.name)
            except AttributeError:
                return f"{prefix}.{f.name}: the attribute is not set"
            problem = _problem(f.node, attr, f"{prefix}.{f.name}")
            if problem:
                return problem
        return None
    if isinstance(node, EnumNode):
        return None if isinstance(value, node.tp) else _expected(node, value, path)
    if isinstance(node, ArrayNode):
        if value.__class__ is not list:  # fastavro writes no list subclass
            return _expected(node, value, path)
        for i, item in enumerate(value):
            problem = _problem(node.items, item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(node, MapNode):
        if not isinstance(value, dict):
            return _expected(node, value, path)
        for k, item in value.items():
            if not isinstance(k, str):
                return f"{path}: expected str keys, found the key {_short(k)}"
            problem = _problem(node.values, item, f"{path}[{k!r}]")
            if problem:
                return problem
        return None
    if isinstance(node, UnionNode):
        if any(_problem(b, value, path) is None for b in union_branches(node, value)):
            return None
        # When one branch has the value's kind (an `Inner | None` holding a broken Inner),
        # its precise problem says more than "expected Inner | None".
        same = [b for b in node.branches if _same_kind(b, value)]
        if len(same) == 1:
            return _problem(same[0], value, path)
        return _expected(node, value, path)
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover - every node kind is handled above


def union_branches(node: UnionNode, value: Any) -> list[Node]:
    """The branches of `node` that may hold `value`: all, except that an int is stored as the union's
    `int` when it has one, never as its `float` (which would give a float back)."""
    if isinstance(value, int) and not isinstance(value, bool) and any(isinstance(b, PrimNode) and b.avro == "long" for b in node.branches):
        return [b for b in node.branches if not (isinstance(b, PrimNode) and b.avro == "double")]
    return node.branches


_KINDS: dict[str, type | tuple[type, ...]] = {
    "null": type(None),
    "boolean": bool,
    "long": int,
    "double": float,
    "bytes": (bytes, bytearray, memoryview),
    "string": str,
    "timestamp-micros": datetime.datetime,
    "date": datetime.date,
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
}


def _same_kind(node: Node, value: Any) -> bool:
    """Whether `value` is of the node's kind, whatever its contents (for pinpointing errors)."""
    if isinstance(node, PrimNode):
        return isinstance(value, _KINDS[node.avro])
    if isinstance(node, LogicalNode):
        return isinstance(value, _KINDS[node.logical])
    if isinstance(node, RecordNode | EnumNode):
        return isinstance(value, node.tp)
    if isinstance(node, ArrayNode):
        return isinstance(value, list)
    if isinstance(node, MapNode):
        return isinstance(value, dict)
    return False


def _prim_ok(avro: str, value: Any) -> bool:
    if avro == "null":
        return value is None
    if avro == "boolean":
        return isinstance(value, bool)
    if avro == "long":
        return fits_long(value)
    if avro == "double":
        return fits_double(value)
    if avro == "bytes":
        return is_bytes_like(value)
    if avro == "string":
        return is_utf8_text(value)
    raise ValueError(f"unknown Avro primitive {avro!r}")  # pragma: no cover


def _prim_hint(avro: str, value: Any) -> str:
    if avro == "long" and isinstance(value, int) and not isinstance(value, bool):
        return " (outside the 64-bit Avro long range)"
    if avro == "double" and isinstance(value, int) and not isinstance(value, bool):
        return " (too large for a 64-bit float)"
    if avro == "string" and isinstance(value, str):
        return " (a lone surrogate, which UTF-8 cannot encode)"
    if avro == "bytes" and isinstance(value, memoryview):
        return f" (a memoryview of format {value.format!r} in {value.ndim} dimension(s), not of bytes)"
    return ""


def _logical_problem(node: LogicalNode, value: Any, path: str) -> str | None:
    if node.logical == "timestamp-micros":
        if is_aware(value):
            return None
        if isinstance(value, datetime.datetime):
            return _expected(node, value, path, " (naive; give it a tzinfo, e.g. datetime.now(timezone.utc))")
        return _expected(node, value, path)
    if node.logical == "date":
        return None if is_date(value) else _expected(node, value, path)
    if node.logical == "uuid":
        return None if isinstance(value, uuid.UUID) else _expected(node, value, path)
    if node.logical == "decimal":
        problem = decimal_fits(value, node.precision, node.scale)
        if problem is None:
            return None
        return _expected(node, value, path, " (too many digits)" if problem == "too many digits" else "")
    raise ValueError(f"unknown logical type {node.logical!r}")  # pragma: no cover
