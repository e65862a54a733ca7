"""Codec: values ↔ single-object encoded Avro bytes, type errors and decode errors."""

from __future__ import annotations

import datetime
import decimal
import io
import uuid
from typing import Any

import avro.schema
import fastavro
import pytest

from pipeteer.codec import MAGIC, Codec, canonical_form, codec_for, dumps, fingerprint
from pipeteer.errors import DecodeError, ValueTypeError
from tests.unit.codec import sample_types as st

UTC = datetime.UTC


def full_review() -> st.Review:
    return st.Review(
        id="item-7",
        score=0.25,
        verdict=st.Verdict.KO,
        reviewer=st.Reviewer("ana", None),
        attempts=3,
        tags=["blurry", "tilted"],
        notes={"why": "too dark", "": ""},
        when=datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        day=datetime.date(1969, 12, 31),
        price=decimal.Decimal("-1234567.89"),
        ref=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        priority=st.Priority.HIGH,
        thumbnail=bytes(range(256)),
        history=[st.Verdict.OK, st.Verdict.KO, st.Verdict.OK],
        previous=st.Corrected(b"a", b"b"),
        ratio=None,
    )


VALUES: list[tuple[Any, Any]] = [
    (bytes, b"\x00png"),
    (bytes, b""),
    (str, "héllo"),
    (int, -(2**63)),
    (int, 2**63 - 1),
    (float, 1e300),
    (bool, True),
    (bytes | None, None),
    (bytes | None, b"x"),
    (list[int], [1, 2, 3]),
    (dict[str, list[str]], {"a": ["b"], "c": []}),
    (datetime.datetime, datetime.datetime(1, 1, 1, tzinfo=UTC)),
    (datetime.date, datetime.date(9999, 12, 31)),
    (st.Verdict, st.Verdict.OK),
    (st.Image, st.Image(b"img")),
    (st.Review, full_review()),
    (st.Review, st.Review("x", 1.0, st.Verdict.OK, st.Reviewer("bo", "bo@example.org"))),
    (st.Review, st.Review("x", 2, st.Verdict.OK, st.Reviewer("bo"), previous=st.Image(b"i", "n"))),
    (st.Linked, st.Linked(1, st.Linked(2, st.Linked(3)))),
    (st.TreeNode, st.TreeNode(1, [st.TreeNode(2, [st.TreeNode(3)]), st.TreeNode(4)], "root")),
    (st.FrozenPoint, st.FrozenPoint(1.5, -2.0)),
    (st.SlottedPoint, st.SlottedPoint(0.0, 3.25)),
    (st.Outer, st.Outer(st.Outer.Inner(1), [st.Outer.Inner(2)], {"k": st.Outer.Inner(3)})),
    (st.Renamed, st.Renamed(5)),
    (st.Choice, st.Choice(st.Corrected(b"1", b"2"), 2.5, 7, st.Verdict.KO)),
    (st.Choice, st.Choice(st.Image(b"1"), 3, True, "OK")),
    (st.Image | st.Corrected, st.Corrected(b"", b"")),
    (list[st.Image | None], [None, st.Image(b"a"), None]),
]


@pytest.mark.parametrize(("tp", "value"), VALUES)
def test_round_trip(tp: Any, value: Any) -> None:
    codec = codec_for(tp)
    data = codec.encode(value)
    back = codec.decode(data)
    assert back == value
    assert type(back) is type(value)


def test_round_trip_keeps_union_branches_apart() -> None:
    codec = codec_for(st.Choice)
    back = codec.decode(codec.encode(st.Choice(st.Image(b"1"), 3, True, "OK")))
    # 3 stays an int (not 3.0), True stays a bool (not 1), "OK" stays a str (not Verdict.OK)
    assert type(back.number) is int and back.flag is True and back.label == "OK"
    back = codec.decode(codec.encode(st.Choice(st.Image(b"1"), 3.0, 1, st.Verdict.OK)))
    assert type(back.number) is float and type(back.flag) is int and back.label is st.Verdict.OK


