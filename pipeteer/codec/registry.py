"""Confluent wire format: `0x00`, the 4-byte big-endian schema id, then the Avro body.

Used when a schema registry URL is configured. The schema is registered under a
subject (by default the record's full name, Confluent's RecordNameStrategy; pass
`subject="<topic>-value"` for TopicNameStrategy) the first time a value is encoded,
and writer schemas of unknown ids are fetched from the registry once, then cached.

`confluent_kafka` is imported only when one of these codecs is made, so the rest of
pipeteer works without the `kafka` extra. `SchemaRegistryClient.new_client` turns a
`mock://name` URL into confluent-kafka's own in-memory registry (for tests; the Kafka
integration tests also run a real one, Apicurio Registry through its Confluent-compatible API).

Registry calls are blocking HTTP requests, made at most once per schema id; call
`register()` at startup (for example through `asyncio.to_thread`) to keep them off the
first `encode`. A codec made from a URL or config owns its client, whose HTTP
connections stay open between calls: `close()` it when done (`ValueCodec.close`, which a
backend calls on its queues' codecs when it closes).
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pipeteer.codec.codec import Codec, WriterSchema, describe_bytes
from pipeteer.codec.schema import Schema
from pipeteer.errors import CodecError, ConfigError, DecodeError, SchemaError

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

T = TypeVar("T")

WIRE_MAGIC = b"\x00"
WIRE_HEADER_SIZE = 5


def registry_client(url_or_conf: str | dict[str, Any]) -> SchemaRegistryClient:
    """A `SchemaRegistryClient` for a URL (`http://...`, or `mock://name` for the in-memory one)."""
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:  # pragma: no cover - the kafka extra is installed in development
        raise ConfigError("a schema registry needs confluent-kafka: pip install 'pipeteer[kafka]'") from exc
    conf = {"url": url_or_conf} if isinstance(url_or_conf, str) else dict(url_or_conf)
    try:
        return SchemaRegistryClient.new_client(conf)
    except Exception as exc:
        raise ConfigError(f"invalid schema registry configuration {_masked(conf)}: {exc}") from exc


def close_registry_client(client: SchemaRegistryClient) -> None:
    """Close every HTTP client `client` holds; safe to call more than once.

    confluent-kafka's `SchemaRegistryClient.close()` (2.16) closes the session of its REST calls,
    but not the one an OAuth bearer-token provider fetches tokens with
    (`bearer.auth.credentials.source` OAUTHBEARER or OAUTHBEARER_AZURE_IMDS): left to the garbage
    collector, its sockets end in `ResourceWarning`s. That one is found through the client's private
    attributes, so a release that renames them leaves it open as before, and breaks nothing.
    """
    import httpx  # a dependency of confluent-kafka's schema registry client

    client.close()
    rest = getattr(client, "_rest_client", None)
    token_client = getattr(getattr(rest, "bearer_field_provider", None), "client", None)
    if isinstance(token_client, httpx.Client):
        token_client.close()


def _refusal(exc: Exception) -> str:
    """Why the registry did not register a schema, with the fix when it is a compatibility refusal."""
    from confluent_kafka.schema_registry import SchemaRegistryError

    if isinstance(exc, SchemaRegistryError) and exc.http_status_code == 409:
        return (
            f"the registry refuses it as incompatible with the versions already under the subject "
            f"({exc.error_message}); readers and writers of different versions must resolve each other: "
            "give new fields defaults and keep field types, or give the state type a new name"
        )
    return str(exc)


def _in_memory(url_or_conf: str | dict[str, Any]) -> bool:
    """Whether the registry is confluent-kafka's in-memory one, whose schemas live in its client."""
    url = url_or_conf if isinstance(url_or_conf, str) else url_or_conf.get("url")
    return isinstance(url, str) and url.startswith("mock://")


def _masked(conf: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if "auth" in k or "secret" in k or "password" in k else v) for k, v in conf.items()}


