"""Interop: the bytes pipeteer writes are plain Avro to other implementations, and back.

- single-object encoding, read by plain fastavro and by the Apache `avro` package given only
  the exported .avsc file;
- Confluent wire format, read by confluent-kafka's own AvroDeserializer, and bytes written by
  its AvroSerializer read by pipeteer. The registry is confluent-kafka's built-in in-memory
  registry (a `mock://` URL): no Schema Registry server can run on this machine.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pipeteer.codec import Codec, ValueCodec, codec_for, export_schemas, fingerprint, make_codec
from pipeteer.codec.registry import ConfluentCodec
from pipeteer.errors import DecodeError, SchemaError
from tests.unit.codec import sample_types as st
from tests.unit.codec.test_codec import full_review

CASES: list[tuple[type, Any, dict[str, Any]]] = [
    (st.Image, st.Image(b"\x89PNG", "cat.png"), {"img": b"\x89PNG", "name": "cat.png"}),
    (st.Corrected, st.Corrected(b"a", b"b"), {"img": b"a", "corrected": b"b"}),
    (
        st.Linked,
        st.Linked(1, st.Linked(2)),
        {"value": 1, "next": {"value": 2, "next": None}},
    ),
]


def _registry() -> SchemaRegistryClient:
    # confluent-kafka's in-memory registry; a fresh one per test keeps schema ids predictable
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4()}"})


@pytest.mark.parametrize(("tp", "value", "as_dict"), CASES)
def test_plain_fastavro_reads_pipeteer_bytes_with_only_the_avsc(
    tmp_path: Path, tp: type, value: Any, as_dict: dict[str, Any]
) -> None:
    (path,) = export_schemas([tp], tmp_path)
    data = codec_for(tp).encode(value)
    schema = fastavro.parse_schema(json.loads(path.read_text()))
    assert data[:2] == b"\xc3\x01"
    assert fastavro.schemaless_reader(io.BytesIO(data[10:]), schema, None) == as_dict


def test_apache_avro_reads_pipeteer_bytes_with_only_the_avsc(tmp_path: Path) -> None:
    (path,) = export_schemas([st.Review], tmp_path)
    schema = avro.schema.parse(path.read_text())
    value = full_review()
    data = codec_for(st.Review).encode(value)
    # (no fingerprint comparison here: the `avro` package keeps logical-type primitives as
    # {"type": "long"} in its canonical form, where the spec and Java write "long"; see
    # test_fingerprints_follow_the_spec)
    record = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert record["id"] == value.id and record["verdict"] == "KO" and record["price"] == value.price
    assert record["reviewer"] == {"name": "ana", "email": None}
    assert record["history"] == ["OK", "KO", "OK"]
    assert record["previous"] == {"img": b"a", "corrected": b"b"}


def test_apache_avro_written_bytes_decode_in_pipeteer(tmp_path: Path) -> None:
    (path,) = export_schemas([st.Image], tmp_path)
    schema = avro.schema.parse(path.read_text())
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + schema.fingerprint("CRC-64-AVRO"))
    avro.io.DatumWriter(schema).write({"img": b"raw", "name": "from-java-land"}, avro.io.BinaryEncoder(buf))
    assert codec_for(st.Image).decode(buf.getvalue()) == st.Image(b"raw", "from-java-land")


@pytest.mark.parametrize(("tp", "value", "as_dict"), CASES)
def test_confluent_deserializer_reads_pipeteer_wire_format(
    tp: type, value: Any, as_dict: dict[str, Any]
) -> None:
    registry = _registry()
    codec: ConfluentCodec[Any] = ConfluentCodec(codec_for(tp), registry, subject="demo-value")
    data = codec.encode(value)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == codec.schema_id
    deserializer = AvroDeserializer(registry)
    got = deserializer(data, SerializationContext("demo", MessageField.VALUE))
    assert got == as_dict
    assert codec.decode(data, source="topic 'demo' partition 0 offset 0") == value


def test_pipeteer_reads_confluent_serializer_bytes() -> None:
    registry = _registry()
    schema_str = json.dumps(codec_for(st.Image).schema)
    serializer = AvroSerializer(registry, schema_str, conf={"auto.register.schemas": True})
    data = serializer({"img": b"x", "name": "n"}, SerializationContext("images", MessageField.VALUE))
    codec: ConfluentCodec[st.Image] = ConfluentCodec(codec_for(st.Image), registry, subject="images-value")
    assert codec.decode(data, source="topic 'images' partition 2 offset 9") == st.Image(b"x", "n")


def test_registry_resolves_an_older_writer_schema() -> None:
    registry = _registry()
    old = {
        "type": "record",
        "name": "Image",
        "namespace": "tests.unit.codec.sample_types",
        "fields": [{"name": "img", "type": "bytes"}],
    }
    serializer = AvroSerializer(registry, json.dumps(old), conf={"auto.register.schemas": True})
    data = serializer({"img": b"old"}, SerializationContext("images", MessageField.VALUE))
    codec: ConfluentCodec[st.Image] = ConfluentCodec(Codec(st.Image), registry, subject="images-value")
    assert codec.decode(data) == st.Image(b"old", "unnamed")  # the new field's default


def test_registry_unknown_id_and_bad_framing_are_decode_errors() -> None:
    codec: ConfluentCodec[st.Image] = ConfluentCodec(codec_for(st.Image), _registry())
    body = codec_for(st.Image).encode_body(st.Image(b"x"))
    with pytest.raises(DecodeError) as info:
        codec.decode(b"\x00\x00\x00\x03\xe7" + body, source="topic 'images' partition 1 offset 5")
    message = str(info.value)
    assert "topic 'images' partition 1 offset 5" in message and "schema id 999" in message
    assert f"expected Confluent wire format of {codec.codec.describe()}" in message

    single = codec_for(st.Image).encode(st.Image(b"x"))
    with pytest.raises(DecodeError, match="looks like Avro single-object encoding"):
        codec.decode(single, source="topic 'images' partition 1 offset 6")


def test_registry_refuses_an_unreadable_writer_schema() -> None:
    registry = _registry()
    old = {
        "type": "record",
        "name": "Image",
        "namespace": "tests.unit.codec.sample_types",
        "fields": [{"name": "name", "type": "string"}],
    }
    serializer = AvroSerializer(registry, json.dumps(old), conf={"auto.register.schemas": True})
    data = serializer({"name": "no image"}, SerializationContext("images", MessageField.VALUE))
    codec: ConfluentCodec[st.Image] = ConfluentCodec(Codec(st.Image), registry)
    with pytest.raises(DecodeError, match=r"cannot be read: .*Image\.img: field added without a default"):
        codec.decode(data, source="topic 'images' partition 0 offset 1")


def test_make_codec_picks_the_framing(tmp_path: Path) -> None:
    plain: ValueCodec[st.Image] = make_codec(st.Image)
    assert isinstance(plain, Codec) and isinstance(plain, ValueCodec)
    framed = make_codec(st.Image, registry=f"mock://{uuid.uuid4()}", subject="images-value")
    assert isinstance(framed, ConfluentCodec) and isinstance(framed, ValueCodec)
    assert framed.decode(framed.encode(st.Image(b"z"))) == st.Image(b"z")
    assert framed.encode(st.Image(b"z"))[0] == 0


def test_make_codec_with_a_schema_dir_accepts_older_records(tmp_path: Path) -> None:
    old_schema = {
        "type": "record",
        "name": "Image",
        "namespace": "tests.unit.codec.sample_types",
        "fields": [{"name": "img", "type": "bytes"}],
    }
    history = tmp_path / "history"
    history.mkdir()
    (history / "tests.unit.codec.sample_types.Image.v1.avsc").write_text(json.dumps(old_schema))
    export_schemas([st.Image], tmp_path)  # the current one beside it, as `schemas export` leaves it
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fingerprint(old_schema))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old_schema), {"img": b"v1"})
    codec = make_codec(st.Image, schema_dir=tmp_path)
    assert codec.decode(buf.getvalue()) == st.Image(b"v1", "unnamed")


def test_make_codec_refuses_a_stale_unreadable_schema_file(tmp_path: Path) -> None:
    stale = {
        "type": "record",
        "name": "Corrected",
        "namespace": "tests.unit.codec.sample_types",
        "fields": [{"name": "img", "type": "string"}],
    }
    (tmp_path / "tests.unit.codec.sample_types.Corrected.avsc").write_text(json.dumps(stale))
    with pytest.raises(SchemaError, match=r"Corrected\.corrected: field added without a default"):
        make_codec(st.Corrected, schema_dir=tmp_path)