def test_single_object_framing_and_fingerprint() -> None:
    codec = codec_for(st.Image)
    data = codec.encode(st.Image(b"png", "a"))
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:10] == codec.fingerprint
    # the fingerprint is Avro's CRC-64-AVRO of the canonical form, as the Apache implementation computes it
    assert codec.fingerprint == avro.schema.parse(dumps(codec.schema)).fingerprint("CRC-64-AVRO")
    # the body is plain schemaless Avro
    body = fastavro.schemaless_reader(io.BytesIO(data[10:]), fastavro.parse_schema(codec.schema), None)
    assert body == {"img": b"png", "name": "a"}


def test_fingerprints_follow_the_spec() -> None:
    # Parsing Canonical Form writes logical-type primitives in their simple form ("long"), as
    # Java's SchemaNormalization does; fastavro agrees, the Python `avro` package does not
    # (it keeps {"type": "long"}), so schemas with logical types are compared with the spec here.
    codec = codec_for(st.Review)
    form = canonical_form(codec.schema)
    assert '{"name":"when","type":["null","long"]}' in form
    assert '{"name":"price","type":"bytes"}' in form and "logicalType" not in form and "doc" not in form
    assert codec.fingerprint == avro.schema._crc_64_fingerprint(form.encode())
    assert codec.fingerprint == fingerprint(codec.schema)


def test_decoded_objects_are_real_instances() -> None:
    back = codec_for(st.WithInitFalse).decode(codec_for(st.WithInitFalse).encode(st.WithInitFalse(2, 3)))
    assert back.area == 6 and back == st.WithInitFalse(2, 3)
    frozen = codec_for(st.FrozenPoint).decode(codec_for(st.FrozenPoint).encode(st.FrozenPoint(1, 2)))
    with pytest.raises(AttributeError):
        frozen.x = 3  # type: ignore[misc]
    assert hash(frozen) == hash(st.FrozenPoint(1, 2))
    datetime_back = codec_for(datetime.datetime).decode(
        codec_for(datetime.datetime).encode(
            datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
        )
    )
    assert datetime_back == datetime.datetime(2024, 1, 1, 10, tzinfo=UTC) and datetime_back.tzinfo is not None


def test_codec_for_is_cached_per_type_and_namespace() -> None:
    assert codec_for(st.Image) is codec_for(st.Image)
    other = codec_for(st.Image, namespace="elsewhere")
    assert other is not codec_for(st.Image)
    assert other.fingerprint != codec_for(st.Image).fingerprint
    assert other.fingerprint == fingerprint(other.schema)


def test_subclass_and_intenum_values_are_accepted() -> None:
    class Special(st.Image):
        pass

    codec = codec_for(st.Image)
    assert codec.decode(codec.encode(Special(b"x"))) == st.Image(b"x")
    assert codec_for(int).decode(codec_for(int).encode(st.Priority.HIGH)) == 2
    assert codec_for(bytes).decode(codec_for(bytes).encode(bytearray(b"ab"))) == b"ab"
    assert codec_for(float).decode(codec_for(float).encode(2)) == 2.0


# ------------------------------------------------------------------------------------------ type errors


