"""Schema evolution: records written with an older schema, read as the current type (Avro resolution)."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from typing import Any

import fastavro
import pytest

from pipeteer.codec import MAGIC, Codec, Incompatibility, compare, fingerprint, schema_for
from pipeteer.errors import DecodeError, SchemaError
from tests.unit.codec import sample_types as st

NS = "tests.unit.codec.sample_types"


@dataclass
class Photo:
    img: bytes
    width: int
    caption: str = ""


def written_with(schema: Any, record: Any) -> bytes:
    """Single-object bytes as an older release (any Avro library) would have written them."""
    buf = io.BytesIO()
    buf.write(MAGIC + fingerprint(schema))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def current(tp: Any) -> Any:
    return copy.deepcopy(schema_for(tp))


def fields_of(schema: Any) -> list[dict[str, Any]]:
    return schema["fields"]  # type: ignore[no-any-return]


def without(schema: Any, name: str) -> Any:
    schema["fields"] = [f for f in fields_of(schema) if f["name"] != name]
    return schema


def retyped(schema: Any, name: str, avro_type: Any) -> Any:
    for f in fields_of(schema):
        if f["name"] == name:
            f["type"] = avro_type
            f.pop("default", None)
    return schema


# ------------------------------------------------------------------------------------------ readable


def test_added_field_with_default_is_filled_from_the_default() -> None:
    old = without(current(Photo), "caption")
    codec: Codec[Photo] = Codec(Photo)
    codec.add_writer_schema(old)
    assert codec.decode(written_with(old, {"img": b"i", "width": 3}), source="old row") == Photo(b"i", 3, "")


def test_removed_optional_field_is_ignored() -> None:
    old = current(Photo)
    fields_of(old).append({"name": "note", "type": ["null", "string"], "default": None})
    codec: Codec[Photo] = Codec(Photo)
    codec.add_writer_schema(old)
    assert codec.decode(written_with(old, {"img": b"i", "width": 3, "caption": "c", "note": "n"})) == Photo(
        b"i", 3, "c"
    )


def test_int_widened_to_long_and_long_to_double() -> None:
    old = retyped(current(Photo), "width", "int")
    codec: Codec[Photo] = Codec(Photo)
    codec.add_writer_schema(old)
    assert codec.decode(written_with(old, {"img": b"", "width": 2**31 - 1, "caption": ""})).width == 2**31 - 1

    @dataclass
    class Photo2:
        img: bytes
        width: float

    old2 = retyped(current(Photo2), "width", "long")
    codec2: Codec[Photo2] = Codec(Photo2)
    codec2.add_writer_schema(old2)
    back = codec2.decode(written_with(old2, {"img": b"", "width": 7}))
    assert back.width == 7.0 and isinstance(back.width, float)


def test_string_read_as_bytes() -> None:
    old = retyped(current(Photo), "img", "string")
    codec: Codec[Photo] = Codec(Photo)
    codec.add_writer_schema(old)
    assert codec.decode(written_with(old, {"img": "text", "width": 1, "caption": ""})).img == b"text"


def test_renamed_record_and_field_through_aliases() -> None:
    old = {"type": "record", "name": "OldName", "namespace": NS, "fields": [{"name": "n", "type": "long"}]}
    codec: Codec[st.Renamed] = Codec(st.Renamed)
    codec.add_writer_schema(old)
    assert codec.decode(written_with(old, {"n": 12})) == st.Renamed(12)


def test_optional_field_became_a_union_with_null() -> None:
    @dataclass
    class Counter:
        n: int | None

    old = retyped(current(Counter), "n", "long")
    codec: Codec[Counter] = Codec(Counter)
    codec.add_writer_schema(old)
    assert codec.decode(written_with(old, {"n": 5})) == Counter(5)


def test_enum_symbol_added() -> None:
    old = current(st.Verdict)
    old["symbols"] = ["OK"]
    codec: Codec[st.Verdict] = Codec(st.Verdict)
    codec.add_writer_schema(old)
    assert codec.decode(written_with(old, "OK")) is st.Verdict.OK


def test_nested_record_evolves_inside_a_union_and_a_list() -> None:
    @dataclass
    class Album:
        cover: Photo | None
        photos: list[Photo] = field(default_factory=list)

    old = current(Album)
    photo = old["fields"][0]["type"][1]
    without(photo, "caption")
    codec: Codec[Album] = Codec(Album)
    codec.add_writer_schema(old)
    data = written_with(old, {"cover": {"img": b"c", "width": 1}, "photos": [{"img": b"p", "width": 2}]})
    assert codec.decode(data) == Album(Photo(b"c", 1), [Photo(b"p", 2)])


def test_writer_schemas_are_listed_and_registering_twice_is_harmless() -> None:
    old = without(current(Photo), "caption")
    codec: Codec[Photo] = Codec(Photo)
    fp = codec.add_writer_schema(old)
    assert codec.add_writer_schema(old) == fp
    assert set(codec.writer_schemas) == {codec.fingerprint, fp}


def test_unregistered_older_schema_is_a_decode_error() -> None:
    old = without(current(Photo), "caption")
    with pytest.raises(DecodeError, match=f"fingerprint {fingerprint(old).hex()}, which is neither"):
        Codec(Photo).decode(written_with(old, {"img": b"i", "width": 3}), source="table 'input' id 'x'")


# ------------------------------------------------------------------------------------------ not readable


@pytest.mark.parametrize(
    ("make_old", "fragments"),
    [
        (lambda: without(current(Photo), "width"), ["Photo.width", "field added without a default"]),
        (
            lambda: retyped(current(Photo), "width", "double"),
            ["Photo.width", "type narrowed from double to long"],
        ),
        (
            lambda: retyped(current(Photo), "width", ["null", "long"]),
            ["Photo.width", "null is no longer accepted"],
        ),
        (lambda: retyped(current(Photo), "img", "long"), ["Photo.img", "type changed from long to bytes"]),
        (lambda: {**current(Photo), "name": "Picture"}, ["renamed without an alias", "Picture"]),
    ],
)
def test_unreadable_older_schemas_are_refused_when_registered(make_old: Any, fragments: list[str]) -> None:
    with pytest.raises(SchemaError) as info:
        Codec(Photo).add_writer_schema(make_old())
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_enum_symbol_removed_is_refused_unless_the_enum_has_a_default() -> None:
    old = current(st.Verdict)
    old["symbols"] = ["OK", "KO", "MAYBE"]
    with pytest.raises(SchemaError, match="enum symbols removed: MAYBE"):
        Codec(st.Verdict).add_writer_schema(old)

    import enum

    class Verdict(enum.Enum):
        OK = 1
        KO = 2
        UNSURE = 3
        __avro_default__ = "UNSURE"

    lenient: Codec[Any] = Codec(Verdict, namespace=NS)
    old_lenient = copy.deepcopy(lenient.schema)
    old_lenient["symbols"] = ["OK", "KO", "UNSURE", "MAYBE"]  # type: ignore[index]
    lenient.add_writer_schema(old_lenient)
    assert lenient.decode(written_with(old_lenient, "MAYBE")) is Verdict.UNSURE


# ------------------------------------------------------------------------------------------ compare()


def kinds(found: list[Incompatibility]) -> list[tuple[str, str, str]]:
    return [(i.direction, i.path, i.kind) for i in found]


def test_compare_modes_on_an_added_field() -> None:
    old = without(current(Photo), "width")
    new = current(Photo)
    assert kinds(compare(old, new, "backward")) == [
        ("backward", "Photo.width", "reader_field_missing_default_value")
    ]
    assert compare(old, new, "forward") == []  # old readers ignore the new field
    assert kinds(compare(old, new, "full")) == [
        ("backward", "Photo.width", "reader_field_missing_default_value")
    ]


def test_compare_modes_on_a_removed_field() -> None:
    old = current(Photo)
    new = without(current(Photo), "width")
    assert compare(old, new, "backward") == []
    found = compare(old, new, "forward")
    assert kinds(found) == [("forward", "Photo.width", "reader_field_missing_default_value")]
    assert "field removed that has no default in the old schema" in found[0].message
    # a removed field that had a default is fine both ways
    assert compare(old, without(current(Photo), "caption"), "full") == []


def test_compare_widening_is_backward_only() -> None:
    old = retyped(current(Photo), "width", "int")
    new = current(Photo)
    assert compare(old, new, "backward") == []
    found = compare(old, new, "forward")
    assert kinds(found) == [("forward", "Photo.width", "type_mismatch")]
    assert "type widened from int to long: int cannot read long" in found[0].message


def test_compare_enum_symbol_added_breaks_forward() -> None:
    old = current(st.Verdict)
    old["symbols"] = ["OK"]
    found = compare(old, current(st.Verdict), "full")
    assert kinds(found) == [("forward", "Verdict", "missing_enum_symbols")]
    assert "enum symbols added: KO" in found[0].message


def test_compare_reports_every_change_with_its_path() -> None:
    old = current(st.Outer)
    inner = old["fields"][0]["type"]
    inner["fields"] = [{"name": "x", "type": "string"}]  # was long
    old["fields"].append({"name": "legacy", "type": "long"})
    new = current(st.Outer)
    found = compare(old, new, "full")
    assert sorted(kinds(found)) == sorted(
        [
            ("backward", "Outer.inner.x", "type_mismatch"),
            ("backward", "Outer.items[].x", "type_mismatch"),
            ("backward", "Outer.lookup{}.x", "type_mismatch"),
            ("forward", "Outer.inner.x", "type_mismatch"),
            ("forward", "Outer.items[].x", "type_mismatch"),
            ("forward", "Outer.lookup{}.x", "type_mismatch"),
            ("forward", "Outer.legacy", "reader_field_missing_default_value"),
        ]
    )
    assert all(i.type == f"{NS}.Outer" for i in found)
    assert str(found[0]).startswith("Outer.inner.x: type changed from string to long")


def test_compare_identical_schemas() -> None:
    assert compare(current(st.Review), current(st.Review), "full") == []
