"""Schema compatibility, decided by the `avro` package's implementation of Avro's resolution rules.

`avro.compatibility.ReaderWriterCompatibilityChecker` (Apache Avro's own port of the
Java `SchemaCompatibility`) decides whether a reader schema can read what a writer
schema wrote. It reports problems as JSON-pointer-like locations with their messages
merged into sets, so this module walks the two schemas alongside it — asking the
checker at every step — only to attribute each problem to a field path
(`Order.items[].price`) and to say what changed in the user's terms.

Modes, as in Confluent Schema Registry:
- backward: the new schema reads records written with the old one (upgrade readers first);
- forward: the old schema reads records written with the new one (upgrade writers first);
- full: both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
    lookup_writer_field,
    schema_name_equals,
)

from pipeteer.codec.schema import Schema
from pipeteer.errors import SchemaError


class Mode(StrEnum):
    """Which direction(s) must stay readable."""

    BACKWARD = "backward"
    FORWARD = "forward"
    FULL = "full"


@dataclass(frozen=True)
class Incompatibility:
    """One incompatible change: in which state type, at which field path, what changed."""

    type: str
    """Full name of the state's schema (or the type's name for unnamed schemas)."""
    path: str
    """Where: `Record.field.sub[]` (`[]` = array items, `{}` = map values)."""
    kind: str
    """Avro's incompatibility kind: reader_field_missing_default_value, type_mismatch, missing_enum_symbols,
    missing_union_branch, name_mismatch or fixed_size_mismatch."""
    message: str
    """What changed and why it breaks, in words."""
    direction: str
    """`backward` (new schema cannot read old records) or `forward` (old schema cannot read new records)."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.direction}]"


def parse(schema: Schema) -> avro.schema.Schema:
    """An `avro` package schema object (raises `SchemaError` for an invalid schema)."""
    try:
        return avro.schema.parse(json.dumps(schema))
    except Exception as exc:
        raise SchemaError(f"invalid Avro schema: {exc}") from exc


def compare(old: Schema, new: Schema, mode: Mode | str, *, label: str | None = None) -> list[Incompatibility]:
    """Every incompatible change from `old` to `new` under `mode` (empty list: compatible)."""
    mode = Mode(mode)
    old_s, new_s = parse(old), parse(new)
    label = label or _label(new_s)
    found: list[Incompatibility] = []
    if mode in (Mode.BACKWARD, Mode.FULL):
        found += _Walk(label, "backward").run(reader=new_s, writer=old_s)
    if mode in (Mode.FORWARD, Mode.FULL):
        found += _Walk(label, "forward").run(reader=old_s, writer=new_s)
    return found


def reader_problems(reader: Schema, writer: Schema) -> list[str]:
    """Why `reader` cannot read records written with `writer` (empty: it can)."""
    reader_s = parse(reader)
    return [str(i) for i in _Walk(_label(reader_s), "backward").run(reader=reader_s, writer=parse(writer))]


def _label(schema: avro.schema.Schema) -> str:
    fullname = getattr(schema, "fullname", None)
    return str(fullname) if fullname else str(schema.type)


def _describe(s: avro.schema.Schema) -> str:
    fullname = getattr(s, "fullname", None)
    if fullname:
        return str(fullname)
    logical = s.props.get("logicalType")
    if logical:
        return f"{s.type} ({logical})"
    if isinstance(s, avro.schema.ArraySchema):
        return f"array of {_describe(s.items)}"
    if isinstance(s, avro.schema.MapSchema):
        return f"map of {_describe(s.values)}"
    if isinstance(s, avro.schema.UnionSchema):
        return " | ".join(_describe(b) for b in s.schemas)
    return str(s.type)


def _key(s: avro.schema.Schema) -> str:
    """Which union branch two schemas occupy (named types by name, others by type)."""
    return str(getattr(s, "fullname", None) or s.type)


_NUMERIC = ("int", "long", "float", "double")
_NAMED = ("record", "enum", "fixed")


