"""The Avro node tree that schemas and converters are built from.

A node is one Avro type plus the Python type it came from. The tree may be cyclic:
a recursive dataclass is one `RecordNode` reachable from its own fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

NO_DEFAULT: Any = dataclasses.MISSING
"""Marks a field that has no Avro default."""


@dataclass(eq=False)
class Node:
    """One Avro type. `tp` is the Python type it came from (for messages)."""

    tp: Any

    @property
    def key(self) -> str:
        """What makes two union branches the same Avro type (Avro allows one per key)."""
        raise NotImplementedError


@dataclass(eq=False)
class PrimNode(Node):
    avro: str  # null, boolean, long, double, bytes, string

    @property
    def key(self) -> str:
        return self.avro


@dataclass(eq=False)
class LogicalNode(Node):
    logical: str  # timestamp-micros, date, decimal, uuid
    base: str
    precision: int = 0
    scale: int = 0

    @property
    def key(self) -> str:
        return self.base


@dataclass(eq=False)
class ArrayNode(Node):
    items: Node

    @property
    def key(self) -> str:
        return "array"


@dataclass(eq=False)
class MapNode(Node):
    values: Node

    @property
    def key(self) -> str:
        return "map"


@dataclass(eq=False)
class UnionNode(Node):
    branches: list[Node]

    @property
    def key(self) -> str:
        return "union"


@dataclass(eq=False)
class NamedNode(Node):
    fullname: str
    doc: str | None
    aliases: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.fullname

    @property
    def name(self) -> str:
        return self.fullname.rpartition(".")[2]

    @property
    def namespace(self) -> str:
        return self.fullname.rpartition(".")[0]


@dataclass(eq=False)
class EnumNode(NamedNode):
    symbols: tuple[str, ...] = ()
    default: str | None = None


@dataclass(eq=False)
class FieldNode:
    name: str
    node: Node
    default: Any = NO_DEFAULT  # a Python value of the field's type
    doc: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(eq=False)
class RecordNode(NamedNode):
    fields: list[FieldNode] = field(default_factory=list)
    slots: bool = False


def walk_named(node: Node) -> list[NamedNode]:
    """Every record and enum reachable from `node`, depth first, each once."""
    seen: dict[int, NamedNode] = {}

    def visit(n: Node) -> None:
        if isinstance(n, NamedNode):
            if id(n) in seen:
                return
            seen[id(n)] = n
        if isinstance(n, RecordNode):
            for f in n.fields:
                visit(f.node)
        elif isinstance(n, ArrayNode):
            visit(n.items)
        elif isinstance(n, MapNode):
            visit(n.values)
        elif isinstance(n, UnionNode):
            for b in n.branches:
                visit(b)

    visit(node)
    return list(seen.values())