class ConfluentCodec(Generic[T]):
    """A `Codec` framed in the Confluent wire format against a schema registry.

    >>> codec = ConfluentCodec(codec_for(Input), "mock://demo")   # doctest: +SKIP
    >>> codec.encode(Input(b"png"))[:5]                           # doctest: +SKIP
    b'\\x00\\x00\\x00\\x00\\x01'
    >>> codec.close()                                             # doctest: +SKIP

    Given a URL or a client config, the codec makes its own `SchemaRegistryClient` and `close()`
    closes it; given a client, the client stays the caller's to close.
    """

    def __init__(
        self,
        codec: Codec[T],
        registry: str | dict[str, Any] | SchemaRegistryClient,
        *,
        subject: str | None = None,
    ) -> None:
        self.codec = codec
        self._config: str | dict[str, Any] | None = None
        if isinstance(registry, str | dict):
            self._config = registry
            # made now, so that a bad URL or config is a ConfigError here rather than at the first record
            self._client: SchemaRegistryClient | None = registry_client(registry)
        else:
            self._client = registry
        self._client_lock = threading.Lock()
        self.subject = subject or codec.name
        self._schema_id: int | None = None
        self._header = b""
        self._by_id: dict[int, WriterSchema] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> SchemaRegistryClient:
        """The registry client (after `close()`, a new one is made when the registry is needed again)."""
        client = self._client
        if client is None:
            with self._client_lock:
                client = self._client
                if client is None:
                    assert self._config is not None  # only a client this codec made is ever dropped
                    client = self._client = registry_client(self._config)
        return client

    def close(self) -> None:
        """Close the registry client this codec made (its HTTP connections); idempotent.

        A client passed in by the caller is left open. The codec stays usable: what it already
        knows (its schema id, writer schemas it fetched) needs no registry, and a later registry
        call opens a new client — a backend closed and then used again keeps working.
        """
        if self._config is None:
            return
        with self._client_lock:
            client = self._client
            # confluent-kafka's in-memory registry (`mock://`) lives in its client: that one is kept
            # (its HTTP session, never used, is closed all the same)
            if not _in_memory(self._config):
                self._client = None
        if client is not None:
            close_registry_client(client)

    def __enter__(self) -> ConfluentCodec[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def tp(self) -> Any:
        """The Python type this codec encodes."""
        return self.codec.tp

    @property
    def schema(self) -> Schema:
        """The current (reader and writer) schema."""
        return self.codec.schema

    def __repr__(self) -> str:
        return f"ConfluentCodec({self.codec.describe()}, subject={self.subject!r})"

    def describe(self) -> str:
        """The current schema, as the inner codec names it (`Codec.describe`)."""
        return self.codec.describe()

    def register(self) -> int:
        """Register the current schema under the subject (once); returns its schema id."""
        if self._schema_id is None:
            from confluent_kafka.schema_registry import Schema as RegistrySchema

            with self._lock:
                if self._schema_id is None:
                    text = json.dumps(self.codec.schema, sort_keys=True)
                    try:
                        schema_id = self.client.register_schema(self.subject, RegistrySchema(text, "AVRO"))
                    except Exception as exc:
                        raise SchemaError(
                            f"cannot register {self.codec.describe()} under subject {self.subject!r}: "
                            f"{_refusal(exc)}"
                        ) from exc
                    self._by_id[schema_id] = self.codec.current
                    self._header = WIRE_MAGIC + schema_id.to_bytes(4, "big")
                    self._schema_id = schema_id
        return self._schema_id

    @property
    def schema_id(self) -> int:
        """The registry's id of the current schema (registers it on first use)."""
        return self.register()

    def encode(self, value: T) -> bytes:
        """`0x00` + schema id + Avro body; `ValueTypeError` if `value` is not a `T`."""
        if self._schema_id is None:
            self.register()
        return self._header + self.codec.encode_body(value)

    def decode(self, data: bytes, *, source: str = "") -> T:
        """The value in wire-format `data`; `DecodeError` naming `source` when it cannot be decoded."""
        if data.__class__ is not bytes:
            data = bytes(data)
        if len(data) < WIRE_HEADER_SIZE or data[0] != 0:
            hint = (
                " (it looks like Avro single-object encoding: no registry is needed)"
                if data[:2] == b"\xc3\x01"
                else ""
            )
            raise self._error(source, f"{describe_bytes(data)}, not Confluent wire format{hint}")
        schema_id = int.from_bytes(data[1:WIRE_HEADER_SIZE], "big")
        writer = self._by_id.get(schema_id)
        if writer is None:
            writer = self._fetch(schema_id, source)
        return self.codec.decode_body(data, writer=writer, offset=WIRE_HEADER_SIZE, source=source)

    def _fetch(self, schema_id: int, source: str) -> WriterSchema:
        try:
            registered = self.client.get_schema(schema_id)
            schema = json.loads(registered.schema_str or "")
        except Exception as exc:
            raise self._error(
                source, f"schema id {schema_id}, which the registry does not resolve ({exc})"
            ) from exc
        writer = WriterSchema.of(schema)
        if writer.fingerprint == self.codec.fingerprint:
            writer = self.codec.current
        else:
            try:
                self.codec.add_writer_schema(schema)
            except CodecError as exc:
                raise self._error(
                    source, f"schema id {schema_id} ({writer.name}), which cannot be read: {exc}"
                ) from exc
            writer = self.codec.writer(writer.fingerprint) or writer
        with self._lock:
            self._by_id[schema_id] = writer
        return writer

    def _error(self, source: str, found: str) -> DecodeError:
        where = source or "a record"
        expected = f"Confluent wire format of {self.codec.describe()} (subject {self.subject!r})"
        return DecodeError(f"cannot decode {where}: expected {expected}, found {found}", source=source, expected=expected, found=found)
