"""Python types → the Avro node tree (see `nodes`), from which schemas and converters are built.

Deriving the tree is the only place that looks at annotations, so every unsupported
type is reported here (when a codec is made, before any stage runs), naming the
class, the field and the type.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import decimal
import enum
import functools
import inspect
import itertools
import os
import re
import sys
import textwrap
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pipeteer.codec.check import mismatch
from pipeteer.codec.nodes import (
    NO_DEFAULT,
    ArrayNode,
    EnumNode,
    FieldNode,
    LogicalNode,
    MapNode,
    NamedNode,
    Node,
    PrimNode,
    RecordNode,
    UnionNode,
)
from pipeteer.errors import SchemaError
from pipeteer.types import NoneType, decimal_mark, field_types, type_name

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------------------------------------- derivation


def derive(tp: Any, namespace: str | None = None) -> Node:
    """The node tree of `tp`; raises `SchemaError` naming the class, field and type on failure."""
    if namespace is not None:
        _check_fullname(namespace, f"namespace {namespace!r}")
    return _Deriver(namespace).node(tp, _Where(None, None, tp))


@dataclass(frozen=True)
class _Where:
    """Where in the user's types we are, for error messages."""

    cls: type | None
    fieldname: str | None
    declared: Any

    def __str__(self) -> str:
        if self.cls is None:
            return f"type {type_name(self.declared)}"
        return f"field '{self.fieldname}' of {_qualified(self.cls)} (declared {type_name(self.declared)})"


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def importable_module(cls: type) -> str:
    """The module a class is imported from in other processes: `cls.__module__`, except for `__main__`.

    A state class defined in a stage run as a script (`python stage.py`, `python -m pkg.stage`)
    is `__main__.Doc` there but `stage.Doc` in the process that imports it: its Avro name (and so
    its fingerprint) must not depend on how the module was started. Only a class with no module
    file at all (a notebook, `python -c`) keeps `__main__`.
    """
    module = cls.__module__
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name).removesuffix(".__main__")
    file = getattr(main, "__file__", None)
    if file:  # a script: its name, under the packages (folders with __init__.py) that hold it
        path = Path(file).resolve()
        parts = [path.stem]
        folder = path.parent
        while (folder / "__init__.py").exists() and folder.name.isidentifier():
            parts.insert(0, folder.name)
            folder = folder.parent
        if all(p.isidentifier() for p in parts):
            return ".".join(parts)
    return module


def _fail(where: _Where, tp: Any, problem: str) -> SchemaError:
    inner = "" if tp is where.declared else f": {type_name(tp)}"
    return SchemaError(f"cannot derive an Avro schema for {where}{inner}: {problem}")


_PRIMS: dict[Any, str] = {
    NoneType: "null",
    bool: "boolean",
    int: "long",
    float: "double",
    bytes: "bytes",
    str: "string",
}
_LOGICAL: dict[Any, tuple[str, str]] = {
    datetime.datetime: ("timestamp-micros", "long"),
    datetime.date: ("date", "int"),
    uuid.UUID: ("uuid", "string"),
}
_ADVICE: dict[Any, str] = {
    typing.Any: "Any has no Avro schema; declare the concrete type (a dataclass, or a union of them)",
    object: "object has no Avro schema; declare the concrete type",
    set: "sets are not supported; use list[T]",
    frozenset: "sets are not supported; use list[T]",
    tuple: "tuples are not supported; use list[T] or a dataclass",
    bytearray: "declare bytes (bytearray and memoryview values are accepted for bytes)",
    complex: "complex numbers are not supported; use a dataclass with two floats",
    decimal.Decimal: (
        "Avro decimals need a precision and scale; declare Annotated[Decimal, AvroDecimal(precision=..., scale=...)]"
    ),
}


