"""Schema compatibility by the Avro specification's schema-resolution rules, and the order to roll.

A reader schema can read what a writer schema wrote when every writer value resolves
(Avro 1.12, "Schema Resolution"):

- primitives of the same type match; a writer's `int` is read as `long`, `float` or `double`,
  `long` as `float` or `double`, `float` as `double`, `string` as `bytes` and `bytes` as `string`;
- records match by unqualified name, or when the reader lists the writer's full name in its
  aliases; fields match by name or by the reader field's aliases; a writer field the reader lacks
  is skipped; a reader field the writer lacks needs a default;
- enums match by name (or alias); a writer symbol the reader lacks needs the reader's default
  symbol; fixed types match by name (or alias) and size;
- arrays and maps match when their items and values resolve;
- a writer union resolves branch by branch: each writer branch must be read by the reader (by the
  first branch of a reader union that matches it); a reader union reads a plain writer type by the
  first branch that matches it;
- logical types: two decimals match only with the same precision and scale (a Java reader applies
  its own scale to the stored integer: `1.23` written at scale 2 reads as `0.123` at scale 3);
  any other change of logical type over the same stored value (`timestamp-millis` to
  `timestamp-micros`, a plain `long` that becomes a timestamp, `date`, `uuid`) changes what the
  value means, and is refused too. Logical types the specification does not define, or that are
  invalid, are ignored, as the specification says.

The walk runs on the `avro` package's parsed schema objects and reports every problem at its
field path (`Order.items[].price`), saying what changed in the user's terms and the fix.

Modes, as in Confluent Schema Registry:
- backward: the new schema reads records written with the old one (roll the readers first);
- forward: the old schema reads records written with the new one (roll the writers first);
- full: both (any order).

>>> old = {"type": "record", "name": "Mid", "fields": [{"name": "n", "type": "int"}]}
>>> new = {"type": "record", "name": "Mid", "fields": [{"name": "n", "type": "long"}]}
>>> change = judge(old, new)
>>> [m.value for m in change.modes], change.roll.value
(['backward'], 'readers first')
>>> print(change.forward[0])
Mid.n: type widened from int to long: int cannot read long (readers on the old schema cannot hold the wider values; roll the readers first) [forward]
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import avro.schema

from pipeteer.codec.schema import Schema
from pipeteer.errors import SchemaError


class Mode(StrEnum):
    """Which direction(s) must stay readable."""

    BACKWARD = "backward"
    FORWARD = "forward"
    FULL = "full"


class Kind(StrEnum):
    """What kind of incompatibility (Avro's names, and one for logical types)."""

    READER_FIELD_MISSING_DEFAULT_VALUE = "reader_field_missing_default_value"
    TYPE_MISMATCH = "type_mismatch"
    MISSING_ENUM_SYMBOLS = "missing_enum_symbols"
    MISSING_UNION_BRANCH = "missing_union_branch"
    NAME_MISMATCH = "name_mismatch"
    FIXED_SIZE_MISMATCH = "fixed_size_mismatch"
    LOGICAL_TYPE_MISMATCH = "logical_type_mismatch"


class Roll(StrEnum):
    """In which order to roll the stages of a release for one changed state type."""

    ANY = "any order"
    """Full compatibility: old and new versions read each other's records."""
    READERS_FIRST = "readers first"
    """Backward only: new readers read old records, old readers cannot read new ones."""
    WRITERS_FIRST = "writers first"
    """Forward only: old readers read new records, new readers cannot read old ones (so the readers
    go once no record written before is left for them)."""
    NONE = "none"
    """Neither way: no order works."""


@dataclass(frozen=True)
class Incompatibility:
    """One incompatible change: in which state type, at which field path, what changed."""

    type: str
    """Full name of the state's schema (or the type's name for unnamed schemas)."""
    path: str
    """Where: `Record.field.sub[]` (`[]` = array items, `{}` = map values)."""
    kind: str
    """A `Kind`: reader_field_missing_default_value, type_mismatch, missing_enum_symbols,
    missing_union_branch, name_mismatch, fixed_size_mismatch or logical_type_mismatch."""
    message: str
    """What changed (old and new types), why it breaks, and the fix, in words."""
    direction: str
    """`backward` (new schema cannot read old records) or `forward` (old schema cannot read new records)."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.direction}]"


@dataclass(frozen=True)
class Change:
    """A state type's schema from one release to the next, judged in both directions (see `judge`)."""

    type: str
    """Full name of the state's schema."""
    backward: tuple[Incompatibility, ...]
    """Why the new schema cannot read records written with the old one (empty: it can)."""
    forward: tuple[Incompatibility, ...]
    """Why the old schema cannot read records written with the new one (empty: it can)."""

    def problems(self, mode: Mode | str) -> list[Incompatibility]:
        """The incompatibilities that break `mode` (empty: the change satisfies it)."""
        mode = Mode(mode)
        found: list[Incompatibility] = []
        if mode in (Mode.BACKWARD, Mode.FULL):
            found += self.backward
        if mode in (Mode.FORWARD, Mode.FULL):
            found += self.forward
        return found

    def satisfies(self, mode: Mode | str) -> bool:
        return not self.problems(mode)

    @property
    def modes(self) -> tuple[Mode, ...]:
        """Every mode the change satisfies, in the order backward, forward, full."""
        return tuple(m for m in Mode if self.satisfies(m))

    @property
    def roll(self) -> Roll:
        """In which order the stages reading and writing this state can be rolled."""
        if not self.backward and not self.forward:
            return Roll.ANY
        if not self.backward:
            return Roll.READERS_FIRST
        if not self.forward:
            return Roll.WRITERS_FIRST
        return Roll.NONE

    @property
    def short(self) -> str:
        """The type's name without its namespace (`Mid`)."""
        return self.type.rpartition(".")[2]


def parse(schema: Schema) -> avro.schema.Schema:
    """An `avro` package schema object (raises `SchemaError` for an invalid schema)."""
    try:
        with warnings.catch_warnings():
            # Unknown or invalid logical types are ignored (the spec says so); `_logical` decides.
            warnings.simplefilter("ignore", avro.errors.IgnoredLogicalType)
            return avro.schema.parse(json.dumps(schema))
    except Exception as exc:
        raise SchemaError(f"invalid Avro schema: {exc}") from exc


def judge(old: Schema, new: Schema, *, label: str | None = None) -> Change:
    """The change from `old` to `new`, with what breaks in each direction.

    >>> old = {"type": "record", "name": "Mid", "fields": [{"name": "n", "type": "long"}]}
    >>> new = {"type": "record", "name": "Mid", "fields": [{"name": "n", "type": "long"},
    ...        {"name": "note", "type": ["null", "string"], "default": None}]}
    >>> judge(old, new).roll
    <Roll.ANY: 'any order'>
    """
    old_s, new_s = parse(old), parse(new)
    label = label or _label(new_s)
    return Change(
        label,
        tuple(_Walk(label, "backward").run(reader=new_s, writer=old_s)),
        tuple(_Walk(label, "forward").run(reader=old_s, writer=new_s)),
    )


def compare(old: Schema, new: Schema, mode: Mode | str, *, label: str | None = None) -> list[Incompatibility]:
    """Every incompatible change from `old` to `new` under `mode` (empty list: compatible).

    >>> old = {"type": "record", "name": "P", "fields": [
    ...     {"name": "x", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}}]}
    >>> new = {"type": "record", "name": "P", "fields": [
    ...     {"name": "x", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3}}]}
    >>> print(compare(old, new, "backward")[0].message)  # doctest: +ELLIPSIS
    decimal changed from decimal(12, 2) to decimal(12, 3): ... 1.23 written at scale 2 reads as 0.123 at scale 3 ...
    """
    return judge(old, new, label=label).problems(Mode(mode))


def reader_problems(reader: Schema, writer: Schema) -> list[str]:
    """Why `reader` cannot read records written with `writer` (empty: it can), by the same walk as `compare`."""
    reader_s = parse(reader)
    return [str(i) for i in _Walk(_label(reader_s), "backward").run(reader=reader_s, writer=parse(writer))]


# --- roll order -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step of a roll: who rolls, and which changed states it reads and writes."""

    who: str
    """A stage name (`review/manual`), or who else reads or writes a state (scripts, `pipeteer push`)."""
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    def __str__(self) -> str:
        said = [f"reads {', '.join(self.reads)}"] if self.reads else []
        said += [f"writes {', '.join(self.writes)}"] if self.writes else []
        return f"{self.who} ({'; '.join(said)})" if said else self.who


@dataclass(frozen=True)
class RollOrder:
    """The order to roll a release's stages in; `conflicts` says why none works when not empty."""

    steps: tuple[Step, ...]
    """In order (when there are conflicts: those that can go first, in order)."""
    conflicts: tuple[str, ...] = ()
    """`a before b (Mid: readers first)` for each constraint that a cycle leaves unmet."""

    def __str__(self) -> str:
        return "  ".join(f"{i}. {step}" for i, step in enumerate(self.steps, 1))


def roll_order(
    changes: Iterable[Change],
    readers: Mapping[str, Sequence[str]],
    writers: Mapping[str, Sequence[str]],
    order: Sequence[str] = (),
) -> RollOrder:
    """The order to roll stages in so that no reader meets a record it cannot read.

    `readers` and `writers` give, by state type (`Change.type`), who reads and who writes it;
    `order` breaks ties (a workflow's stage order). For a backward-only change every reader of
    the type goes before every writer of it; for a forward-only one the other way round. Full
    changes and refused ones add no constraint. Only those with a constraint are listed.

    A stage also writes the state it reads into its own pending table (on Kafka, its changelog),
    so while its instances roll, an old instance may meet a pending record a new one wrote (or the
    other way round); such a record is held, not lost, until the instance holding it is replaced.

    >>> mid = Change("demo.Mid", backward=(), forward=(Incompatibility("demo.Mid", "Mid.n", "type_mismatch", "", "forward"),))
    >>> print(roll_order([mid], readers={"demo.Mid": ["h"]}, writers={"demo.Mid": ["a"]}, order=["a", "h"]))
    1. h (reads Mid)  2. a (writes Mid)
    """
    edges: dict[tuple[str, str], list[str]] = {}
    reads: dict[str, list[str]] = {}
    writes: dict[str, list[str]] = {}
    for change in changes:
        if change.roll not in (Roll.READERS_FIRST, Roll.WRITERS_FIRST):
            continue
        rs, ws = list(readers.get(change.type, ())), list(writers.get(change.type, ()))
        for who in rs:
            reads.setdefault(who, []).append(change.short)
        for who in ws:
            writes.setdefault(who, []).append(change.short)
        first, then = (rs, ws) if change.roll is Roll.READERS_FIRST else (ws, rs)
        for a in first:
            for b in then:
                if a != b:  # a stage that reads and writes the state rolls as one
                    edges.setdefault((a, b), []).append(f"{change.short}: {change.roll.value}")
    nodes = list(dict.fromkeys([*reads, *writes]))
    rank = {who: i for i, who in enumerate(order)}
    nodes.sort(key=lambda who: (rank.get(who, len(rank)), who))
    before = {who: {a for a, b in edges if b == who} for who in nodes}
    steps: list[Step] = []
    done: set[str] = set()
    while True:  # Kahn's algorithm, the earliest ready one (by `order`) first
        ready = [who for who in nodes if who not in done and before[who] <= done]
        if not ready:
            break
        who = ready[0]
        done.add(who)
        steps.append(
            Step(who, tuple(dict.fromkeys(reads.get(who, ()))), tuple(dict.fromkeys(writes.get(who, ()))))
        )
    left = {who for who in nodes if who not in done}
    conflicts = tuple(
        f"{a} before {b} ({'; '.join(why)})" for (a, b), why in edges.items() if a in left and b in left
    )
    return RollOrder(tuple(steps), conflicts)


# --- the walk ---------------------------------------------------------------------------------------


def _label(schema: avro.schema.Schema) -> str:
    return str(_fullname(schema) or schema.type)


def _fullname(s: Any) -> str | None:
    """The full name of a named schema (record, enum, fixed); None for any other."""
    return str(s.fullname) if isinstance(s, avro.schema.NamedSchema) else None


_PROMOTIONS: Mapping[str, tuple[str, ...]] = {
    "long": ("int",),
    "float": ("int", "long"),
    "double": ("int", "long", "float"),
    "bytes": ("string",),
    "string": ("bytes",),
}
"""Reader type -> the writer types it reads besides its own."""

_NUMERIC = ("int", "long", "float", "double")
_NAMED = ("record", "enum", "fixed")

_LOGICAL_BASES: Mapping[str, tuple[str, ...]] = {
    "decimal": ("bytes", "fixed"),
    "big-decimal": ("bytes",),
    "uuid": ("string", "fixed"),
    "date": ("int",),
    "time-millis": ("int",),
    "time-micros": ("long",),
    "timestamp-millis": ("long",),
    "timestamp-micros": ("long",),
    "timestamp-nanos": ("long",),
    "local-timestamp-millis": ("long",),
    "local-timestamp-micros": ("long",),
    "local-timestamp-nanos": ("long",),
    "duration": ("fixed",),
}
"""The logical types of the Avro 1.12 specification, with the types they may annotate."""

_UNITS = {"millis": 10**3, "micros": 10**6, "nanos": 10**9}


def _logical(s: Any) -> str | None:
    """The logical type `s` carries as the spec defines it (`decimal(12, 2)`), or None (none, unknown or invalid)."""
    name = s.props.get("logicalType")
    if not isinstance(name, str) or s.type not in _LOGICAL_BASES.get(name, ()):
        return None
    if name == "decimal":
        precision, scale = s.props.get("precision"), s.props.get("scale", 0)
        if (
            type(precision) is not int
            or type(scale) is not int
            or not 0 <= scale <= precision
            or precision < 1
        ):
            return None
        if s.type == "fixed" and precision > math.floor(math.log10(2 ** (8 * s.size - 1) - 1)):
            return None
        return f"decimal({precision}, {scale})"
    if s.type == "fixed" and s.size != {"uuid": 16, "duration": 12}[name]:
        return None
    return name


def _describe(s: Any) -> str:
    if isinstance(s, avro.schema.UnionSchema):
        return " | ".join(_describe(b) for b in s.schemas)
    logical = _logical(s)
    if s.type in _NAMED:
        name = str(s.fullname)
        return f"{name} ({logical})" if logical else name
    if logical:
        return f"{s.type} ({logical})"
    if isinstance(s, avro.schema.ArraySchema):
        return f"array of {_describe(s.items)}"
    if isinstance(s, avro.schema.MapSchema):
        return f"map of {_describe(s.values)}"
    return str(s.type)


def _aliases(s: Any) -> set[str]:
    """The full names in the aliases of a named schema (unqualified ones are in its namespace)."""
    namespace = s.namespace
    found = s.props.get("aliases") or ()
    return {a if "." in a or not namespace else f"{namespace}.{a}" for a in found if isinstance(a, str)}


def _names_match(reader: Any, writer: Any) -> bool:
    """The spec: same unqualified name, or the writer's full name among the reader's aliases."""
    return bool(reader.name == writer.name or writer.fullname in _aliases(reader))


def _matches(reader: Any, writer: Any) -> bool:
    """Whether two non-union schemas match at the top (their contents are resolved afterwards)."""
    if reader.type != writer.type:
        return writer.type in _PROMOTIONS.get(reader.type, ())
    if reader.type in ("record", "enum"):
        return _names_match(reader, writer)
    if reader.type == "fixed":
        return _names_match(reader, writer) and reader.size == writer.size
    return True


def _branch(branches: Sequence[Any], writer: Any) -> Any:
    """The reader union's branch that reads `writer`: the same type (and full name), else the first
    that matches by name or alias, else the first it is promoted to; None if none matches."""
    key = _fullname(writer)
    for b in branches:
        if b.type == writer.type and _fullname(b) == key and _matches(b, writer):
            return b
    for b in branches:
        if b.type == writer.type and _matches(b, writer):
            return b
    for b in branches:
        if _matches(b, writer):
            return b
    return None


class _Walk:
    """One direction of one comparison: `reader` reading what `writer` wrote, problems by path."""

    def __init__(self, label: str, direction: str) -> None:
        self.label = label
        self.direction = direction
        self.found: list[Incompatibility] = []
        self.active: set[tuple[int, int]] = set()  # record pairs being walked (recursive types)

    def run(self, reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[Incompatibility]:
        start = self.label.rpartition(".")[2] if isinstance(reader, avro.schema.NamedSchema) else ""
        self.resolve(reader, writer, start)
        return self.found

    def add(self, path: str, kind: Kind, message: str) -> None:
        self.found.append(Incompatibility(self.label, path or "(top level)", kind, message, self.direction))

    def old_new(self, reader: Any, writer: Any) -> tuple[Any, Any]:
        return (writer, reader) if self.direction == "backward" else (reader, writer)

    def resolve(self, reader: Any, writer: Any, path: str) -> None:
        if isinstance(writer, avro.schema.UnionSchema):
            for branch in writer.schemas:
                if isinstance(reader, avro.schema.UnionSchema):
                    target = _branch(reader.schemas, branch)
                else:
                    target = reader if _matches(reader, branch) or _same_kind(reader, branch) else None
                if target is None:
                    self.branch_gone(reader, branch, path)
                else:
                    self.resolve(target, branch, path)
            return
        if isinstance(reader, avro.schema.UnionSchema):
            target = _branch(reader.schemas, writer)
            if target is None:
                target = next((b for b in reader.schemas if _same_kind(b, writer)), None)
            if target is None:
                self.branch_gone(reader, writer, path)
            else:
                self.resolve(target, writer, path)
            return
        if reader.type != writer.type and not _matches(reader, writer):
            self.type_changed(reader, writer, path)
            return
        kind = reader.type
        if kind == "record":
            self.record(reader, writer, path)
        elif kind == "enum":
            self.enum(reader, writer, path)
        elif kind == "fixed":
            self.fixed(reader, writer, path)
        elif kind == "array":
            self.resolve(reader.items, writer.items, f"{path}[]")
        elif kind == "map":
            self.resolve(reader.values, writer.values, f"{path}{{}}")
        self.logical(reader, writer, path)

    def renamed(self, reader: Any, writer: Any, path: str) -> None:
        old, new = self.old_new(reader, writer)
        if self.direction == "backward":
            said = (
                f"is renamed without an alias (list the old full name {old.fullname!r} in the new type's "
                "__avro_aliases__)"
            )
        else:
            said = (
                "is renamed, and readers on the old schema do not know the new name (aliases serve the new "
                "readers only: with the old name in __avro_aliases__, roll the readers first)"
            )
        self.add(path, Kind.NAME_MISMATCH, f"{reader.type} {old.fullname} -> {new.fullname} {said}")

    def record(self, reader: Any, writer: Any, path: str) -> None:
        if not _names_match(reader, writer):
            self.renamed(reader, writer, path)  # its fields are compared all the same: every change at once
        pair = (id(reader), id(writer))
        if pair in self.active:  # a recursive type met again: its fields are being compared already
            return
        self.active.add(pair)
        try:
            matched: set[str] = set()
            missing: list[Any] = []
            for rf in reader.fields:
                wf = _writer_field(writer, rf)
                fpath = f"{path}.{rf.name}" if path else rf.name
                if wf is None:
                    if not rf.has_default:
                        missing.append((rf, fpath))
                else:
                    matched.add(wf.name)
                    self.resolve(rf.type, wf.type, fpath)
            unmatched = [f.name for f in writer.fields if f.name not in matched]
            for rf, fpath in missing:
                self.missing_default(rf, fpath, unmatched)
        finally:
            self.active.discard(pair)

    def missing_default(self, field: Any, path: str, unmatched: list[str]) -> None:
        what = _describe(field.type)
        if self.direction == "backward":
            message = (
                f"field added without a default ({what}): records written with the old schema have no value "
                "for it (give it a default)"
            )
            if unmatched:
                message += (
                    f"; if it was renamed from {' or '.join(unmatched)}, list the old name in the field's "
                    "aliases (field(metadata={'aliases': [...]}))"
                )
        else:
            message = (
                f"field removed that has no default in the old schema ({what}): readers still on the old "
                "schema cannot fill it (keep the field, or give it a default in a release before removing it)"
            )
        self.add(path, Kind.READER_FIELD_MISSING_DEFAULT_VALUE, message)

    def enum(self, reader: Any, writer: Any, path: str) -> None:
        if not _names_match(reader, writer):
            self.renamed(reader, writer, path)
        extra = [s for s in writer.symbols if s not in reader.symbols]
        if extra and reader.props.get("default") not in reader.symbols:
            listed = ", ".join(extra)
            if self.direction == "backward":
                message = (
                    f"enum symbols removed: {listed} (old records may hold them; "
                    "keep them, or give the new enum a default symbol with __avro_default__)"
                )
            else:
                message = (
                    f"enum symbols added: {listed} (readers on the old schema do not know "
                    "them; give the enum a default symbol (__avro_default__) in an earlier release, or roll "
                    "the readers first)"
                )
            self.add(path, Kind.MISSING_ENUM_SYMBOLS, message)

    def fixed(self, reader: Any, writer: Any, path: str) -> None:
        if not _names_match(reader, writer):
            self.renamed(reader, writer, path)
        if reader.size != writer.size:
            old, new = self.old_new(reader, writer)
            self.add(
                path,
                Kind.FIXED_SIZE_MISMATCH,
                f"fixed {new.fullname} changed size from {old.size} to {new.size} bytes: values of one size "
                "cannot be read as the other (keep the size, or add a new field with a default)",
            )

    def logical(self, reader: Any, writer: Any, path: str) -> None:
        lr, lw = _logical(reader), _logical(writer)
        if lr == lw:
            return
        old, new = self.old_new(lr, lw)
        old_type, new_type = (_describe(t) for t in self.old_new(reader, writer))
        fix = f"keep {old_type}; to change it, add a new field with the new type and a default, and stop writing this one"
        if lr and lw and lr.startswith("decimal(") and lw.startswith("decimal("):
            (_, w_scale), (_, r_scale) = _decimal(lw), _decimal(lr)
            why = "Avro matches two decimals only with the same precision and scale"
            if w_scale != r_scale:
                written, read = Decimal(123).scaleb(-w_scale), Decimal(123).scaleb(-r_scale)
                why += (
                    f": a reader applies its own scale to the stored integer, so {written} written at scale "
                    f"{w_scale} reads as {read} at scale {r_scale}"
                )
            message = f"decimal changed from {old} to {new}: {why} ({fix})"
        else:
            stored = writer.type if writer.type == reader.type else f"{writer.type} (read as {reader.type})"
            why = f"the same stored {stored} means something else"
            units = _timestamp_units(lr), _timestamp_units(lw)
            if units[0] and units[1] and units[0][0] == units[1][0]:
                factor = max(units[0][1], units[1][1]) // min(units[0][1], units[1][1])
                why += f": read in the other unit, every time is {factor} times off"
            elif lr is None:
                why = f"the reader sees the raw {reader.type} where {lw} values were written"
            elif lw is None:
                why = f"plain {writer.type} values would be taken as {lr}"
            message = f"logical type changed from {old_type} to {new_type}: {why} ({fix})"
        self.add(path, Kind.LOGICAL_TYPE_MISMATCH, message)

    def branch_gone(self, reader: Any, writer_branch: Any, path: str) -> None:
        have = _describe(reader)
        if self.direction == "backward":
            message = (
                f"{_describe(writer_branch)} is no longer accepted (old type included it, new type is {have}): "
                f"old records holding one cannot be read (keep {_describe(writer_branch)} in the type until "
                "none is left)"
            )
        else:
            message = (
                f"{_describe(writer_branch)} is newly accepted, which the old type ({have}) cannot read "
                "(readers on the old schema fail on such records: roll the readers first)"
            )
        kind = (
            Kind.MISSING_UNION_BRANCH if isinstance(reader, avro.schema.UnionSchema) else Kind.TYPE_MISMATCH
        )
        self.add(path, kind, message)

    def type_changed(self, reader: Any, writer: Any, path: str) -> None:
        old, new = self.old_new(reader, writer)
        fix = f"keep {_describe(old)}, or add a new field of the new type with a default and stop writing this one"
        change = f"type changed from {_describe(old)} to {_describe(new)}"
        if old.type in _NUMERIC and new.type in _NUMERIC:
            narrowed = _NUMERIC.index(new.type) < _NUMERIC.index(old.type)
            change = f"type {'narrowed' if narrowed else 'widened'} from {_describe(old)} to {_describe(new)}"
            if narrowed:
                fix = f"old values may not fit; keep {_describe(old)}"
            else:
                fix = "readers on the old schema cannot hold the wider values; roll the readers first"
        self.add(
            path, Kind.TYPE_MISMATCH, f"{change}: {_describe(reader)} cannot read {_describe(writer)} ({fix})"
        )


def _same_kind(reader: Any, writer: Any) -> bool:
    """Two named types of one kind that do not match by name or size: walked anyway, so that a renamed
    record's field changes are all reported with the rename."""
    return bool(reader.type == writer.type and reader.type in _NAMED)


def _writer_field(writer: Any, reader_field: Any) -> Any:
    """The writer's field a reader field reads: by name, else by one of the reader field's aliases."""
    fields = writer.fields_dict
    if reader_field.name in fields:
        return fields[reader_field.name]
    for alias in reader_field.props.get("aliases") or ():
        if alias in fields:
            return fields[alias]
    return None


def _decimal(logical: str) -> tuple[int, int]:
    precision, scale = logical.removeprefix("decimal(").removesuffix(")").split(", ")
    return int(precision), int(scale)


def _timestamp_units(logical: str | None) -> tuple[str, int] | None:
    """`('timestamp', 1000)` for timestamp-millis: the family and units per second of a time logical type."""
    if logical is None:
        return None
    family, _, unit = logical.rpartition("-")
    return (family, _UNITS[unit]) if unit in _UNITS and family else None
