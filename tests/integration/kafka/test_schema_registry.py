"""Pipeteer against a real schema registry (`schema_registry` fixture: Apicurio Registry 3 through its
Confluent-compatible API, global compatibility BACKWARD) — what confluent-kafka's `mock://`
registry in tests/integration/test_codec_interop.py cannot show: registration over HTTP under
`<topic>-value`, compatibility enforced by the registry, writer schemas fetched by id by another
reader, and no HTTP connection left open.

The versions of one state type are three Python classes with one Avro full name (each sets its
`__qualname__`; the Avro name is the module and the qualified name, see `pipeteer.codec.model`).
"""

from __future__ import annotations

import asyncio
import gc
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from pipeteer.codec import Codec
from pipeteer.codec.registry import WIRE_MAGIC, ConfluentCodec
from pipeteer.errors import SchemaError
from pipeteer.queues.kafka import KafkaBackend
from tests.integration.kafka.procs import backend_url, read_topic
from tests.integration.test_queue_contract import eventually
from tests.kafka_broker import Broker
from tests.schema_registry import SchemaRegistry

T = TypeVar("T")


@dataclass
class ReadingV1:
    """A sensor reading, as the first release wrote it."""

    __qualname__ = "Reading"
    sensor: str
    value: int


@dataclass
class ReadingV2:
    """The second release: a new field with a default (BACKWARD compatible: v2 reads v1 records)."""

    __qualname__ = "Reading"
    sensor: str
    value: int
    unit: str = "celsius"


@dataclass
class ReadingV3:
    """An incompatible third release: `value` int -> string (no Avro promotion reads an int as a string)."""

    __qualname__ = "Reading"
    sensor: str
    value: str


def test_the_versions_share_one_avro_name() -> None:
    names = {Codec(tp).name for tp in (ReadingV1, ReadingV2, ReadingV3)}
    assert names == {f"{__name__}.Reading"}


def registry_codec(tp: type[T], registry: SchemaRegistry, subject: str) -> ConfluentCodec[T]:
    """A codec with a client of its own (made from the URL) and a fresh `Codec` (no writer schema
    known beforehand, as in another process)."""
    return ConfluentCodec(Codec(tp), registry.url, subject=subject)


def subject() -> str:
    """A subject of this test only (the registry lives for the whole session)."""
    return f"t{uuid.uuid4().hex[:10]}-value"


def versions(registry: SchemaRegistry, subject: str) -> list[int]:
    return list(registry.request("GET", f"/subjects/{quote(subject, safe='')}/versions"))


# --- the Kafka backend configured with the registry -----------------------------------------------


@pytest.fixture
async def backend(
    kafka_broker: Broker, kafka_prefix: str, schema_registry: SchemaRegistry
) -> AsyncIterator[KafkaBackend]:
    url = backend_url(kafka_broker, kafka_prefix, schema_registry=quote(schema_registry.url, safe=""))
    b = KafkaBackend.from_url(url, workflow_name="registry", env={}, standalone=True)
    yield b
    await asyncio.to_thread(b.close)
    # KafkaBackend.close() is to close its queues' codecs (issue 21); until it does, here (idempotent)
    for q in b.queues.values():
        q.codec.close()


async def test_the_backend_writes_confluent_wire_format_under_the_topic_subject(
    backend: KafkaBackend, kafka_broker: Broker, schema_registry: SchemaRegistry
) -> None:
    """Pushed, registered under `<topic>-value`, read back; on the topic, `0x00` + the registry's id + Avro."""
    q = backend.make_queue(ReadingV2, ["readings"])
    sent = {f"r{i}": ReadingV2(f"s{i}", i, "kelvin" if i % 2 else "celsius") for i in range(6)}
    await asyncio.gather(*(q.push(id, value) for id, value in sent.items()))
    assert dict(await eventually(lambda: q.items(), lambda items: len(list(items)) == len(sent))) == sent

    subject = f"{q.topic}-value"
    latest = schema_registry.request("GET", f"/subjects/{quote(subject, safe='')}/versions/latest")
    assert latest["subject"] == subject and latest["version"] == 1
    records = await asyncio.to_thread(read_topic, kafka_broker.bootstrap, q.topic)
    assert sorted(m.key().decode() for m in records) == sorted(sent)
    for m in records:
        value = m.value()
        assert value[:1] == WIRE_MAGIC and int.from_bytes(value[1:5], "big") == latest["id"]

    # another reader (its own client, nothing registered) fetches the writer schema by id
    with registry_codec(ReadingV2, schema_registry, subject) as reader:
        assert {m.key().decode(): reader.decode(m.value()) for m in records} == sent
    # and so does confluent-kafka's own deserializer: the records are plain Confluent-framed Avro
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    with SchemaRegistryClient({"url": schema_registry.url}) as client:
        decoded = {m.key().decode(): AvroDeserializer(client)(m.value(), None) for m in records}
    assert decoded == {id: vars(v) for id, v in sent.items()}


# --- evolution through the registry -----------------------------------------------------------------


