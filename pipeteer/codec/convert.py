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
from dataclasses import dataclass
from functools import partial
from typing import Any

from pipeteer.codec.check import accepts, union_branches
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
from pipeteer.types import NoneType, decimal_fits

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
    "decimal": frozenset(),  # the class is not enough: its digits must fit (fastavro checks the scale only)
    "uuid": frozenset({uuid.UUID}),
}
_STR_KEYS = frozenset({str})


def check_of(node: Node) -> Check | None:
    """(exact classes, full predicate) for nodes that only need checking, else None."""
    if isinstance(node, PrimNode):
        return _FAST[node.avro], partial(accepts, node)
    if isinstance(node, LogicalNode) and node.logical == "decimal":
        precision, scale = node.precision, node.scale
        return _FAST["decimal"], lambda v: decimal_fits(v, precision, scale) is None
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


@dataclass(frozen=True)
class Plan:
    """How a node's values are prepared for fastavro.

    - `check`: the value is written as is after an exact-class test (`fast`), with `fn` as
      the full predicate for other classes;
    - `validate`: `fn(value)` raises `Mismatch` or returns None; the value is written as is;
    - `convert`: `fn(value)` returns what fastavro writes (or raises `Mismatch`).
    """

    kind: str
    fn: Callable[[Any], Any]
    fast: frozenset[type] = frozenset()