class _Walk:
    def __init__(self, label: str, direction: str) -> None:
        self.label = label
        self.direction = direction
        self.checker = ReaderWriterCompatibilityChecker()
        self.found: list[Incompatibility] = []

    def run(self, reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[Incompatibility]:
        start = self.label.rpartition(".")[2] if getattr(reader, "fullname", None) else ""
        self.walk(reader, writer, start)
        return self.found

    def ok(self, reader: avro.schema.Schema, writer: avro.schema.Schema) -> bool:
        result = self.checker.get_compatibility(reader, writer)
        return bool(result.compatibility is SchemaCompatibilityType.compatible)

    def add(self, path: str, kind: SchemaIncompatibilityType, message: str) -> None:
        self.found.append(
            Incompatibility(self.label, path or "(top level)", kind.value, message, self.direction)
        )

    def walk(self, reader: Any, writer: Any, path: str) -> None:
        if self.ok(reader, writer):
            return
        if isinstance(writer, avro.schema.UnionSchema):
            for branch in writer.schemas:
                if self.ok(reader, branch):
                    continue
                target = self._matching_branch(reader, branch)
                if target is not None:
                    self.walk(target, branch, path)
                else:
                    self.branch_gone(reader, branch, path)
            return
        if isinstance(reader, avro.schema.UnionSchema):
            target = self._matching_branch(reader, writer)
            if target is not None:
                self.walk(target, writer, path)
            else:
                self.branch_gone(reader, writer, path)
            return
        if reader.type == writer.type == "record":
            self.record(reader, writer, path)
        elif reader.type == writer.type == "array":
            self.walk(reader.items, writer.items, f"{path}[]")
        elif reader.type == writer.type == "map":
            self.walk(reader.values, writer.values, f"{path}{{}}")
        elif reader.type == writer.type == "enum":
            self.enum(reader, writer, path)
        elif reader.type == writer.type == "fixed":
            self.add(
                path,
                SchemaIncompatibilityType.fixed_size_mismatch,
                f"fixed size {writer.size} -> {reader.size}",
            )
        else:
            self.type_changed(reader, writer, path)

    def _matching_branch(self, reader: Any, writer_branch: Any) -> Any:
        branches = reader.schemas if isinstance(reader, avro.schema.UnionSchema) else [reader]
        key = _key(writer_branch)
        for b in branches:
            if _key(b) == key:
                return b
        for b in branches:  # a renamed record or enum that lists the old name in its aliases
            if b.type == writer_branch.type and b.type in _NAMED and schema_name_equals(b, writer_branch):
                return b
        return None

    def record(self, reader: Any, writer: Any, path: str) -> None:
        if not schema_name_equals(reader, writer):
            self.add(
                path,
                SchemaIncompatibilityType.name_mismatch,
                f"record {self._old_new(writer.fullname, reader.fullname)} is renamed without an alias "
                "(add the old full name to __avro_aliases__)",
            )
        for rf in reader.fields:
            wf = lookup_writer_field(writer_schema=writer, reader_field=rf)
            fpath = f"{path}.{rf.name}" if path else rf.name
            if wf is None:
                if not rf.has_default:
                    self.missing_default(fpath)
            else:
                self.walk(rf.type, wf.type, fpath)

    def missing_default(self, path: str) -> None:
        if self.direction == "backward":
            message = "field added without a default: records written with the old schema have no value for it (give it a default)"
        else:
            message = (
                "field removed that has no default in the old schema: readers still on the old schema cannot "
                "fill it (keep the field, or give it a default in a release before removing it)"
            )
        self.add(path, SchemaIncompatibilityType.reader_field_missing_default_value, message)

    def enum(self, reader: Any, writer: Any, path: str) -> None:
        if not schema_name_equals(reader, writer):
            self.add(
                path,
                SchemaIncompatibilityType.name_mismatch,
                f"enum {self._old_new(writer.fullname, reader.fullname)} is renamed without an alias",
            )
        extra = sorted(set(writer.symbols) - set(reader.symbols))
        if extra and reader.props.get("default") not in reader.symbols:
            listed = ", ".join(extra)
            if self.direction == "backward":
                message = f"enum symbols removed: {listed} (old records may hold them; keep them or set __avro_default__)"
            else:
                message = f"enum symbols added: {listed} (readers on the old schema do not know them; give the old enum a default)"
            self.add(path, SchemaIncompatibilityType.missing_enum_symbols, message)

    def branch_gone(self, reader: Any, writer_branch: Any, path: str) -> None:
        have = _describe(reader)
        if self.direction == "backward":
            message = (
                f"{_describe(writer_branch)} is no longer accepted (old type included it, new type is {have})"
            )
        else:
            message = f"{_describe(writer_branch)} is newly accepted, which the old type ({have}) cannot read"
        kind = (
            SchemaIncompatibilityType.missing_union_branch
            if isinstance(reader, avro.schema.UnionSchema)
            else SchemaIncompatibilityType.type_mismatch
        )
        self.add(path, kind, message)

    def type_changed(self, reader: Any, writer: Any, path: str) -> None:
        old, new = (writer, reader) if self.direction == "backward" else (reader, writer)
        change = f"type changed from {_describe(old)} to {_describe(new)}"
        if old.type in _NUMERIC and new.type in _NUMERIC:
            verb = "narrowed" if _NUMERIC.index(new.type) < _NUMERIC.index(old.type) else "widened"
            change = f"type {verb} from {_describe(old)} to {_describe(new)}"
        self.add(
            path,
            SchemaIncompatibilityType.type_mismatch,
            f"{change}: {_describe(reader)} cannot read {_describe(writer)}",
        )

    def _old_new(self, writer_name: str, reader_name: str) -> str:
        old, new = (writer_name, reader_name) if self.direction == "backward" else (reader_name, writer_name)
        return f"{old} -> {new}"