@pytest.fixture
def evolved(schema_registry: SchemaRegistry) -> Iterator[tuple[str, list[bytes], list[bytes]]]:
    """A subject with v1 then v2 registered (BACKWARD allows adding a field with a default), and
    records of each, written by writers that are closed before any reader starts."""
    name = subject()
    with registry_codec(ReadingV1, schema_registry, name) as v1:
        old = [v1.encode(ReadingV1("a", 1)), v1.encode(ReadingV1("b", 2))]
    with registry_codec(ReadingV2, schema_registry, name) as v2:
        new = [v2.encode(ReadingV2("c", 3, "kelvin")), v2.encode(ReadingV2("d", 4))]
    assert versions(schema_registry, name) == [1, 2]
    assert old[0][:5] != new[0][:5]  # two schema ids
    yield name, old, new


def test_an_old_reader_decodes_new_records(
    schema_registry: SchemaRegistry, evolved: tuple[str, list[bytes], list[bytes]]
) -> None:
    """v1 reads v2 records: the writer schema fetched by id, the new field ignored."""
    name, old, new = evolved
    with registry_codec(ReadingV1, schema_registry, name) as reader:
        assert [reader.decode(d) for d in new] == [ReadingV1("c", 3), ReadingV1("d", 4)]
        assert [reader.decode(d) for d in old] == [ReadingV1("a", 1), ReadingV1("b", 2)]


def test_a_new_reader_decodes_old_records(
    schema_registry: SchemaRegistry, evolved: tuple[str, list[bytes], list[bytes]]
) -> None:
    """v2 reads v1 records: the writer schema fetched by id, the new field's default filled in."""
    name, old, new = evolved
    with registry_codec(ReadingV2, schema_registry, name) as reader:
        assert [reader.decode(d) for d in old] == [ReadingV2("a", 1, "celsius"), ReadingV2("b", 2, "celsius")]
        assert [reader.decode(d) for d in new] == [ReadingV2("c", 3, "kelvin"), ReadingV2("d", 4, "celsius")]


def test_the_registry_refuses_an_incompatible_schema_by_subject(
    schema_registry: SchemaRegistry, evolved: tuple[str, list[bytes], list[bytes]]
) -> None:
    """v3 (`value` int -> string) breaks BACKWARD: refused at registration, a SchemaError naming the
    subject and the registry's reason; nothing is registered and nothing encoded."""
    name, _, _ = evolved
    with registry_codec(ReadingV3, schema_registry, name) as v3:
        with pytest.raises(SchemaError, match=rf"under subject '{name}'.*(?i:incompatible)") as refused:
            v3.register()
        with pytest.raises(SchemaError, match=rf"under subject '{name}'"):
            v3.encode(ReadingV3("e", "5"))
    assert "Reading" in str(refused.value)
    assert versions(schema_registry, name) == [1, 2]


# --- connections ------------------------------------------------------------------------------------


def resource_warnings(use: Any) -> list[str]:
    """The ResourceWarnings raised while `use()` runs and its garbage is collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        use()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_close_leaves_no_connection_open(schema_registry: SchemaRegistry) -> None:
    """A codec made from a URL owns its client: `close()` closes its HTTP connections (idempotent),
    and a codec used after it reconnects. Left unclosed, the sockets warn when collected — which
    the suite's `filterwarnings = error` turns into a failure."""
    name = subject()

    def closed() -> None:
        codec = registry_codec(ReadingV1, schema_registry, name)
        data = codec.encode(ReadingV1("a", 1))
        codec.close()
        codec.close()
        assert codec.decode(data) == ReadingV1("a", 1)  # known id: no registry call
        with registry_codec(ReadingV2, schema_registry, name) as reader:
            reader.close()
            assert reader.decode(data) == ReadingV2("a", 1)  # fetched by a new client, closed on exit

    def leaked() -> None:
        codec = registry_codec(ReadingV1, schema_registry, name)
        codec.encode(ReadingV1("a", 1))

    assert resource_warnings(closed) == []
    assert any("unclosed" in w for w in resource_warnings(leaked))  # (the check above can fail)


def test_a_client_passed_in_stays_the_callers(schema_registry: SchemaRegistry) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    with SchemaRegistryClient({"url": schema_registry.url}) as client:
        codec: ConfluentCodec[ReadingV1] = ConfluentCodec(Codec(ReadingV1), client, subject=subject())
        codec.encode(ReadingV1("a", 1))
        codec.close()
        assert codec.client is client
        assert client.get_subjects()  # still open


def test_an_in_memory_registry_outlives_close() -> None:
    """confluent-kafka's `mock://` registry lives in its client: `close()` keeps that client (a new
    one would be an empty registry), so the codec still resolves what it registered."""
    codec = ConfluentCodec(Codec(ReadingV1), f"mock://{uuid.uuid4()}", subject=subject())
    data = codec.encode(ReadingV1("a", 1))
    client = codec.client
    codec.close()
    assert codec.client is client
    assert codec.client.get_schema(int.from_bytes(data[1:5], "big")).schema_str
    codec.close()
