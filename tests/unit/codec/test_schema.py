"""Schema derivation: Python types → Avro schema JSON."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import subprocess
import sys
import typing
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, NewType, Optional

import pytest

from pipeteer.codec import AvroDecimal, canonical_form, dumps, fingerprint, schema_for
from pipeteer.errors import SchemaError
from tests.unit.codec import sample_types as st

NS = "tests.unit.codec.sample_types"


@pytest.mark.parametrize(
    ("tp", "expected"),
    [
        (bytes, "bytes"),
        (str, "string"),
        (int, "long"),
        (float, "double"),
        (bool, "boolean"),
        (None, "null"),
        (type(None), "null"),
        (bytes | None, ["null", "bytes"]),
        (None | bytes, ["null", "bytes"]),
        (Optional[int], ["null", "long"]),  # noqa: UP045  (the spelling under test)
        (list[int], {"type": "array", "items": "long"}),
        (dict[str, float], {"type": "map", "values": "double"}),
        (
            list[dict[str, bytes | None]],
            {"type": "array", "items": {"type": "map", "values": ["null", "bytes"]}},
        ),
        (datetime.datetime, {"type": "long", "logicalType": "timestamp-micros"}),
        (datetime.date, {"type": "int", "logicalType": "date"}),
        (uuid.UUID, {"type": "string", "logicalType": "uuid"}),
        (
            Annotated[decimal.Decimal, AvroDecimal(10, 3)],
            {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 3},
        ),
        (Annotated[str, "any other metadata is ignored"], "string"),
        (NewType("UserId", str), "string"),
        (int | str | None, ["null", "long", "string"]),
    ],
)
def test_builtin_types(tp: Any, expected: Any) -> None:
    assert schema_for(tp) == expected


def test_dataclass_record_with_docs_defaults_and_namespace() -> None:
    schema = schema_for(st.Image)
    assert schema == {
        "type": "record",
        "name": "Image",
        "namespace": NS,
        "doc": "An image to correct.",
        "fields": [
            {"name": "img", "type": "bytes", "doc": "The encoded image (PNG or JPEG)."},
            {"name": "name", "type": "string", "default": "unnamed"},
        ],
    }


def test_explicit_namespace_overrides_module() -> None:
    schema = schema_for(st.Corrected, namespace="pipeteer.perspective_correction")
    assert isinstance(schema, dict)
    assert (schema["name"], schema["namespace"]) == ("Corrected", "pipeteer.perspective_correction")


def test_no_doc_when_the_class_has_no_docstring() -> None:
    # @dataclass invents "Corrected(img: bytes, corrected: bytes)"; that is not documentation
    schema = schema_for(st.Corrected)
    assert isinstance(schema, dict) and "doc" not in schema


def _field(schema: Any, name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def test_defaults_become_avro_defaults() -> None:
    schema = schema_for(st.Review)
    assert "default" not in _field(schema, "id")
    assert _field(schema, "attempts")["default"] == 0
    assert _field(schema, "tags")["default"] == []
    assert _field(schema, "notes")["default"] == {}
    assert _field(schema, "when") == {
        "name": "when",
        "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
        "default": None,
    }
    assert _field(schema, "day")["default"] == (datetime.date(2024, 1, 31) - datetime.date(1970, 1, 1)).days
    # Avro spells bytes (and decimal) defaults as strings of code points 0-255
    assert _field(schema, "thumbnail")["default"] == "\x00\xff"
    assert _field(schema, "price")["default"] == (999).to_bytes(2, "big", signed=True).decode("latin-1")
    assert _field(schema, "priority")["default"] == "LOW"
    assert _field(schema, "ratio") == {"name": "ratio", "type": ["double", "null"], "default": 0.5}


@dataclass
class Blank:
    note: str = ""


def test_union_default_branch_comes_first() -> None:
    @dataclass
    class Defaults:
        a: int | None = 3
        b: int | None = None
        c: st.Image | st.Corrected = field(default_factory=lambda: st.Image(b""))  # not a fixed factory
        d: st.Corrected | Blank = field(default_factory=Blank)

    fields = schema_for(Defaults)["fields"]  # type: ignore[index]
    assert fields[0]["type"] == ["long", "null"] and fields[0]["default"] == 3
    assert fields[1]["type"] == ["null", "long"] and fields[1]["default"] is None
    assert "default" not in fields[2]  # a lambda factory's result is not fixed by the types
    assert [b if isinstance(b, str) else b["name"] for b in fields[3]["type"]] == ["Blank", f"{NS}.Corrected"]
    assert fields[3]["default"] == {"note": ""}


def test_enum_schema() -> None:
    assert schema_for(st.Verdict) == {
        "type": "enum",
        "name": "Verdict",
        "namespace": NS,
        "doc": "What the reviewer decided.",
        "symbols": ["OK", "KO"],
    }


def test_enum_default_symbol() -> None:
    class Status(enum.Enum):
        NEW = 1
        UNKNOWN = 2
        __avro_default__ = "UNKNOWN"

    assert schema_for(Status)["default"] == "UNKNOWN"  # type: ignore[index]


def test_recursive_dataclass_refers_to_itself_by_name() -> None:
    schema = schema_for(st.Linked)
    assert schema == {
        "type": "record",
        "name": "Linked",
        "namespace": NS,
        "fields": [
            {"name": "value", "type": "long"},
            {"name": "next", "type": ["null", f"{NS}.Linked"], "default": None},
        ],
    }


def test_recursive_class_defined_in_a_function() -> None:
    @dataclass
    class Node:
        value: int
        next: Node | None = None

    schema = schema_for(Node)
    assert isinstance(schema, dict)
    assert schema["name"] == "Node"
    assert schema["namespace"] == f"{__name__}.test_recursive_class_defined_in_a_function"
    assert schema["fields"][1]["type"] == ["null", f"{schema['namespace']}.Node"]


def test_nested_class_names_and_repeated_use() -> None:
    schema = schema_for(st.Outer)
    inner = schema["fields"][0]["type"]  # type: ignore[index]
    assert (inner["name"], inner["namespace"]) == ("Inner", f"{NS}.Outer")
    assert schema["fields"][1]["type"] == {"type": "array", "items": f"{NS}.Outer.Inner"}  # type: ignore[index]


def test_aliases_and_field_metadata() -> None:
    schema = schema_for(st.Renamed)
    assert schema["aliases"] == [f"{NS}.OldName"]  # type: ignore[index]
    assert schema["fields"] == [{"name": "count", "type": "long", "doc": "How many.", "aliases": ["n"]}]  # type: ignore[index]


def test_classvar_is_not_a_field_and_init_false_is() -> None:
    assert [f["name"] for f in schema_for(st.WithClassVar)["fields"]] == ["value"]  # type: ignore[index]
    assert [f["name"] for f in schema_for(st.WithInitFalse)["fields"]] == ["width", "height", "area"]  # type: ignore[index]


def test_same_types_give_identical_json_and_fingerprint() -> None:
    first = dumps(schema_for(st.Review))
    second = dumps(schema_for(st.Review))
    assert first == second
    assert fingerprint(json.loads(first)) == fingerprint(schema_for(st.Review))


def test_schema_is_identical_across_interpreters() -> None:
    # A different hash seed changes set/dict iteration orders that could leak into the schema.
    code = (
        "from pipeteer.codec import dumps, schema_for\n"
        "from tests.unit.codec import sample_types as st\n"
        "print(dumps(schema_for(st.Review)), end='')\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {dumps(schema_for(st.Review))}


def test_canonical_form_strips_docs_and_defaults() -> None:
    form = canonical_form(schema_for(st.Image))
    assert form == (
        '{"name":"tests.unit.codec.sample_types.Image","type":"record","fields":'
        '[{"name":"img","type":"bytes"},{"name":"name","type":"string"}]}'
    )


# ------------------------------------------------------------------------------------------ errors


def _error(tp: Any) -> str:
    with pytest.raises(SchemaError) as info:
        schema_for(tp)
    return str(info.value)


@dataclass
class HasAny:
    payload: Any


@dataclass
class HasLambda:
    fn: Any = None


HasLambda.__annotations__["fn"] = lambda x: x  # an annotation that is not a type at all
HasLambda.__dataclass_fields__["fn"].type = HasLambda.__annotations__["fn"]


@dataclass
class HasSet:
    tags: set[int]


@dataclass
class HasIntKeys:
    counts: dict[int, str]


@dataclass
class HasNested:
    rows: list[tuple[int, int]]


class NotADataclass:
    x: int


@dataclass
class HasPlainClass:
    thing: NotADataclass


@dataclass
class HasBadDefault:
    n: int = "three"  # type: ignore[assignment]


@dataclass
class HasAmbiguousUnion:
    when: int | datetime.datetime


@dataclass
class HasBareDecimal:
    price: decimal.Decimal


@dataclass
class HasBareList:
    items: list  # type: ignore[type-arg]


class Perm(enum.Flag):
    R = 1
    W = 2


@pytest.mark.parametrize(
    ("tp", "fragments"),
    [
        (HasAny, ["field 'payload'", "HasAny", "Any"]),
        (HasLambda, ["field 'fn'", "HasLambda", "is not a type"]),
        (HasSet, ["field 'tags'", "HasSet", "set[int]", "use list[T]"]),
        (HasIntKeys, ["field 'counts'", "HasIntKeys", "dict[int, str]", "keys are strings"]),
        (HasNested, ["field 'rows'", "list[tuple[int, int]]", "tuples are not supported"]),
        (HasPlainClass, ["field 'thing'", "NotADataclass", "@dataclass"]),
        (HasBadDefault, ["field 'n'", "default 'three'", "expected int"]),
        (HasAmbiguousUnion, ["field 'when'", "int and datetime are both Avro 'long'"]),
        (HasBareDecimal, ["field 'price'", "AvroDecimal(precision=..., scale=...)"]),
        (HasBareList, ["field 'items'", "list[...]"]),
        (Perm, ["Perm", "Flag enums"]),
        (typing.Any, ["type Any"]),
        (set[str], ["type set[str]", "use list[T]"]),
        (object, ["object"]),
    ],
)
def test_unsupported_types_are_named_at_derivation(tp: Any, fragments: list[str]) -> None:
    message = _error(tp)
    for fragment in fragments:
        assert fragment in message, message


def test_unresolvable_forward_reference_names_the_field() -> None:
    @dataclass
    class Broken:
        other: Missing  # type: ignore[name-defined]  # noqa: F821

    message = _error(Broken)
    assert "field 'other'" in message and "Missing" in message and "does not resolve" in message


def test_two_classes_with_one_avro_name_are_refused() -> None:
    def make() -> type:
        @dataclass
        class Twin:
            x: int

        return Twin

    first, second = make(), make()
    pair = dataclasses.make_dataclass("Pair", [("a", first), ("b", second)])
    assert "both map to the Avro name" in _error(pair)


def test_invalid_avro_names_are_refused() -> None:
    with pytest.raises(SchemaError, match="not a valid Avro name"):
        schema_for(st.Image, namespace="bad-namespace")

    class Sign(enum.Enum):
        plus_ou_moins = 1
        ça = 2

    with pytest.raises(SchemaError, match="not a valid Avro symbol"):
        schema_for(Sign)


def test_field_docs_of_classes_inside_functions_and_classes() -> None:
    @dataclass
    class Local:
        size: int
        """Bytes, compressed."""

    assert schema_for(Local)["fields"] == [{"name": "size", "type": "long", "doc": "Bytes, compressed."}]  # type: ignore[index]
    assert "doc" not in schema_for(st.Outer)["fields"][0]["type"]["fields"][0]  # type: ignore[index]


def test_a_class_of_a_main_module_without_source_has_no_field_docs(monkeypatch: pytest.MonkeyPatch) -> None:
    # `python -c` or a notebook: `__main__` has no file, and inspect says OSError, not TypeError
    import types

    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    exec("from dataclasses import dataclass\n@dataclass\nclass Typed:\n    n: int\n    'not seen'\n", main.__dict__)
    assert schema_for(main.Typed)["fields"] == [{"name": "n", "type": "long"}]  # type: ignore[index]
