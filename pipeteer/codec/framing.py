"""The one codec interface backends use, and the factory that picks the framing.

>>> codec = make_codec(Input)                                          # doctest: +SKIP
>>> codec = make_codec(Input, schema_dir="schemas")                    # doctest: +SKIP
>>> codec = make_codec(Input, registry="http://registry:8081")         # doctest: +SKIP

Without a registry, records are framed with Avro single-object encoding against the
schema files (older writer schemas found under `schema_dir` are accepted); with a
registry URL, with the Confluent wire format. SQLite, memory and Kafka backends all
store exactly these bytes.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, TypeVar, runtime_checkable

from pipeteer.codec.codec import codec_for
from pipeteer.codec.files import SchemaStore
from pipeteer.codec.schema import Schema

T = TypeVar("T")


@runtime_checkable
class ValueCodec(Protocol[T]):
    """Values of one type ↔ framed Avro bytes (`Codec` and `ConfluentCodec` are ones)."""

    @property
    def tp(self) -> Any: ...

    @property
    def schema(self) -> Schema: ...

    def encode(self, value: T) -> bytes: ...

    def decode(self, data: bytes, *, source: str = "") -> T: ...

    def describe(self) -> str:
        """The current schema as errors and `unknown_writers` name a reader: `ns.Name (fingerprint …)`."""

    def close(self) -> None:
        """Release what the codec holds open (a schema registry client's connections); idempotent.

        Backends call it when they close: a registry codec's HTTP connections would otherwise be
        left to the garbage collector. The codec stays usable (it reconnects when it must).
        """


def make_codec(
    tp: type[T] | Any,
    *,
    registry: str | dict[str, Any] | Any | None = None,
    schema_dir: str | os.PathLike[str] | None = None,
    subject: str | None = None,
    namespace: str | None = None,
) -> ValueCodec[T]:
    """The codec a backend should use for `tp`.

    `registry`: a schema registry URL (or client config dict, or client) → Confluent wire
    format; otherwise single-object encoding. `schema_dir`: where `.avsc` files of older
    versions live, so that their records still decode (a stale file the current type
    cannot read raises `SchemaError` here, at startup).
    """
    codec = codec_for(tp, namespace=namespace)
    if schema_dir is not None:
        SchemaStore.from_dir(schema_dir).attach(codec)
    if registry is None:
        return codec
    from pipeteer.codec.registry import ConfluentCodec  # confluent_kafka only when a registry is used

    return ConfluentCodec(codec, registry, subject=subject)


def kafka_source(topic: str, partition: int, offset: int) -> str:
    """How a DecodeError names a Kafka record: `topic 'x' partition 0 offset 12`."""
    return f"topic {topic!r} partition {partition} offset {offset}"


def table_source(table: str, id: str) -> str:
    """How a DecodeError names a stored row: `table 'input' id 'abc'`."""
    return f"table {table!r} id {id!r}"
