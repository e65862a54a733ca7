"""Compatibility by the Avro specification's resolution rules, one rule at a time (`pipeteer.codec.compat`)."""

from __future__ import annotations

import copy
import decimal
import io
from typing import Any

import fastavro
import pytest

from pipeteer.codec import Codec, compare, fingerprint, schema_for
from pipeteer.codec.compat import (
    Change,
    Incompatibility,
    Kind,
    Mode,
    Roll,
    judge,
    reader_problems,
    roll_order,
)
from pipeteer.errors import SchemaError
from tests.unit.codec import sample_types as st

NS = "tests.unit.codec.sample_types"


def rec(*fields: dict[str, Any], name: str = "P", **extra: Any) -> dict[str, Any]:
    """A record schema `P` (in namespace `demo`) of `fields`."""
    return {"type": "record", "name": name, "namespace": "demo", "fields": list(fields), **extra}


def fld(name: str, tp: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": tp, **extra}


def one(tp: Any, **extra: Any) -> dict[str, Any]:
    """A record with the one field `x` of type `tp`."""
    return rec(fld("x", tp, **extra))


def seen(old: Any, new: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(path, kind) of the backward and the forward incompatibilities from `old` to `new`."""
    change = judge(old, new)
    return [(i.path, i.kind) for i in change.backward], [(i.path, i.kind) for i in change.forward]


def decimal_of(precision: int, scale: int, base: str = "bytes") -> dict[str, Any]:
    tp: dict[str, Any] = {"type": base, "logicalType": "decimal", "precision": precision, "scale": scale}
    if base == "fixed":
        tp.update(name="Money", size=8)
    return tp


# ---------------------------------------------------------------------------------------- primitives


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
    ],
)
def test_numeric_promotions_are_backward_only(old: str, new: str) -> None:
    change = judge(one(old), one(new))
    assert change.backward == ()
    assert [(i.path, i.kind) for i in change.forward] == [("P.x", "type_mismatch")]
    assert f"type widened from {old} to {new}: {old} cannot read {new}" in change.forward[0].message
    assert "roll the readers first" in change.forward[0].message
    assert change.modes == (Mode.BACKWARD,) and change.roll is Roll.READERS_FIRST


def test_string_and_bytes_read_each_other() -> None:
    assert judge(one("string"), one("bytes")).modes == (Mode.BACKWARD, Mode.FORWARD, Mode.FULL)
    assert judge(one("bytes"), one("string")).roll is Roll.ANY


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        (
            "long",
            "int",
            "type narrowed from long to int: int cannot read long (old values may not fit; keep long)",
        ),
        ("double", "float", "type narrowed from double to float"),
        ("boolean", "int", "type changed from boolean to int: int cannot read boolean (keep boolean, or add"),
        ("string", "long", "type changed from string to long"),
        ("null", "string", "type changed from null to string"),
    ],
)
def test_other_primitive_changes_are_refused(old: str, new: str, said: str) -> None:
    found = compare(one(old), one(new), "backward")
    assert [(i.path, i.kind) for i in found] == [("P.x", "type_mismatch")]
    assert said in found[0].message


# ------------------------------------------------------------------------------------- logical types


def test_decimal_scale_change_is_refused_both_ways_with_what_a_reader_would_see() -> None:
    change = judge(one(decimal_of(12, 2)), one(decimal_of(12, 3)))
    assert [(i.path, i.kind) for i in change.backward] == [("P.x", "logical_type_mismatch")]
    assert [(i.path, i.kind) for i in change.forward] == [("P.x", "logical_type_mismatch")]
    back = change.backward[0].message
    assert back.startswith("decimal changed from decimal(12, 2) to decimal(12, 3): ")
    assert "1.23 written at scale 2 reads as 0.123 at scale 3" in back
    assert "keep bytes (decimal(12, 2))" in back and "add a new field" in back
    assert "0.123 written at scale 3 reads as 1.23 at scale 2" in change.forward[0].message
    assert change.roll is Roll.NONE and change.modes == ()


@pytest.mark.parametrize("new", [decimal_of(14, 2), decimal_of(10, 2)])
def test_decimal_precision_change_is_refused(new: dict[str, Any]) -> None:
    backward, forward = seen(one(decimal_of(12, 2)), one(new))
    assert backward == forward == [("P.x", "logical_type_mismatch")]
    assert (
        "only with the same precision and scale"
        in compare(one(decimal_of(12, 2)), one(new), "backward")[0].message
    )


def test_same_decimal_is_compatible_on_bytes_and_on_fixed() -> None:
    assert judge(one(decimal_of(12, 2)), one(decimal_of(12, 2))).roll is Roll.ANY
    assert judge(one(decimal_of(12, 2, "fixed")), one(decimal_of(12, 2, "fixed"))).roll is Roll.ANY
    backward, _ = seen(one(decimal_of(12, 2, "fixed")), one(decimal_of(12, 3, "fixed")))
    assert backward == [("P.x", "logical_type_mismatch")]


def test_decimal_moved_between_bytes_and_fixed_is_a_type_change() -> None:
    found = compare(one(decimal_of(12, 2)), one(decimal_of(12, 2, "fixed")), "full")
    assert [(i.direction, i.kind) for i in found] == [
        ("backward", "type_mismatch"),
        ("forward", "type_mismatch"),
    ]
    assert "type changed from bytes (decimal(12, 2)) to demo.Money (decimal(12, 2))" in found[0].message


def test_codec_refuses_an_older_writer_with_another_decimal_scale() -> None:
    # fastavro alone would read it, with the writer's scale; a Java reader would apply its own
    written = io.BytesIO()
    fastavro.schemaless_writer(
        written, fastavro.parse_schema(one(decimal_of(9, 2))), {"x": decimal.Decimal("1.23")}
    )
    written.seek(0)
    read = fastavro.schemaless_reader(
        written, fastavro.parse_schema(one(decimal_of(9, 2))), fastavro.parse_schema(one(decimal_of(9, 3)))
    )
    assert read == {"x": decimal.Decimal("1.23")}

    codec: Codec[st.Review] = Codec(st.Review)
    old = copy.deepcopy(codec.schema)
    assert isinstance(old, dict)
    price = next(f for f in old["fields"] if f["name"] == "price")
    price["type"] = {**price["type"], "scale": 3}
    problems = reader_problems(reader=codec.schema, writer=old)
    assert len(problems) == 1
    assert problems[0].startswith("Review.price: decimal changed from decimal(9, 3) to decimal(9, 2): ")
    assert "0.123 written at scale 3 reads as 1.23 at scale 2" in problems[0]
    # Parsing Canonical Form leaves logical types out: both schemas have one fingerprint, so records
    # of the two could not be told apart, and the codec must not take the schema as known already
    assert fingerprint(old) == codec.fingerprint
    with pytest.raises(SchemaError) as info:
        codec.add_writer_schema(old)
    assert "cannot be told apart" in str(info.value) and problems[0] in str(info.value)
    assert codec.writer_schemas == {codec.fingerprint: codec.schema}


def test_codec_refuses_an_older_writer_with_another_timestamp_unit() -> None:
    codec: Codec[st.Review] = Codec(st.Review)
    old = copy.deepcopy(codec.schema)
    assert isinstance(old, dict)
    when = next(f for f in old["fields"] if f["name"] == "when")
    when["type"] = ["null", {"type": "long", "logicalType": "timestamp-millis"}]
    with pytest.raises(
        SchemaError, match=r"Review\.when: logical type changed from long \(timestamp-millis\)"
    ):
        codec.add_writer_schema(old)
    # a schema differing only in what does not change the reading (a doc) is accepted under its fingerprint
    documented = copy.deepcopy(codec.schema)
    assert isinstance(documented, dict)
    documented["doc"] = "another doc"
    assert codec.add_writer_schema(documented) == codec.fingerprint


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("timestamp-millis", "timestamp-micros", "every time is 1000 times off"),
        ("timestamp-micros", "timestamp-nanos", "every time is 1000 times off"),
        ("local-timestamp-millis", "local-timestamp-nanos", "every time is 1000000 times off"),
        ("timestamp-micros", "local-timestamp-micros", "the same stored long means something else"),
        (None, "timestamp-micros", "plain long values would be taken as timestamp-micros"),
        ("timestamp-micros", None, "the reader sees the raw long where timestamp-micros values were written"),
    ],
)
def test_a_logical_type_change_on_a_long_is_refused_both_ways(
    old: str | None, new: str | None, said: str
) -> None:
    def long_as(logical: str | None) -> Any:
        return {"type": "long", "logicalType": logical} if logical else "long"

    change = judge(one(long_as(old)), one(long_as(new)))
    assert [i.kind for i in change.backward] == [i.kind for i in change.forward] == ["logical_type_mismatch"]
    assert said in change.backward[0].message
    assert change.backward[0].message.startswith("logical type changed from long")


def test_date_read_as_a_timestamp_is_refused_though_int_promotes_to_long() -> None:
    found = compare(
        one({"type": "int", "logicalType": "date"}),
        one({"type": "long", "logicalType": "timestamp-millis"}),
        "backward",
    )
    assert [(i.kind, i.path) for i in found] == [("logical_type_mismatch", "P.x")]
    assert "from int (date) to long (timestamp-millis)" in found[0].message
    assert "the same stored int (read as long) means something else" in found[0].message


def test_uuid_added_to_or_removed_from_a_string_is_refused() -> None:
    uuid = {"type": "string", "logicalType": "uuid"}
    backward, forward = seen(one("string"), one(uuid))
    assert backward == forward == [("P.x", "logical_type_mismatch")]
    assert judge(one(uuid), one(uuid)).roll is Roll.ANY


def test_unknown_and_invalid_logical_types_are_ignored_as_the_spec_says() -> None:
    # no warning escapes either (the suite turns warnings into errors)
    assert compare(one({"type": "long", "logicalType": "epoch-days"}), one("long"), "full") == []
    invalid = {"type": "bytes", "logicalType": "decimal", "precision": 2, "scale": 5}
    assert compare(one(invalid), one("bytes"), "full") == []
    assert compare(one({"type": "int", "logicalType": "timestamp-millis"}), one("int"), "full") == []


# --------------------------------------------------------------------------------------------- enums


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Color", "symbols": list(symbols), **extra}


def test_enum_symbol_added_breaks_old_readers_unless_their_enum_has_a_default() -> None:
    change = judge(one(enum("RED", "BLUE")), one(enum("RED", "BLUE", "GREEN")))
    assert change.backward == () and change.roll is Roll.READERS_FIRST
    assert [(i.path, i.kind) for i in change.forward] == [("P.x", "missing_enum_symbols")]
    assert "enum symbols added: GREEN" in change.forward[0].message
    lenient = judge(one(enum("RED", "BLUE", default="RED")), one(enum("RED", "BLUE", "GREEN", default="RED")))
    assert lenient.roll is Roll.ANY


def test_enum_symbol_removed_breaks_new_readers_unless_their_enum_has_a_default() -> None:
    backward, forward = seen(one(enum("RED", "BLUE")), one(enum("RED")))
    assert backward == [("P.x", "missing_enum_symbols")] and forward == []
    assert judge(one(enum("RED", "BLUE")), one(enum("RED", "OTHER", default="OTHER"))).backward == ()


def test_enum_renamed_needs_an_alias() -> None:
    old = one(enum("RED"))
    new = one({**enum("RED"), "name": "Colour"})
    assert seen(old, new) == ([("P.x", "name_mismatch")], [("P.x", "name_mismatch")])
    aliased = one({**enum("RED"), "name": "Colour", "aliases": ["Color"]})
    assert seen(old, aliased) == ([], [("P.x", "name_mismatch")])


# --------------------------------------------------------------------------------------------- fixed


def test_fixed_needs_the_same_name_and_size() -> None:
    def fixed(name: str, size: int) -> dict[str, Any]:
        return {"type": "fixed", "name": name, "size": size}

    assert judge(one(fixed("Hash", 16)), one(fixed("Hash", 16))).roll is Roll.ANY
    found = compare(one(fixed("Hash", 16)), one(fixed("Hash", 32)), "backward")
    assert [(i.kind, i.message.split(":")[0]) for i in found] == [
        ("fixed_size_mismatch", "fixed demo.Hash changed size from 16 to 32 bytes")
    ]
    found = compare(one(fixed("Hash", 16)), one(fixed("Digest", 16)), "backward")
    assert [i.kind for i in found] == ["name_mismatch"]
    assert "fixed demo.Hash -> demo.Digest is renamed without an alias" in found[0].message


# -------------------------------------------------------------------------------------------- unions


def test_a_plain_type_made_optional_is_backward_only() -> None:
    change = judge(one("long"), one(["null", "long"], default=None))
    assert change.backward == ()
    assert [(i.path, i.kind) for i in change.forward] == [("P.x", "type_mismatch")]
    assert change.forward[0].message.startswith(
        "null is newly accepted, which the old type (long) cannot read"
    )


def test_an_optional_type_made_plain_is_forward_only() -> None:
    change = judge(one(["null", "long"], default=None), one("long"))
    assert change.forward == () and change.roll is Roll.WRITERS_FIRST
    assert [(i.path, i.kind) for i in change.backward] == [("P.x", "type_mismatch")]
    assert "null is no longer accepted (old type included it, new type is long)" in change.backward[0].message
    assert "keep null in the type until none is left" in change.backward[0].message


def test_union_branch_added_and_removed() -> None:
    added = judge(one(["null", "long"]), one(["null", "long", "string"]))
    assert added.backward == ()
    assert [(i.path, i.kind) for i in added.forward] == [("P.x", "missing_union_branch")]
    assert (
        "string is newly accepted, which the old type (null | long) cannot read" in added.forward[0].message
    )
    removed = judge(one(["null", "long", "string"]), one(["null", "long"]))
    assert removed.forward == ()
    assert [(i.path, i.kind) for i in removed.backward] == [("P.x", "missing_union_branch")]


def test_union_branches_resolve_by_promotion_and_inside() -> None:
    assert judge(one(["null", "int"]), one(["null", "long"])).roll is Roll.READERS_FIRST
    assert judge(one("int"), one(["null", "double"])).backward == ()
    assert judge(one(["null", "string"]), one("bytes")).forward == ()
    inner_old = rec(fld("a", "long"), name="Inner")
    inner_new = rec(fld("a", "long"), fld("b", "string"), name="Inner")
    found = compare(one(["null", inner_old]), one(["null", inner_new]), "backward")
    assert [(i.path, i.kind) for i in found] == [("P.x.b", "reader_field_missing_default_value")]


def test_a_union_reads_a_renamed_record_through_its_alias() -> None:
    old = one(["null", rec(fld("a", "long"), name="Before")])
    new = one(["null", rec(fld("a", "long"), name="After", aliases=["demo.Before"])])
    assert judge(old, new).backward == ()


# --------------------------------------------------------------------------------- records and aliases


def test_field_added_needs_a_default_for_new_readers_and_removed_one_for_old_readers() -> None:
    old, new = rec(fld("a", "long")), rec(fld("a", "long"), fld("b", "string"))
    assert seen(old, new) == ([("P.b", "reader_field_missing_default_value")], [])
    assert "field added without a default (string)" in compare(old, new, "backward")[0].message
    assert seen(new, old) == ([], [("P.b", "reader_field_missing_default_value")])
    with_default = rec(fld("a", "long"), fld("b", "string", default=""))
    assert judge(old, with_default).roll is Roll.ANY


def test_renamed_field_with_an_alias_is_read_and_without_one_is_named_in_the_fix() -> None:
    old = rec(fld("n", "long"))
    assert judge(old, rec(fld("count", "long", aliases=["n"]))).backward == ()
    found = compare(old, rec(fld("count", "long")), "backward")
    assert [(i.path, i.kind) for i in found] == [("P.count", "reader_field_missing_default_value")]
    assert "if it was renamed from n, list the old name in the field's aliases" in found[0].message


def test_renamed_record_with_an_alias_is_backward_only() -> None:
    old = rec(fld("n", "long"), name="OldName")
    for alias in ("demo.OldName", "OldName"):  # an unqualified alias is in the record's namespace
        change = judge(old, rec(fld("n", "long"), name="Renamed", aliases=[alias]))
        assert change.backward == (), alias
        assert [(i.path, i.kind) for i in change.forward] == [("Renamed", "name_mismatch")]
        assert "readers on the old schema do not know the new name" in change.forward[0].message
    found = compare(old, rec(fld("n", "long"), name="Renamed"), "backward")
    assert [i.kind for i in found] == ["name_mismatch"]
    assert "record demo.OldName -> demo.Renamed is renamed without an alias" in found[0].message
    assert "'demo.OldName' in the new type's __avro_aliases__" in found[0].message
    assert compare(old, rec(fld("n", "long"), name="Renamed", aliases=["other.OldName"]), "backward") != []


def test_records_match_by_unqualified_name_as_the_spec_says() -> None:
    old = {**rec(fld("n", "long")), "namespace": "v1"}
    assert judge(old, rec(fld("n", "long"))).roll is Roll.ANY


def test_nested_records_arrays_and_maps_report_the_path() -> None:
    def outer(x: str) -> dict[str, Any]:
        inner = rec(fld("x", x), name="Inner")
        return rec(
            fld("inner", inner),
            fld("items", {"type": "array", "items": "demo.Inner"}),
            fld("lookup", {"type": "map", "values": "demo.Inner"}),
            fld("counts", {"type": "array", "items": {"type": "map", "values": x}}),
            name="Outer",
        )

    found = compare(outer("int"), outer("long"), "full")
    assert [(i.direction, i.path) for i in found] == [
        ("forward", "Outer.inner.x"),
        ("forward", "Outer.items[].x"),
        ("forward", "Outer.lookup{}.x"),
        ("forward", "Outer.counts[]{}"),
    ]
    assert all(i.type == "demo.Outer" for i in found)
    assert "type widened from int to long" in found[3].message


def test_recursive_records_are_walked_once() -> None:
    old = copy.deepcopy(schema_for(st.TreeNode))
    new = copy.deepcopy(old)
    assert isinstance(new, dict)
    new["fields"].append({"name": "weight", "type": "double"})
    assert judge(schema_for(st.TreeNode), schema_for(st.TreeNode)).roll is Roll.ANY
    backward, forward = seen(old, new)
    assert backward == [("TreeNode.weight", "reader_field_missing_default_value")] and forward == []
    assert judge(schema_for(st.Linked), schema_for(st.Linked)).roll is Roll.ANY


def test_top_level_unnamed_schemas() -> None:
    assert [(i.path, i.kind) for i in compare("long", "int", "backward")] == [
        ("(top level)", "type_mismatch")
    ]
    assert compare({"type": "array", "items": "int"}, {"type": "array", "items": "long"}, "backward") == []


def test_invalid_schema_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="invalid Avro schema"):
        judge({"type": "record", "name": "P"}, one("long"))


# ------------------------------------------------------------------------------------ modes and order


def test_modes_and_roll_of_each_kind_of_change() -> None:
    full = judge(rec(fld("a", "long")), rec(fld("a", "long"), fld("b", ["null", "string"], default=None)))
    assert full.modes == (Mode.BACKWARD, Mode.FORWARD, Mode.FULL) and full.roll is Roll.ANY
    backward_only = judge(one("int"), one("long"))
    assert backward_only.modes == (Mode.BACKWARD,) and backward_only.roll is Roll.READERS_FIRST
    forward_only = judge(rec(fld("a", "long")), rec(fld("a", "long"), fld("b", "string")))
    assert forward_only.modes == (Mode.FORWARD,) and forward_only.roll is Roll.WRITERS_FIRST
    none = judge(one("long"), one("string"))
    assert none.modes == () and none.roll is Roll.NONE
    assert none.problems("full") == [*none.backward, *none.forward]
    assert none.problems(Mode.BACKWARD) == list(none.backward)


def change_of(name: str, roll: Roll) -> Change:
    problem = (Incompatibility(name, name, Kind.TYPE_MISMATCH, "", "x"),)
    return Change(
        name,
        backward=problem if roll in (Roll.WRITERS_FIRST, Roll.NONE) else (),
        forward=problem if roll in (Roll.READERS_FIRST, Roll.NONE) else (),
    )


def test_roll_order_puts_readers_first_for_backward_only_and_writers_first_for_forward_only() -> None:
    readers = {"demo.Mid": ["h"], "demo.Out": ["<output>"]}
    writers = {"demo.Mid": ["a"], "demo.Out": ["h"]}
    order = ["a", "h", "<output>"]
    mid = change_of("demo.Mid", Roll.READERS_FIRST)
    assert str(roll_order([mid], readers, writers, order)) == "1. h (reads Mid)  2. a (writes Mid)"
    out = change_of("demo.Out", Roll.WRITERS_FIRST)
    assert str(roll_order([out], readers, writers, order)) == "1. h (writes Out)  2. <output> (reads Out)"
    both = roll_order([mid, out], readers, writers, order)
    assert str(both) == "1. h (reads Mid; writes Out)  2. a (writes Mid)  3. <output> (reads Out)"
    assert both.conflicts == ()
    # full and refused changes constrain nothing
    assert (
        roll_order(
            [change_of("demo.Mid", Roll.ANY), change_of("demo.Out", Roll.NONE)], readers, writers
        ).steps
        == ()
    )


def test_roll_order_names_the_conflicts_of_a_cycle() -> None:
    readers = {"demo.A": ["x"], "demo.B": ["x"]}
    writers = {"demo.A": ["y"], "demo.B": ["y"]}
    found = roll_order(
        [change_of("demo.A", Roll.READERS_FIRST), change_of("demo.B", Roll.WRITERS_FIRST)], readers, writers
    )
    assert found.steps == ()
    assert sorted(found.conflicts) == ["x before y (A: readers first)", "y before x (B: writers first)"]


def test_a_stage_reading_and_writing_the_state_is_one_step() -> None:
    found = roll_order(
        [change_of("demo.Loop", Roll.READERS_FIRST)], {"demo.Loop": ["s"]}, {"demo.Loop": ["s"]}
    )
    assert str(found) == "1. s (reads Loop; writes Loop)" and found.conflicts == ()