class _Deriver:
    def __init__(self, namespace: str | None) -> None:
        self.namespace = namespace
        self.named: dict[str, NamedNode] = {}
        self.by_class: dict[type, NamedNode] = {}

    def node(self, tp: Any, where: _Where) -> Node:
        if tp is None or tp is NoneType:
            return PrimNode(NoneType, "null")
        origin = get_origin(tp)
        if origin is Annotated:
            return self._annotated(tp, where)
        if origin in (Union, types.UnionType):
            return self._union(tp, where)
        if isinstance(tp, typing.NewType):
            return self.node(tp.__supertype__, where)
        if origin is not None:
            return self._generic(tp, origin, where)
        if isinstance(tp, type) and tp in _PRIMS:
            return PrimNode(tp, _PRIMS[tp])
        if isinstance(tp, type) and tp in _LOGICAL:
            logical, base = _LOGICAL[tp]
            return LogicalNode(tp, logical, base)
        if tp in _ADVICE:
            raise _fail(where, tp, _ADVICE[tp])
        if tp is list or tp is dict:
            raise _fail(where, tp, f"give the {'item' if tp is list else 'value'} type: {tp.__name__}[...]")
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(tp, where)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._record(tp, where)
        if isinstance(tp, typing.TypeVar):
            raise _fail(where, tp, "type variables have no Avro schema; use a concrete type")
        if isinstance(tp, str | typing.ForwardRef):
            raise _fail(where, tp, "unresolved forward reference; define the class at module level")
        if isinstance(tp, type):
            raise _fail(
                where,
                tp,
                f"{type_name(tp)} is not a dataclass, enum or supported builtin; decorate it with @dataclass",
            )
        raise _fail(where, tp, f"{tp!r} is not a type")

    def _annotated(self, tp: Any, where: _Where) -> Node:
        base, mark = decimal_mark(tp)
        if mark is None:
            return self.node(base, where)
        if base is not decimal.Decimal:
            raise _fail(where, tp, "AvroDecimal annotates Decimal only")
        return LogicalNode(tp, "decimal", "bytes", mark.precision, mark.scale)

    def _union(self, tp: Any, where: _Where) -> Node:
        members = get_args(tp)
        ordered = [m for m in members if m is NoneType] + [m for m in members if m is not NoneType]
        branches: list[Node] = []
        seen: dict[str, Any] = {}
        for m in ordered:
            node = self.node(m, where)
            if isinstance(node, UnionNode):  # Annotated[...] unions nested in unions
                raise _fail(where, tp, "nested unions are not supported")
            if node.key in seen:
                raise _fail(
                    where,
                    tp,
                    f"{type_name(seen[node.key])} and {type_name(m)} are both Avro '{node.key}'; "
                    "an Avro union holds one of each unnamed type",
                )
            seen[node.key] = m
            branches.append(node)
        return UnionNode(tp, branches)

    def _generic(self, tp: Any, origin: Any, where: _Where) -> Node:
        args = get_args(tp)
        if origin is list:
            return ArrayNode(tp, self.node(args[0], where))
        if origin is dict:
            if args[0] is not str:
                raise _fail(
                    where, tp, f"Avro map keys are strings; {type_name(args[0])} keys are not supported"
                )
            return MapNode(tp, self.node(args[1], where))
        if origin in _ADVICE:
            raise _fail(where, tp, _ADVICE[origin])
        if isinstance(origin, type) and dataclasses.is_dataclass(origin):
            raise _fail(where, tp, "generic dataclasses are not supported; declare a concrete dataclass")
        if origin is typing.Literal:
            raise _fail(where, tp, "Literal is not supported; use an Enum")
        raise _fail(where, tp, f"{type_name(tp)} is not supported (use list[T], dict[str, T], X | None)")

    def _fullname(self, cls: type, where: _Where) -> str:
        namespace = self.namespace if self.namespace is not None else importable_module(cls)
        # Classes defined inside functions keep a readable name; two of them colliding is caught below.
        qualname = cls.__qualname__.replace("<locals>.", "")
        fullname = f"{namespace}.{qualname}" if namespace else qualname
        _check_fullname(fullname, f"the Avro name {fullname!r} of {_qualified(cls)}", where)
        clash = self.named.get(fullname)
        if clash is not None and clash.tp is not cls:
            raise _fail(
                where,
                cls,
                f"{_qualified(cls)} and {_qualified(clash.tp)} both map to the Avro name {fullname!r}; rename one",
            )
        return fullname

    def _enum(self, cls: type[enum.Enum], where: _Where) -> Node:
        known = self.by_class.get(cls)
        if known is not None:
            return known
        if issubclass(cls, enum.Flag):
            raise _fail(where, cls, "Flag enums (combinable members) are not supported; use list[AnEnum]")
        fullname = self._fullname(cls, where)
        symbols = tuple(m.name for m in cls)
        for s in symbols:
            if not _NAME.match(s):
                raise _fail(
                    where, cls, f"enum member {s!r} is not a valid Avro symbol ([A-Za-z_][A-Za-z0-9_]*)"
                )
        default = cls.__dict__.get("__avro_default__")
        if default is not None and default not in symbols:
            raise _fail(
                where, cls, f"__avro_default__ {default!r} is not a member name of {cls.__qualname__}"
            )
        node = EnumNode(cls, fullname, _class_doc(cls), _aliases(cls, where), symbols, default)
        self.named[fullname] = self.by_class[cls] = node
        return node

    def _record(self, cls: type, where: _Where) -> Node:
        known = self.by_class.get(cls)
        if known is not None:
            return known  # a reference: recursive or repeated use of the same class
        fullname = self._fullname(cls, where)
        node = RecordNode(
            cls, fullname, _class_doc(cls), _aliases(cls, where), slots="__slots__" in cls.__dict__
        )
        self.named[fullname] = self.by_class[cls] = node
        hints = _hints(cls)
        docs = _attribute_docs(cls)
        for f in dataclasses.fields(cls):
            fwhere = _Where(cls, f.name, hints.get(f.name, f.type))
            if not _NAME.match(f.name):
                raise _fail(fwhere, fwhere.declared, "the field name is not a valid Avro name")
            if f.name not in hints:
                raise _fail(fwhere, f.type, f"cannot resolve the annotation {f.type!r}")
            meta = f.metadata
            doc = meta.get("doc") if isinstance(meta.get("doc"), str) else docs.get(f.name)
            aliases = tuple(meta.get("aliases", ()))
            fnode = FieldNode(f.name, self.node(hints[f.name], fwhere), _field_default(f), doc, aliases)
            _check_default(fnode, fwhere)
            node.fields.append(fnode)
        return node


