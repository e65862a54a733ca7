"""Specialized converters between Python values and what fastavro reads and writes.

For each node tree we build, once, a closure per node: dataclass → dict (and back),
Enum → symbol, a union member → fastavro's `(branch name, value)` notation so that
fastavro never has to guess a branch by validating the value against each one.
Nodes fastavro handles itself (primitives, datetimes, dates, decimals, UUIDs) get no
converter at all, only an exact-class check, because fastavro silently coerces some
wrong values (`1.5` written as the long `1`, `None` as the boolean `False`).

Checks are fast exact-class tests (`x.__class__ in {int}`); anything else (a subclass,
an out-of-range int) falls back to `check.accepts`. A failed check raises `Mismatch`
without a message: the codec then walks the value once more with `check.mismatch`
to build the error, so the hot path never formats strings.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from pipeteer.codec.check import accepts
from pipeteer.codec.nodes import (
    ArrayNode,
    EnumNode,
    LogicalNode,
    MapNode,
    NamedNode,
    Node,
    PrimNode,
    RecordNode,
    UnionNode,
)
from pipeteer.types import NoneType

Conv = Callable[[Any], Any]
Check = tuple[frozenset[type], Callable[[Any], bool]]


class Mismatch(Exception):
    """A value failed a fast check; `check.mismatch` says where and why."""


_FAST: dict[str, frozenset[type]] = {
    "null": frozenset({NoneType}),
    "boolean": frozenset({bool}),
    "long": frozenset({int}),
    "double": frozenset({float, int}),
    "bytes": frozenset({bytes}),
    "string": frozenset({str}),
    "date": frozenset({datetime.date}),
    "decimal": frozenset({decimal.Decimal}),
    "uuid": frozenset({uuid.UUID}),
}
_STR_KEYS = frozenset({str})


def check_of(node: Node) -> Check | None:
    """(exact classes, full predicate) for nodes that only need checking, else None."""
    if isinstance(node, PrimNode):
        return _FAST[node.avro], partial(accepts, node)
    if isinstance(node, LogicalNode) and node.logical in _FAST:
        return _FAST[node.logical], partial(accepts, node)
    return None


def branch_name(node: Node) -> str:
    """The name fastavro's tuple notation uses for a union branch."""
    if isinstance(node, NamedNode):
        return node.fullname
    if isinstance(node, PrimNode):
        return node.avro
    if isinstance(node, LogicalNode):
        return node.base
    if isinstance(node, ArrayNode):
        return "array"
    if isinstance(node, MapNode):
        return "map"
    raise TypeError(f"no branch name for {node!r}")  # pragma: no cover


# Python classes a branch's values may have (for union dispatch on encode) — the
# first is exact; fastavro produces these same classes on decode.
def _classes(node: Node) -> tuple[type, ...]:
    if isinstance(node, PrimNode):
        prims: dict[str, tuple[type, ...]] = {
            "null": (NoneType,),
            "boolean": (bool,),
            "long": (int,),
            "double": (float,),
            "bytes": (bytes, bytearray, memoryview),
            "string": (str,),
        }
        return prims[node.avro]
    if isinstance(node, LogicalNode):
        return {
            "timestamp-micros": (datetime.datetime,),
            "date": (datetime.date,),
            "decimal": (decimal.Decimal,),
            "uuid": (uuid.UUID,),
        }[node.logical]
    if isinstance(node, ArrayNode):
        return (list,)
    if isinstance(node, MapNode):
        return (dict,)
    if isinstance(node, RecordNode | EnumNode):
        return (node.tp,)
    raise TypeError(f"no classes for {node!r}")  # pragma: no cover


class Converters:
    """Builds (and memoizes per node) the encoder and decoder closures of a node tree."""

    def __init__(self) -> None:
        self._enc: dict[int, Conv] = {}
        self._dec: dict[int, Conv | None] = {}

    # ------------------------------------------------------------------------------------------ encode

    def encoder(self, node: Node) -> Conv:
        """value → what fastavro writes; raises `Mismatch` on a value of the wrong type."""
        known = self._enc.get(id(node))
        if known is not None:
            return known
        if isinstance(node, RecordNode):
            # Register a trampoline first: a recursive record's fields refer back to it.
            cell: list[Conv] = []
            self._enc[id(node)] = lambda v: cell[0](v)
            built = self._record_encoder(node)
            cell.append(built)
        else:
            built = self._build_encoder(node)
        self._enc[id(node)] = built
        return built

    def _build_encoder(self, node: Node) -> Conv:
        check = check_of(node)
        if check is not None:
            fast, ok = check

            def check_only(v: Any) -> Any:
                if v.__class__ in fast or ok(v):
                    return v
                raise Mismatch

            return check_only
        if isinstance(node, LogicalNode):  # timestamp-micros: must be timezone-aware
            return _datetime_encoder(node)
        if isinstance(node, EnumNode):
            return _enum_encoder(node)
        if isinstance(node, ArrayNode):
            return self._array_encoder(node)
        if isinstance(node, MapNode):
            return self._map_encoder(node)
        if isinstance(node, UnionNode):
            return self._union_encoder(node)
        raise TypeError(f"no encoder for {node!r}")  # pragma: no cover

    def _record_encoder(self, node: RecordNode) -> Conv:
        cls = node.tp
        checks: list[tuple[str, frozenset[type], Callable[[Any], bool]]] = []
        convs: list[tuple[str, Conv]] = []
        for f in node.fields:
            check = check_of(f.node)
            if check is not None:
                checks.append((f.name, *check))
            else:
                convs.append((f.name, self.encoder(f.node)))
        checks_t, convs_t = tuple(checks), tuple(convs)
        names = tuple(f.name for f in node.fields)

        def record(v: Any) -> Any:
            if v.__class__ is not cls and not isinstance(v, cls):
                raise Mismatch
            # The instance's own __dict__ is handed to fastavro when nothing needs converting
            # (fastavro only reads it, and ignores keys that are not fields).
            d = v.__dict__
            for name, fast, ok in checks_t:
                x = d[name]
                if x.__class__ not in fast and not ok(x):
                    raise Mismatch
            if convs_t:
                d = d.copy()
                for name, conv in convs_t:
                    d[name] = conv(d[name])
            return d

        def slotted_record(v: Any) -> Any:
            if v.__class__ is not cls and not isinstance(v, cls):
                raise Mismatch
            return record_of_dict({name: getattr(v, name) for name in names})

        def record_of_dict(d: dict[str, Any]) -> Any:
            for name, fast, ok in checks_t:
                x = d[name]
                if x.__class__ not in fast and not ok(x):
                    raise Mismatch
            for name, conv in convs_t:
                d[name] = conv(d[name])
            return d

        return slotted_record if node.slots else record

    def _array_encoder(self, node: ArrayNode) -> Conv:
        check = check_of(node.items)
        if check is not None:
            fast, ok = check

            def checked_list(v: Any) -> Any:
                if v.__class__ is not list and not isinstance(v, list):
                    raise Mismatch
                # issuperset(map(type, v)) runs in C; the per-item loop only when a class is unusual
                if not fast.issuperset(map(type, v)):
                    for x in v:
                        if x.__class__ not in fast and not ok(x):
                            raise Mismatch
                return v

            return checked_list
        conv = self.encoder(node.items)

        def converted_list(v: Any) -> Any:
            if v.__class__ is not list and not isinstance(v, list):
                raise Mismatch
            return [conv(x) for x in v]

        return converted_list

    def _map_encoder(self, node: MapNode) -> Conv:
        check = check_of(node.values)

        def keys_ok(v: Any) -> bool:
            if v.__class__ is not dict and not isinstance(v, dict):
                return False
            return _STR_KEYS.issuperset(map(type, v)) or all(isinstance(k, str) for k in v)

        if check is not None:
            fast, ok = check

            def checked_map(v: Any) -> Any:
                if not keys_ok(v):
                    raise Mismatch
                if not fast.issuperset(map(type, v.values())):
                    for x in v.values():
                        if x.__class__ not in fast and not ok(x):
                            raise Mismatch
                return v

            return checked_map
        conv = self.encoder(node.values)

        def converted_map(v: Any) -> Any:
            if not keys_ok(v):
                raise Mismatch
            return {k: conv(x) for k, x in v.items()}

        return converted_map

    def _union_encoder(self, node: UnionNode) -> Conv:
        # Exact class → (fastavro branch name, converter). Every value is written in tuple
        # notation, so fastavro picks the branch by name instead of validating each one.
        table: dict[type, tuple[str, Conv | None]] = {}
        for branch in node.branches:
            name = branch_name(branch)
            conv = None if check_of(branch) is not None else self.encoder(branch)
            for cls in _classes(branch):
                table.setdefault(cls, (name, conv))
        kinds = {b.key for b in node.branches}
        if "double" in kinds and "long" not in kinds:  # an int is a fine float
            table[int] = next((branch_name(b), None) for b in node.branches if b.key == "double")
        branches = tuple(node.branches)
        convs = {branch_name(b): (None if check_of(b) is not None else self.encoder(b)) for b in branches}

        def slow(v: Any) -> tuple[str, Any]:
            # Subclasses (IntEnum members, str subclasses...) and values of unusual classes.
            for b in branches:
                if accepts(b, v):
                    name = branch_name(b)
                    conv = convs[name]
                    return name, (v if conv is None else conv(v))
            raise Mismatch

        def union(v: Any) -> Any:
            hit = table.get(v.__class__)
            if hit is None:
                return slow(v)
            name, conv = hit
            return (name, v if conv is None else conv(v))

        return union

    # ------------------------------------------------------------------------------------------ decode

    def decoder(self, node: Node) -> Conv | None:
        """What fastavro read → value; None when fastavro's value is already the value."""
        if id(node) in self._dec:
            return self._dec[id(node)]
        if isinstance(node, RecordNode):
            cell: list[Conv] = []
            self._dec[id(node)] = lambda d: cell[0](d)
            record = self._record_decoder(node)
            cell.append(record)
            self._dec[id(node)] = record
            return record
        built = self._build_decoder(node)
        self._dec[id(node)] = built
        return built

    def _build_decoder(self, node: Node) -> Conv | None:
        if isinstance(node, PrimNode | LogicalNode):
            return None
        if isinstance(node, EnumNode):
            return node.tp._member_map_.__getitem__
        if isinstance(node, ArrayNode):
            conv = self.decoder(node.items)
            if conv is None:
                return None
            item_conv = conv
            return lambda v: [item_conv(x) for x in v]
        if isinstance(node, MapNode):
            conv = self.decoder(node.values)
            if conv is None:
                return None
            value_conv = conv
            return lambda v: {k: value_conv(x) for k, x in v.items()}
        if isinstance(node, UnionNode):
            return self._union_decoder(node)
        raise TypeError(f"no decoder for {node!r}")  # pragma: no cover

    def _record_decoder(self, node: RecordNode) -> Conv:
        cls = node.tp
        convs = tuple((f.name, c) for f in node.fields if (c := self.decoder(f.node)) is not None)
        new = object.__new__
        setattr_ = object.__setattr__

        # Instances are restored the way pickle restores them (allocate, then fill the
        # fields) rather than through __init__: the bytes already hold every field, and
        # this works for frozen dataclasses and fields with init=False alike.
        def record(d: dict[str, Any]) -> Any:
            for name, conv in convs:
                d[name] = conv(d[name])
            obj = new(cls)
            obj.__dict__.update(d)
            return obj

        def slotted_record(d: dict[str, Any]) -> Any:
            obj = new(cls)
            for name, conv in convs:
                d[name] = conv(d[name])
            for name, x in d.items():
                setattr_(obj, name, x)
            return obj

        return slotted_record if node.slots else record

    def _union_decoder(self, node: UnionNode) -> Conv | None:
        # fastavro (with return_named_type) gives records and enums in unions as (name, value).
        by_name: dict[str, Conv] = {}
        by_class: dict[type, Conv] = {}
        for branch in node.branches:
            conv = self.decoder(branch)
            if conv is None:
                continue
            if isinstance(branch, NamedNode):
                by_name[branch.fullname] = conv
            else:
                by_class[_classes(branch)[0]] = conv
        if not by_name and not by_class:
            return None

        def union(v: Any) -> Any:
            if v.__class__ is tuple:
                name, x = v
                return by_name[name](x)
            conv = by_class.get(v.__class__)
            return v if conv is None else conv(v)

        return union


def _enum_encoder(node: EnumNode) -> Conv:
    cls = node.tp

    def enum_symbol(v: Any) -> Any:
        if v.__class__ is cls:
            return v._name_
        raise Mismatch

    return enum_symbol


def _datetime_encoder(node: LogicalNode) -> Conv:
    def aware_datetime(v: Any) -> Any:
        if (v.__class__ is datetime.datetime and v.tzinfo is not None) or accepts(node, v):
            return v
        raise Mismatch

    return aware_datetime