class Converters:
    """Builds (and memoizes per node) the encoder and decoder closures of a node tree."""

    def __init__(self) -> None:
        self._plans: dict[int, Plan] = {}
        self._dec: dict[int, Conv | None] = {}
        self._plain_records: dict[int, type] = {}

    def plain_record_class(self, node: Node) -> type | None:
        """The class of a record whose decoder only restores fastavro's dict as the instance's
        __dict__ (no field to convert, no slots, no custom __setattr__), so callers may inline it."""
        self.decoder(node)
        return self._plain_records.get(id(node))

    # ------------------------------------------------------------------------------------------ encode

    def encoder(self, node: Node) -> Conv:
        """value → what fastavro writes; raises `Mismatch` on a value of the wrong type."""
        plan = self.plan(node)
        if plan.kind == "convert":
            return plan.fn
        if plan.kind == "validate":
            validate = plan.fn

            def validated(v: Any) -> Any:
                validate(v)
                return v

            return validated
        fast, ok = plan.fast, plan.fn

        def checked(v: Any) -> Any:
            if v.__class__ in fast or ok(v):
                return v
            raise Mismatch

        return checked

    def plan(self, node: Node) -> Plan:
        known = self._plans.get(id(node))
        if known is not None:
            return known
        if isinstance(node, RecordNode):
            # Register a trampoline first: a recursive record's fields refer back to it.
            cell: list[Conv] = []
            self._plans[id(node)] = Plan("convert", lambda v: cell[0](v))
            record = self._record_encoder(node)
            cell.append(record)
            built = Plan("convert", record)
        else:
            built = self._build_plan(node)
        self._plans[id(node)] = built
        return built

    def _build_plan(self, node: Node) -> Plan:
        check = check_of(node)
        if check is not None:
            return Plan("check", check[1], check[0])
        if isinstance(node, LogicalNode):  # timestamp-micros: must be timezone-aware
            return Plan("validate", _datetime_validator(node))
        if isinstance(node, EnumNode):
            return Plan("convert", _enum_encoder(node))
        if isinstance(node, ArrayNode):
            return self._array_plan(node)
        if isinstance(node, MapNode):
            return self._map_plan(node)
        if isinstance(node, UnionNode):
            return self._union_plan(node)
        raise TypeError(f"no encoder for {node!r}")  # pragma: no cover

    def _record_encoder(self, node: RecordNode) -> Conv:
        # The encoder of a record is generated source, compiled once per record type, like
        # dataclasses generates __init__: one straight-line check or conversion per field,
        # with no loop, tuple unpacking or per-field call on the hot path.
        env: dict[str, Any] = {"cls": node.tp, "Mismatch": Mismatch, "isinstance": isinstance}
        slots = node.slots
        lines = [
            "def encode(v):",
            "    if v.__class__ is not cls and not isinstance(v, cls):",
            "        raise Mismatch",
        ]
        if not slots:
            lines.append("    d = v.__dict__")
        out: list[str] = []
        for i, f in enumerate(node.fields):
            plan = self.plan(f.node)
            get = f"v.{f.name}" if slots else f"d[{f.name!r}]"
            if plan.kind == "check":
                env[f"fast{i}"], env[f"ok{i}"] = plan.fast, plan.fn
                if len(plan.fast) == 1:  # `is not` is cheaper than a set lookup
                    (env[f"fast{i}"],) = plan.fast
                    test = f"x{i}.__class__ is not fast{i}"
                else:
                    test = f"x{i}.__class__ not in fast{i}"
                lines += [
                    f"    x{i} = {get}",
                    f"    if {test} and not ok{i}(x{i}):",
                    "        raise Mismatch",
                ]
                out.append(f"{f.name!r}: x{i}")
            elif plan.kind == "validate":
                env[f"validate{i}"] = plan.fn
                lines.append(f"    x{i} = {get}")
                quick = self._quick_container_check(f.node, f"x{i}", env, i)
                if quick:  # the common case inline; the validator only when it is not clear-cut
                    lines += [f"    if not ({quick}):", f"        validate{i}(x{i})"]
                else:
                    lines.append(f"    validate{i}(x{i})")
                out.append(f"{f.name!r}: x{i}")
            elif isinstance(f.node, EnumNode):  # inlined: the symbol is the member's name
                env[f"enum{i}"] = f.node.tp
                lines += [
                    f"    x{i} = {get}",
                    f"    if x{i}.__class__ is not enum{i}:",
                    "        raise Mismatch",
                ]
                out.append(f"{f.name!r}: x{i}._name_")
            else:
                env[f"conv{i}"] = plan.fn
                out.append(f"{f.name!r}: conv{i}({get})")
        if slots or any(not o.endswith(f"x{i}") for i, o in enumerate(out)):
            lines.append("    return {" + ", ".join(out) + "}")
        else:
            # The instance's own __dict__ goes to fastavro when nothing needs converting
            # (fastavro only reads it, and ignores keys that are not fields).
            lines.append("    return d")
        code = compile("\n".join(lines), f"<pipeteer encoder of {node.fullname}>", "exec")
        exec(code, env)
        encoder: Conv = env["encode"]
        return encoder

    def _quick_container_check(self, node: Node, var: str, env: dict[str, Any], i: int) -> str | None:
        """An inline expression true when a list/dict of plain items certainly fits `node`."""
        if isinstance(node, ArrayNode):
            item = self.plan(node.items)
            if item.kind == "check":
                env[f"items{i}"] = item.fast
                return f"{var}.__class__ is list and items{i}.issuperset(map(type, {var}))"
        if isinstance(node, MapNode):
            value = self.plan(node.values)
            if value.kind == "check":
                env[f"values{i}"], env["str_keys"] = value.fast, _STR_KEYS
                return (
                    f"{var}.__class__ is dict and str_keys.issuperset(map(type, {var})) "
                    f"and values{i}.issuperset(map(type, {var}.values()))"
                )
        return None

    def _array_plan(self, node: ArrayNode) -> Plan:
        item = self.plan(node.items)
        if item.kind == "check":
            fast, ok = item.fast, item.fn

            def checked_list(v: Any) -> None:
                if v.__class__ is not list:  # fastavro writes no list subclass
                    raise Mismatch
                # issuperset(map(type, v)) runs in C; the per-item loop only for unusual classes
                if not fast.issuperset(map(type, v)):
                    for x in v:
                        if x.__class__ not in fast and not ok(x):
                            raise Mismatch

            return Plan("validate", checked_list)
        if item.kind == "validate":
            validate = item.fn

            def validated_list(v: Any) -> None:
                if v.__class__ is not list:  # fastavro writes no list subclass
                    raise Mismatch
                for x in v:
                    validate(x)

            return Plan("validate", validated_list)
        conv = item.fn

        def converted_list(v: Any) -> Any:
            if v.__class__ is not list:  # fastavro writes no list subclass
                raise Mismatch
            return [conv(x) for x in v]

        return Plan("convert", converted_list)

    def _map_plan(self, node: MapNode) -> Plan:
        value = self.plan(node.values)

        def check_keys(v: Any) -> None:
            if v.__class__ is not dict and not isinstance(v, dict):
                raise Mismatch
            if not _STR_KEYS.issuperset(map(type, v)) and not all(isinstance(k, str) for k in v):
                raise Mismatch

        if value.kind == "check":
            fast, ok = value.fast, value.fn

            def checked_map(v: Any) -> None:
                if v.__class__ is not dict and not isinstance(v, dict):
                    raise Mismatch
                if not _STR_KEYS.issuperset(map(type, v)) and not all(isinstance(k, str) for k in v):
                    raise Mismatch
                if not fast.issuperset(map(type, v.values())):
                    for x in v.values():
                        if x.__class__ not in fast and not ok(x):
                            raise Mismatch

            return Plan("validate", checked_map)
        if value.kind == "validate":
            validate = value.fn

            def validated_map(v: Any) -> None:
                check_keys(v)
                for x in v.values():
                    validate(x)

            return Plan("validate", validated_map)
        conv = value.fn

        def converted_map(v: Any) -> Any:
            check_keys(v)
            return {k: conv(x) for k, x in v.items()}

        return Plan("convert", converted_map)

    def _union_plan(self, node: UnionNode) -> Plan:
        others = [b for b in node.branches if not (isinstance(b, PrimNode) and b.avro == "null")]
        if len(others) == 1 and len(node.branches) == 2 and not isinstance(others[0], NamedNode):
            # `X | None` with X unnamed: fastavro tells None from an X by itself, cheaply.
            inner = self.plan(others[0])
            if inner.kind == "check":
                return Plan("check", partial(accepts, node), inner.fast | _FAST["null"])
            if inner.kind == "validate":
                validate = inner.fn

                def optional(v: Any) -> None:
                    if v is not None:
                        validate(v)

                return Plan("validate", optional)
        return Plan("convert", self._tagged_union(node))

    def _tagged_union(self, node: UnionNode) -> Conv:
        # Exact class → (fastavro branch name, plan). Values are written in tuple notation so that
        # fastavro picks the branch by name: it would otherwise take the first branch that
        # validates (an int as a double, an enum symbol as a string) and validate whole records.
        plans = {branch_name(b): self.plan(b) for b in node.branches}
        table: dict[type, tuple[str, Plan]] = {}
        for branch in node.branches:
            for cls in _classes(branch):
                table.setdefault(cls, (branch_name(branch), plans[branch_name(branch)]))
        kinds = {b.key for b in node.branches}
        if "double" in kinds and "long" not in kinds:  # an int is a fine float
            double = next(branch_name(b) for b in node.branches if b.key == "double")
            table[int] = (double, plans[double])

        def prepare(name: str, plan: Plan, v: Any) -> tuple[str, Any]:
            if plan.kind == "convert":
                return name, plan.fn(v)
            if plan.kind == "validate":
                plan.fn(v)
            elif v.__class__ not in plan.fast and not plan.fn(v):  # e.g. a Decimal of too many digits
                raise Mismatch
            return name, v

        def slow(v: Any) -> tuple[str, Any]:
            # Subclasses (IntEnum members, str subclasses...) and values of unusual classes.
            for b in union_branches(node, v):
                if accepts(b, v):
                    return prepare(branch_name(b), plans[branch_name(b)], v)
            raise Mismatch

        def union(v: Any) -> Any:
            hit = table.get(v.__class__)
            if hit is None:
                return slow(v)
            return prepare(hit[0], hit[1], v)

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
            member: Conv = node.tp._member_map_.__getitem__
            return member
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
        # Generated like the encoder. Instances are restored the way pickle restores them
        # (allocate, then fill the fields) rather than through __init__: the bytes hold every
        # field, and this works for frozen dataclasses and init=False fields alike. The dict
        # fastavro made (ours alone) becomes the instance's __dict__.
        cls = node.tp
        env: dict[str, Any] = {"cls": cls, "new": object.__new__, "setattr_": object.__setattr__}
        lines = ["def decode(d):"]
        for i, f in enumerate(node.fields):
            conv = self.decoder(f.node)
            if isinstance(f.node, EnumNode):  # inlined: a dict lookup rather than a call
                env[f"members{i}"] = f.node.tp._member_map_
                lines.append(f"    d[{f.name!r}] = members{i}[d[{f.name!r}]]")
            elif conv is not None:
                env[f"conv{i}"] = conv
                lines.append(f"    d[{f.name!r}] = conv{i}(d[{f.name!r}])")
        lines.append("    obj = new(cls)")
        if node.slots:
            lines += [f"    setattr_(obj, {f.name!r}, d[{f.name!r}])" for f in node.fields]
        elif cls.__setattr__ is object.__setattr__:
            lines.append("    obj.__dict__ = d")
            if len(lines) == 3:  # def, new, assign: nothing converted
                self._plain_records[id(node)] = cls
        else:  # frozen dataclasses refuse attribute assignment: go around their __setattr__
            lines.append("    setattr_(obj, '__dict__', d)")
        lines.append("    return obj")
        code = compile("\n".join(lines), f"<pipeteer decoder of {node.fullname}>", "exec")
        exec(code, env)
        decoder: Conv = env["decode"]
        return decoder

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


def _datetime_validator(node: LogicalNode) -> Callable[[Any], None]:
    def aware_datetime(v: Any) -> None:
        if (v.__class__ is datetime.datetime and v.tzinfo is not None) or accepts(node, v):
            return
        raise Mismatch

    return aware_datetime
