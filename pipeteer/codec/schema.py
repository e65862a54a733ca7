"""Avro schema JSON from Python types, deterministically.

>>> from dataclasses import dataclass
>>> @dataclass
... class Input:
...     img: bytes
>>> schema_for(Input, namespace="demo")
{'type': 'record', 'name': 'Input', 'namespace': 'demo', 'fields': [{'name': 'img', 'type': 'bytes'}]}
>>> schema_for(bytes | None)
['null', 'bytes']

The same types always give the same JSON (field order is declaration order, union
branches put `null` — or the branch of the field's default — first, then declaration
order), so schema files can be golden-tested and fingerprints are stable.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from pipeteer.codec.model import derive
from pipeteer.codec.nodes import (
    NO_DEFAULT,
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

Schema = dict[str, Any] | str | list[Any]
"""Avro schema JSON: a type name, a union (list) or a complex type (dict)."""

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_EPOCH_DAY = datetime.date(1970, 1, 1)


def schema_for(tp: Any, *, namespace: str | None = None) -> Schema:
    """The Avro schema of a Python type.

    Records and enums are named `<namespace>.<class qualname>`; the namespace defaults to
    the class's module. Raises `SchemaError` naming the class, field and type when a type
    has no Avro equivalent.
    """
    return node_schema(derive(tp, namespace))


def node_schema(node: Node) -> Schema:
    """The schema JSON of a derived node tree (named types are defined at first use)."""
    return _Emitter().emit(node)


def full_name(schema: Schema) -> str | None:
    """The full name of a named schema (`ns.Name`), or None for unnamed ones."""
    if isinstance(schema, dict) and "name" in schema:
        name = str(schema["name"])
        namespace = schema.get("namespace")
        return f"{namespace}.{name}" if namespace and "." not in name else name
    return None


def canonical_form(schema: Schema) -> str:
    """Avro's Parsing Canonical Form of a schema (what fingerprints are computed on)."""
    return to_parsing_canonical_form(schema)


def fingerprint(schema: Schema) -> bytes:
    """The CRC-64-AVRO fingerprint of a schema, as the 8 little-endian bytes single-object encoding uses."""
    return bytes.fromhex(_fastavro_fingerprint(canonical_form(schema), "CRC-64-AVRO"))


def dumps(schema: Schema) -> str:
    """The schema as pretty-printed JSON with sorted keys: the `.avsc` file format."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


class _Emitter:
    def __init__(self) -> None:
        self.defined: set[str] = set()

    def emit(self, node: Node) -> Schema:
        if isinstance(node, PrimNode):
            return node.avro
        if isinstance(node, LogicalNode):
            out: dict[str, Any] = {"type": node.base, "logicalType": node.logical}
            if node.logical == "decimal":
                out["precision"] = node.precision
                out["scale"] = node.scale
            return out
        if isinstance(node, ArrayNode):
            return {"type": "array", "items": self.emit(node.items)}
        if isinstance(node, MapNode):
            return {"type": "map", "values": self.emit(node.values)}
        if isinstance(node, UnionNode):
            return [self.emit(b) for b in node.branches]
        if isinstance(node, NamedNode):
            if node.fullname in self.defined:
                return node.fullname
            self.defined.add(node.fullname)
            return self._named(node)
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _named(self, node: NamedNode) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "record" if isinstance(node, RecordNode) else "enum",
            "name": node.name,
        }
        if node.namespace:
            out["namespace"] = node.namespace
        if node.doc:
            out["doc"] = node.doc
        if node.aliases:
            out["aliases"] = list(node.aliases)
        if isinstance(node, EnumNode):
            out["symbols"] = list(node.symbols)
            if node.default is not None:
                out["default"] = node.default
            return out
        fields = []
        for f in node.fields if isinstance(node, RecordNode) else ():
            entry: dict[str, Any] = {"name": f.name, "type": self.emit(f.node)}
            if f.doc:
                entry["doc"] = f.doc
            if f.aliases:
                entry["aliases"] = list(f.aliases)
            if f.default is not NO_DEFAULT:
                entry["default"] = default_json(f.node, f.default)
            fields.append(entry)
        out["fields"] = fields
        return out


def default_json(node: Node, value: Any) -> Any:
    """A Python value (already checked to fit `node`) as an Avro JSON default.

    For a union, the value belongs to the first branch (the deriver put it first).
    """
    if isinstance(node, UnionNode):
        return default_json(node.branches[0], value)
    if isinstance(node, PrimNode):
        if node.avro == "bytes":
            # Avro spells bytes defaults as strings whose code points 0-255 are the bytes.
            return bytes(value).decode("latin-1")
        if node.avro == "double":
            return float(value)
        return value
    if isinstance(node, LogicalNode):
        return _logical_default(node, value)
    if isinstance(node, EnumNode):
        return value.name
    if isinstance(node, ArrayNode):
        return [default_json(node.items, v) for v in value]
    if isinstance(node, MapNode):
        return {k: default_json(node.values, v) for k, v in value.items()}
    if isinstance(node, RecordNode):
        return {f.name: default_json(f.node, getattr(value, f.name)) for f in node.fields}
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover


def _logical_default(node: LogicalNode, value: Any) -> Any:
    if node.logical == "timestamp-micros":
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if node.logical == "date":
        return (value - _EPOCH_DAY).days
    if node.logical == "uuid":
        return str(value)
    unscaled = int(value.scaleb(node.scale))
    size = max(1, (unscaled.bit_length() + 8) // 8)
    return unscaled.to_bytes(size, "big", signed=True).decode("latin-1")