def _check_default(fnode: FieldNode, where: _Where) -> None:
    """Validate a field's default; put the union branch it belongs to first, as Avro requires."""
    if fnode.default is NO_DEFAULT:
        return
    problem = mismatch(fnode.node, fnode.default)
    if problem is not None:
        raise _fail(where, where.declared, f"the default {fnode.default!r} does not fit ({problem})")
    if isinstance(fnode.node, UnionNode):
        branches = fnode.node.branches
        first = next(b for b in branches if mismatch(b, fnode.default) is None)
        fnode.node = UnionNode(fnode.node.tp, [first, *(b for b in branches if b is not first)])


def _check_fullname(fullname: str, what: str, where: _Where | None = None) -> None:
    for part in fullname.split("."):
        if not _NAME.match(part):
            problem = f"{what} has the part {part!r}, which is not a valid Avro name ([A-Za-z_][A-Za-z0-9_]*)"
            raise _fail(where, where.declared, problem) if where else SchemaError(problem)


def _aliases(cls: type, where: _Where) -> tuple[str, ...]:
    aliases = cls.__dict__.get("__avro_aliases__", ())
    if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
        raise _fail(where, cls, "__avro_aliases__ must be a tuple of full Avro names")
    return tuple(aliases)


def _hints(cls: type) -> dict[str, Any]:
    try:
        return field_types(cls)  # resolved as `conforms` resolves them
    except Exception:
        localns = {**vars(cls), cls.__name__: cls}
        hints: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # resolve field by field to name the culprit
            if not isinstance(f.type, str):
                hints[f.name] = f.type
                continue
            try:
                module = __import__(cls.__module__, fromlist=["_"])
                hints[f.name] = eval(f.type, vars(module), localns)
            except Exception as exc:
                raise SchemaError(
                    f"cannot derive an Avro schema for field '{f.name}' of {_qualified(cls)} "
                    f"(declared {f.type!r}): the annotation does not resolve ({exc}); "
                    "define the types it names at module level"
                ) from exc
        return hints


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    factory: Callable[[], Any] | Any = f.default_factory
    # Only factories whose result is fixed by the types are turned into Avro defaults;
    # `datetime.now`-like factories would make the schema differ between runs.
    if factory in (list, dict) or (isinstance(factory, type) and dataclasses.is_dataclass(factory)):
        try:
            return factory()
        except TypeError:
            return NO_DEFAULT
    return NO_DEFAULT


def _class_doc(cls: type) -> str | None:
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return None
    if dataclasses.is_dataclass(cls):
        # @dataclass invents "Name(a: int, ...)" when the class has no docstring: that is not a doc.
        try:
            invented = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
        except (TypeError, ValueError):
            invented = None
        if doc == invented:
            return None
    if issubclass(cls, enum.Enum) and doc in ("An enumeration.", enum.Enum.__doc__):
        return None
    return inspect.cleandoc(doc)


def _attribute_docs(cls: type) -> dict[str, str]:
    """Field docstrings (a string literal right after the field), from the class and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        docs.update(_own_attribute_docs(klass))
    return docs


def _own_attribute_docs(cls: type) -> Mapping[str, str]:
    try:
        filename = inspect.getsourcefile(cls)
    except (OSError, TypeError):  # a built-in or runtime-made class: no source, no field docs
        return {}
    if filename is None:
        return {}
    found = _module_field_docs(filename, _mtime(filename)).get(cls.__qualname__)
    if found is not None:
        return found
    try:  # not found by name (e.g. made by a decorator or exec): the class's own source, if any
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return {}  # classes made at runtime have no source: they simply have no field docs
    if not tree.body or not isinstance(tree.body[0], ast.ClassDef):
        return {}
    return _field_docs(tree.body[0])


def _mtime(filename: str) -> float:
    try:
        return os.stat(filename).st_mtime
    except OSError:
        return 0.0


@functools.lru_cache(maxsize=64)
def _module_field_docs(filename: str, mtime: float) -> dict[str, dict[str, str]]:
    """The field docs of every class in a source file, by qualified name: the file is parsed once,
    not once per class (`inspect.getsource` of a class parses its whole module each time)."""
    try:
        with open(filename, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return {}
    out: dict[str, dict[str, str]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                qualname = prefix + node.name
                out.setdefault(qualname, _field_docs(node))
                visit(node.body, qualname + ".")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, f"{prefix}{node.name}.<locals>.")

    visit(tree.body, "")
    return out


def _field_docs(node: ast.ClassDef) -> dict[str, str]:
    docs: dict[str, str] = {}
    for stmt, after in itertools.pairwise(node.body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs
