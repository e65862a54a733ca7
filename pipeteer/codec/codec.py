"""`Codec[T]`: Python values of one type ↔ Avro bytes, the same bytes on every backend.

>>> from dataclasses import dataclass
>>> @dataclass
... class Input:
...     img: bytes
>>> codec = codec_for(Input, namespace="demo")
>>> data = codec.encode(Input(b"png"))
>>> data[:2] == b"\\xc3\\x01" and data[2:10] == codec.fingerprint
True
>>> codec.decode(data)
Input(img=b'png')

`encode` frames the body with Avro single-object encoding (C3 01, then the 8-byte
little-endian CRC-64-AVRO fingerprint of the schema's canonical form). `decode` reads
records written with the current schema, or with any older schema registered through
`add_writer_schema` (Avro schema resolution turns them into the current type).
Other framings (Confluent wire format, see `registry`) reuse `encode_body` / `decode_body`.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pipeteer.codec.catalog import catalogs
from pipeteer.codec.check import detail, mismatch
from pipeteer.codec.convert import Converters
from pipeteer.codec.flat import flat_decoder, flat_encoder, is_flat
from pipeteer.codec.model import derive
from pipeteer.codec.nodes import ArrayNode, MapNode, NamedNode, Node, RecordNode, UnionNode
from pipeteer.codec.schema import Schema, canonical_form, fingerprint, full_name, node_schema
from pipeteer.errors import DecodeError, SchemaError, UnreadableRecord, ValueTypeError
from pipeteer.types import type_name

T = TypeVar("T")

log = logging.getLogger("pipeteer.codec")

MAGIC = b"\xc3\x01"
"""The two bytes that start an Avro single-object encoded record."""

HEADER_SIZE = len(MAGIC) + 8


@dataclass(frozen=True)
class WriterSchema:
    """A schema records may have been written with, parsed once for fastavro."""

    schema: Schema
    fingerprint: bytes
    parsed: Any

    @classmethod
    def of(cls, schema: Schema) -> WriterSchema:
        """Fingerprint and parse `schema`."""
        return cls(schema, fingerprint(schema), parse_schema(schema))

    @property
    def name(self) -> str:
        """The schema's full name (its canonical form for unnamed schemas)."""
        return full_name(self.schema) or canonical_form(self.schema)


def describe_bytes(data: bytes, limit: int = 12) -> str:
    """`N bytes starting c3 01 ab ...` — what a DecodeError says it found."""
    head = data[:limit].hex(" ")
    more = " ..." if len(data) > limit else ""
    return f"{len(data)} bytes ({head}{more})" if data else "0 bytes"


class Codec(Generic[T]):
    """Avro encoder/decoder for one Python type; get one with `codec_for(tp)` (cached)."""

    def __init__(self, tp: Any, *, namespace: str | None = None) -> None:
        node = derive(tp, namespace)
        self.tp = tp
        self.namespace = namespace
        self.node: Node = node
        self.schema: Schema = node_schema(node)
        self.name: str = full_name(self.schema) or type_name(tp)
        self.fingerprint: bytes = fingerprint(self.schema)
        self.current = WriterSchema(self.schema, self.fingerprint, parse_schema(self.schema))
        self._parsed = self.current.parsed
        converters = Converters()
        self._to_avro = converters.encoder(node)
        self._from_avro = converters.decoder(node)
        self._plain_class = converters.plain_record_class(node)
        self._header = MAGIC + self.fingerprint
        self._writers: dict[bytes, WriterSchema] = {self.fingerprint: self.current}
        self._lock = threading.Lock()
        # Records and enums inside unions come back as (name, value) so the union
        # decoder knows the branch; without such unions, plain values are cheaper.
        self._named_unions = _named_in_union(node)
        self._read_options: dict[str, Any] = {"return_named_type": True} if self._named_unions else {}
        # The hot paths are closures over everything they need (no attribute lookups, no
        # bound-method objects per call); the instance attributes shadow the methods below,
        # which document the signatures and do the same.
        self._encode = self._make_encode()
        self._decode = self._make_decode()
        if self._plain_class is not None and not self._named_unions and is_flat(node):
            # a record of primitive fields: straight-line code, falling back to the fastavro path
            self._encode = flat_encoder(node, self._plain_class, self._header, self._encode)  # type: ignore[arg-type]
            self._decode = flat_decoder(node, self._plain_class, self._header, self._decode)  # type: ignore[arg-type]
        self.encode = self._encode  # type: ignore[method-assign,assignment]
        self.decode = self._decode  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"Codec({type_name(self.tp)}: {self.describe()})"

    def describe(self) -> str:
        """`ns.Name (fingerprint 0123456789abcdef)`, as error messages name the schema."""
        return f"{self.name} (fingerprint {self.fingerprint.hex()})"

    def close(self) -> None:
        """Nothing to release (`ValueCodec.close`): a codec holds no connection or file."""

    # ------------------------------------------------------------------------------------------ encode

    def encode(self, value: T) -> bytes:
        """The single-object encoding of `value`; `ValueTypeError` if it is not a `T`."""
        return self._encode(value)

    def _make_encode(self) -> Callable[[Any], bytes]:
        header, parsed, to_avro, new_buffer = self._header, self._parsed, self._to_avro, io.BytesIO

        def encode(value: Any) -> bytes:
            buf = new_buffer()
            buf.write(header)
            try:
                schemaless_writer(buf, parsed, to_avro(value))
            except Exception as exc:
                raise self.type_error(value, exc) from exc
            return buf.getvalue()

        return encode

    def encode_body(self, value: T) -> bytes:
        """The schemaless Avro body of `value` (no framing)."""
        buf = io.BytesIO()
        try:
            schemaless_writer(buf, self._parsed, self._to_avro(value))
        except Exception as exc:
            raise self.type_error(value, exc) from exc
        return buf.getvalue()

    def type_error(self, value: Any, exc: BaseException | None = None) -> ValueTypeError:
        """The error for a value that cannot be encoded: where, what was expected, what was found."""
        problem = mismatch(self.node, value)
        if problem is None:  # the types fit; fastavro refused the value itself
            problem = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown problem"
        return ValueTypeError(f"cannot encode a value as {type_name(self.tp)} ({self.name}): {problem}")

    # ------------------------------------------------------------------------------------------ decode

    def decode(self, data: bytes, *, source: str = "") -> T:
        """The value in single-object encoded `data`; `DecodeError` naming `source` if it is not one."""
        value: T = self._decode(data, source=source)
        return value

    def _make_decode(self) -> Callable[..., Any]:
        header, parsed, from_avro, new_buffer = self._header, self._parsed, self._from_avro, io.BytesIO
        named = self._named_unions  # `**options` would cost as much as decoding a small field

        # Hot path: records written with the current schema. Others go to _decode_other.
        def decode(data: bytes, *, source: str = "") -> Any:
            fo = new_buffer(data)
            if fo.read(HEADER_SIZE) != header:
                return self._decode_other(bytes(data), source)
            try:
                if named:
                    datum = schemaless_reader(fo, parsed, None, return_named_type=True)
                else:
                    datum = schemaless_reader(fo, parsed, None)
            except Exception as exc:
                raise self._body_error(source, self.current, exc) from exc
            if fo.tell() != len(data):
                raise self._leftover_error(source, len(data) - fo.tell())
            if from_avro is None:
                return datum  # fastavro gives primitives as they are
            try:
                return from_avro(datum)
            except Exception as exc:
                raise self._value_error(source, exc) from exc

        plain_class: Any = self._plain_class
        new_object = object.__new__

        # The same, for records of plain fields (the common case for states): the record's
        # restore step is inlined (one call less per record).
        def decode_plain_record(data: bytes, *, source: str = "") -> Any:
            fo = new_buffer(data)
            if fo.read(HEADER_SIZE) != header:
                return self._decode_other(bytes(data), source)
            try:
                datum = schemaless_reader(fo, parsed, None)
            except Exception as exc:
                raise self._body_error(source, self.current, exc) from exc
            if fo.tell() != len(data):
                raise self._leftover_error(source, len(data) - fo.tell())
            obj: Any = new_object(plain_class)
            obj.__dict__ = datum
            return obj

        return decode_plain_record if plain_class is not None and not named else decode

    def _decode_other(self, data: bytes, source: str) -> T:
        if not data.startswith(MAGIC) or len(data) < HEADER_SIZE:
            raise self.decode_error(
                source, f"{describe_bytes(data)}, not single-object encoding{_hint(data)}"
            )
        writer = self._writers.get(data[2:HEADER_SIZE])
        if writer is None:
            writer = self._resolve(data[2:HEADER_SIZE], source)
        return self.decode_body(data, writer=writer, offset=HEADER_SIZE, source=source)

    def _resolve(self, fpb: bytes, source: str) -> WriterSchema:
        """The writer schema of fingerprint `fpb`, found in a catalog of this process (`catalog`) and
        resolved against the current one; `UnreadableRecord` when none has it, or it cannot be read."""
        fp = fpb.hex()
        schema = catalogs.find(fpb)
        if schema is None:
            reason = (
                f"the writer schema fingerprint {fp}{_known_as(fp)}, which is neither the current schema nor "
                f"a published or registered older one (known: {', '.join(f.hex() for f in self._writers)}); "
                "a process that writes it publishes it to the backend's schema catalog, or add its .avsc "
                "to the schema directory (PIPETEER_SCHEMA_DIR)"
            )
        else:
            try:
                self.add_writer_schema(schema)
            except SchemaError as exc:
                reason = f"the writer schema {fp}, which this reader cannot read: {exc}"
            else:
                return self._writers[fpb]
        error = self.unreadable(source, fp, reason)
        unknown_writers.seen(self.describe(), fp, source, str(error))
        raise error

    def unreadable(self, source: str, fp: str, reason: str) -> UnreadableRecord:
        """The `UnreadableRecord` of a record at `source` written with schema `fp`."""
        where = source or "a record"
        return UnreadableRecord(
            f"cannot read {where} yet: expected {self.describe()}, found {reason}",
            writer_fingerprint=fp, reason=reason, source=source, expected=self.describe(),
        )

    def decode_body(
        self, data: bytes, *, writer: WriterSchema | None = None, offset: int = 0, source: str = ""
    ) -> T:
        """Decode the schemaless body at `data[offset:]`, written with `writer` (default: current)."""
        writer = writer or self.current
        fo = io.BytesIO(data)
        fo.seek(offset)
        datum: Any
        try:
            if writer is self.current:
                datum = schemaless_reader(fo, self._parsed, None, **self._read_options)
            else:  # Avro schema resolution: the writer's record, read as the current type
                datum = schemaless_reader(fo, writer.parsed, self._parsed, **self._read_options)
        except Exception as exc:
            raise self._body_error(source, writer, exc) from exc
        if fo.tell() != len(data):
            raise self._leftover_error(source, len(data) - fo.tell())
        return self._value(datum, source)

    def _value(self, datum: Any, source: str) -> T:
        if self._from_avro is None:
            plain: T = datum  # fastavro gives primitives as they are
            return plain
        try:
            value: T = self._from_avro(datum)
            return value
        except Exception as exc:
            raise self._value_error(source, exc) from exc

    def _value_error(self, source: str, exc: Exception) -> DecodeError:
        # e.g. an enum symbol that the Python class no longer has
        return self.decode_error(source, f"a record that does not fit {type_name(self.tp)}: {exc!r}")

    def _body_error(self, source: str, writer: WriterSchema, exc: Exception) -> DecodeError:
        return self.decode_error(
            source,
            f"a body that does not decode with writer schema {writer.name} "
            f"(fingerprint {writer.fingerprint.hex()}): {_exc_text(exc)}",
        )

    def _leftover_error(self, source: str, extra: int) -> DecodeError:
        return self.decode_error(
            source, f"{extra} bytes left over after the record (corrupt, or another schema)"
        )

    def decode_error(self, source: str, found: str) -> DecodeError:
        """A `DecodeError` naming the source, the expected schema and what was found."""
        where = source or "a record"
        return DecodeError(
            f"cannot decode {where}: expected {self.describe()}, found {found}",
            source=source, expected=self.describe(), found=found,
        )

    # ------------------------------------------------------------------------------------------ evolution

    def add_writer_schema(self, schema: Schema) -> bytes:
        """Accept records written with an older (or other) `schema`; returns its fingerprint.

        Raises `SchemaError` if records written with `schema` cannot be read as the current
        type under Avro's resolution rules (for example a new field without a default, or a
        decimal of another scale).

        A fingerprint is taken of Avro's Parsing Canonical Form, which leaves logical types out:
        `decimal(9, 3)` has the fingerprint of `decimal(9, 2)`, `timestamp-millis` that of
        `timestamp-micros`. So a schema whose fingerprint is known already is checked all the same
        unless it is the very schema registered: records of the two could not be told apart.
        """
        writer = WriterSchema.of(schema)
        known = self._writers.get(writer.fingerprint)
        if known is not None and known.schema == schema:
            return writer.fingerprint
        from pipeteer.codec.compat import reader_problems  # avro is imported only when evolution is used

        problems = reader_problems(reader=self.schema, writer=schema)
        if problems:
            listed = "; ".join(problems)
            if known is not None:
                raise SchemaError(
                    f"records written with {writer.name} (fingerprint {writer.fingerprint.hex()}) cannot be told "
                    f"apart from records of the schema known with that fingerprint (fingerprints leave logical "
                    f"types out), and cannot be read as {self.describe()}: {listed}"
                )
            raise SchemaError(
                f"records written with {writer.name} (fingerprint {writer.fingerprint.hex()}) cannot be read "
                f"as {self.describe()}: {listed}"
            )
        if known is not None:  # the same records, read the same way (docs, defaults or aliases differ)
            return writer.fingerprint
        with self._lock:  # copy-on-write so decoders running in other threads see a whole dict
            writers = dict(self._writers)
            writers[writer.fingerprint] = writer
            self._writers = writers
        return writer.fingerprint

    @property
    def writer_schemas(self) -> dict[bytes, Schema]:
        """Every schema `decode` accepts, by fingerprint (the current one included)."""
        return {fp: w.schema for fp, w in self._writers.items()}

    def writer(self, fp: bytes) -> WriterSchema | None:
        """The registered writer schema with fingerprint `fp`, if any."""
        return self._writers.get(fp)


@dataclass
class UnknownWriter:
    """Records of one writer schema that a codec could not read: the writer's fingerprint is
    neither the reader's schema nor a registered older one (e.g. a producer whose classes have
    other names, or a newer version of the app upstream)."""

    reader: str
    """The schema expected: `ns.Name (fingerprint …)`."""
    writer_fingerprint: str
    records: int
    """Distinct records met (by where each is: a topic/partition/offset, a table and id), each counted once
    however often it is read again (retries, listings)."""
    first_error: str
    first_seen: float


class UnknownWriters:
    """Every unknown writer schema met in this process, per (reader, writer fingerprint): each is
    logged once as an error naming both schemas, then its records are counted (`/readyz` and
    `/metrics` show them)."""

    REMEMBERED = 100_000
    """Record sources remembered per writer, to count each record once; past that, every read counts."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[UnknownWriter, set[str]]] = {}
        self._lock = threading.Lock()

    def seen(self, reader: str, fingerprint: str, source: str, error: str) -> None:
        """A record at `source` ('' when unknown: not counted) of writer `fingerprint` could not be read as `reader`."""
        with self._lock:
            found = self._seen.get((reader, fingerprint))
            first = found is None
            if found is None:
                found = self._seen[(reader, fingerprint)] = (UnknownWriter(reader, fingerprint, 0, error, time.time()), set())
            entry, sources = found
            if source and source not in sources:
                entry.records += 1
                if len(sources) < self.REMEMBERED:
                    sources.add(source)
        if first:
            log.error(
                "%s (logged once per writer schema; its records are counted in /readyz and "
                "pipeteer_unknown_writer_records_total)",
                error,
            )

    def snapshot(self) -> list[UnknownWriter]:
        with self._lock:
            return [UnknownWriter(**vars(e)) for e, _ in self._seen.values()]

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


unknown_writers = UnknownWriters()


def _known_as(fp: str) -> str:
    """` (ns.Name, the schema of another type in this process)` when some codec here writes that fingerprint."""
    for codec in list(_CACHE.values()):
        if codec.fingerprint.hex() == fp:
            return f" ({codec.name}, the schema of {type_name(codec.tp)} in this process)"
    return ""


def _named_in_union(node: Node) -> bool:
    seen: set[int] = set()

    def visit(n: Node, in_union: bool) -> bool:
        if isinstance(n, NamedNode) and in_union:
            return True
        if id(n) in seen:
            return False
        seen.add(id(n))
        if isinstance(n, RecordNode):
            return any(visit(f.node, False) for f in n.fields)
        if isinstance(n, ArrayNode):
            return visit(n.items, False)
        if isinstance(n, MapNode):
            return visit(n.values, False)
        if isinstance(n, UnionNode):
            return any(visit(b, True) for b in n.branches)
        return False

    return visit(node, False)


def _exc_text(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the body ends before the record does (truncated, or written with another schema)"
    return f"{type(exc).__name__}: {exc}"


def _hint(data: bytes) -> str:
    if len(data) >= 5 and data[0] == 0:
        schema_id = int.from_bytes(data[1:5], "big")
        return f" (it looks like Confluent wire format with schema id {schema_id}: configure the schema registry URL)"
    return ""


def refusal(tp: Any, value: Any) -> str:
    """What a `ValueTypeError` says of a value that is not a `tp` (`conforms` said no): `a str, expected
    int`, and where that alone would not tell (a field inside at fault, a naive datetime), the codec's
    words: `a Shape, expected Shape (Shape.corner.x: expected int, found str 'x')`."""
    said = f"a {type_name(type(value))}, expected {type_name(tp)}"
    try:
        node = codec_for(tp).node
    except SchemaError:  # a type with no schema (Any, Literal): the class names are all there is
        return said
    more = detail(node, value)
    return said if more is None else f"{said} ({more})"


_CACHE: dict[tuple[Any, str | None], Codec[Any]] = {}
_CACHE_LOCK = threading.Lock()


def codec_for(tp: type[T] | Any, *, namespace: str | None = None) -> Codec[T]:
    """The (cached) codec of `tp`. Raises `SchemaError` when `tp` has no Avro schema."""
    key = (tp, namespace)
    codec = _CACHE.get(key)
    if codec is None:
        with _CACHE_LOCK:
            codec = _CACHE.get(key)
            if codec is None:
                codec = _CACHE[key] = Codec(tp, namespace=namespace)
    return codec
