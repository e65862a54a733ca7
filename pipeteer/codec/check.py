"""Slow, precise value checks: which value does not fit which node, and where.

The converters check types with fast exact-class tests; when one fails (or fastavro
rejects a value), this module walks the value once more to say precisely what is
wrong: `Input.items[3].name: expected str, found int 7`. It is also how field
defaults are validated when a schema is derived.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

from pipeteer.codec.nodes import (
    LONG_MAX,
    LONG_MIN,
    ArrayNode,
    EnumNode,
    LogicalNode,
    MapNode,
    Node,
    PrimNode,
    RecordNode,
    UnionNode,
)
from pipeteer.types import type_name


def python_name(node: Node) -> str:
    """The Python spelling of what `node` accepts, for messages."""
    if isinstance(node, LogicalNode) and node.logical == "timestamp-micros":
        return "datetime (timezone-aware)"
    if isinstance(node, LogicalNode) and node.logical == "decimal":
        return f"Decimal (precision {node.precision}, scale {node.scale})"
    return type_name(node.tp)


def _short(value: Any) -> str:
    text = repr(value)
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
        if not isinstance(value, list):
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
        if any(_problem(b, value, path) is None for b in node.branches):
            return None
        # When one branch has the value's kind (an `Inner | None` holding a broken Inner),
        # its precise problem says more than "expected Inner | None".
        same = [b for b in node.branches if _same_kind(b, value)]
        if len(same) == 1:
            return _problem(same[0], value, path)
        return _expected(node, value, path)
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover - every node kind is handled above


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
        return isinstance(value, int) and not isinstance(value, bool) and LONG_MIN <= value <= LONG_MAX
    if avro == "double":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if avro == "bytes":
        return isinstance(value, bytes | bytearray | memoryview)
    if avro == "string":
        return isinstance(value, str)
    raise ValueError(f"unknown Avro primitive {avro!r}")  # pragma: no cover


def _prim_hint(avro: str, value: Any) -> str:
    if avro == "long" and isinstance(value, int) and not isinstance(value, bool):
        return " (outside the 64-bit Avro long range)"
    return ""


def _logical_problem(node: LogicalNode, value: Any, path: str) -> str | None:
    if node.logical == "timestamp-micros":
        if not isinstance(value, datetime.datetime):
            return _expected(node, value, path)
        if value.utcoffset() is None:
            return _expected(node, value, path, " (naive; give it a tzinfo, e.g. datetime.now(timezone.utc))")
        return None
    if node.logical == "date":
        ok = isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)
        return None if ok else _expected(node, value, path)
    if node.logical == "uuid":
        return None if isinstance(value, uuid.UUID) else _expected(node, value, path)
    if node.logical == "decimal":
        if not isinstance(value, decimal.Decimal) or not value.is_finite():
            return _expected(node, value, path)
        exponent = value.as_tuple().exponent
        if not isinstance(exponent, int):  # only NaN and infinities have a str exponent
            return _expected(node, value, path)
        digits = len(value.as_tuple().digits)
        scale = max(0, -exponent)
        integer_digits = max(0, digits - scale) if exponent < 0 else digits + exponent
        if value == 0:
            integer_digits = 0
        if scale > node.scale or integer_digits > node.precision - node.scale:
            return _expected(node, value, path, " (too many digits)")
        return None
    raise ValueError(f"unknown logical type {node.logical!r}")  # pragma: no cover