@pytest.mark.parametrize(
    ("tp", "value", "fragments"),
    [
        (st.Image, st.Corrected(b"", b""), ["Image", "expected Image, found Corrected"]),
        (st.Image, st.Image("not bytes"), ["Image.img: expected bytes, found str 'not bytes'"]),
        (st.Image, None, ["expected Image, found None"]),
        (int, True, ["expected int, found bool True"]),
        (int, 1.5, ["expected int, found float 1.5"]),
        (int, 2**64, ["outside the 64-bit Avro long range"]),
        (bool, None, ["expected bool, found None"]),
        (float, "1", ["expected float, found str '1'"]),
        (bytes | None, 5, ["expected bytes | None, found int 5"]),
        (list[int], [1, "2"], ["[1]: expected int, found str '2'"]),
        (list[int], (1, 2), ["expected list[int], found tuple"]),
        (dict[str, int], {1: 2}, ["expected str keys, found the key int 1"]),
        (datetime.datetime, datetime.datetime(2024, 1, 1), ["naive", "timezone.utc"]),
        (datetime.date, datetime.datetime(2024, 1, 1, tzinfo=UTC), ["expected date, found datetime"]),
        (st.Verdict, "OK", ["expected Verdict, found str 'OK'"]),
        (
            st.Review,
            full_review().__class__("x", 1.0, "OK", st.Reviewer("a")),
            ["Review.verdict: expected Verdict"],
        ),
        (
            st.Review,
            st.Review("x", 1.0, st.Verdict.OK, st.Reviewer(7)),
            ["Review.reviewer.name: expected str, found int 7"],
        ),
        (
            st.Review,
            st.Review("x", 1.0, st.Verdict.OK, st.Reviewer("a"), previous=st.Image(None)),
            ["Review.previous.img: expected bytes, found None"],
        ),
        (
            st.Review,
            st.Review("x", 1.0, st.Verdict.OK, st.Reviewer("a"), price=decimal.Decimal("1.001")),
            ["Review.price", "scale 2", "too many digits"],
        ),
        (
            st.TreeNode,
            st.TreeNode(1, [st.TreeNode(2, [st.TreeNode("3")])]),
            ["TreeNode.children[0].children[0].value"],
        ),
        (
            st.Outer,
            st.Outer(st.Outer.Inner(1), lookup={"k": 3}),
            ["Outer.lookup['k']: expected Outer.Inner, found int 3"],
        ),
    ],
)
def test_wrong_types_raise_value_type_error(tp: Any, value: Any, fragments: list[str]) -> None:
    codec = codec_for(tp)
    with pytest.raises(ValueTypeError) as info:
        codec.encode(value)
    assert isinstance(info.value, TypeError)  # `except TypeError` keeps working
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    with pytest.raises(ValueTypeError):
        codec.encode_body(value)


# ------------------------------------------------------------------------------------------ decode errors

SOURCE = "topic 'pipeteer.demo.input' partition 3 offset 42"


def _decode_error(data: bytes, codec: Codec[Any] | None = None) -> str:
    codec = codec or codec_for(st.Image)
    with pytest.raises(DecodeError) as info:
        codec.decode(data, source=SOURCE)
    message = str(info.value)
    assert SOURCE in message
    assert f"expected {codec.name} (fingerprint {codec.fingerprint.hex()})" in message
    return message


def test_empty_bytes() -> None:
    assert "found 0 bytes, not single-object encoding" in _decode_error(b"")


def test_wrong_magic() -> None:
    message = _decode_error(b'{"img": "json?"}')
    assert "16 bytes (7b 22 69 6d 67 22 3a 20 22 6a 73 6f ...), not single-object encoding" in message


def test_confluent_framed_bytes_get_a_hint() -> None:
    message = _decode_error(b"\x00\x00\x00\x00\x07" + codec_for(st.Image).encode_body(st.Image(b"")))
    assert "Confluent wire format with schema id 7" in message and "registry URL" in message


def test_unknown_fingerprint() -> None:
    other = codec_for(st.Corrected).encode(st.Corrected(b"a", b"b"))
    message = _decode_error(other)
    assert f"fingerprint {codec_for(st.Corrected).fingerprint.hex()}" in message
    assert "neither the current schema nor a published or registered older one" in message
    assert ".avsc" in message


def test_truncated_body() -> None:
    data = codec_for(st.Image).encode(st.Image(b"0123456789", "name"))
    message = _decode_error(data[:-3])
    assert "a body that does not decode with writer schema tests.unit.codec.sample_types.Image" in message
    assert "ends before the record does" in message


def test_garbage_body() -> None:
    codec = codec_for(st.Review)
    message = _decode_error(codec._header + b"\xff" * 40, codec)
    assert "does not decode" in message


def test_trailing_bytes() -> None:
    data = codec_for(st.Image).encode(st.Image(b"x"))
    assert "2 bytes left over after the record" in _decode_error(data + b"\x00\x00")


def test_decode_accepts_other_buffers() -> None:
    codec = codec_for(st.Image)
    data = codec.encode(st.Image(b"x"))
    assert codec.decode(bytearray(data)) == st.Image(b"x")
    assert codec.decode(memoryview(data)) == st.Image(b"x")


def test_decode_without_source_still_says_what_failed() -> None:
    with pytest.raises(
        DecodeError, match=r"cannot decode a record: expected tests\.unit\.codec\.sample_types\.Image"
    ):
        codec_for(st.Image).decode(b"nope")
