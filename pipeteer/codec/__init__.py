"""Avro codec layer: schemas from Python types, one encoding for every backend, schema files.

>>> from dataclasses import dataclass
>>> from pipeteer.codec import codec_for, schema_for
>>> @dataclass
... class Input:
...     img: bytes
>>> schema_for(Input, namespace="demo")["name"]
'Input'
>>> codec = codec_for(Input)
>>> codec.decode(codec.encode(Input(b"png")))
Input(img=b'png')

Modules: `model` (types → node tree, all type errors), `schema` (node tree → schema
JSON, fingerprints), `convert` (fast value converters), `codec` (single-object
framing), `registry` (Confluent wire format), `files` (`.avsc` export/load, writer
schema store), `catalog` (where writer schemas are published and found), `compat` (compatibility checks), `commands` (CLI entry points).
"""

from pipeteer.codec.catalog import (
    Catalogs,
    MemoryCatalog,
    Published,
    SchemaCatalog,
    catalogs,
    check_release,
)
from pipeteer.codec.codec import MAGIC, Codec, UnknownWriter, WriterSchema, codec_for, unknown_writers
from pipeteer.codec.compat import Incompatibility, Mode, compare
from pipeteer.codec.files import (
    SchemaStore,
    check_schemas,
    export_schemas,
    load_schema,
    missing_schema_files,
    schema_file_name,
    unused_schema_files,
)
from pipeteer.codec.framing import ValueCodec, kafka_source, make_codec, table_source
from pipeteer.codec.schema import Schema, canonical_form, dumps, fingerprint, full_name, schema_for
from pipeteer.types import AvroDecimal  # a Decimal's precision and scale are part of what its values are

__all__ = [
    "MAGIC",
    "AvroDecimal",
    "Catalogs",
    "Codec",
    "Incompatibility",
    "MemoryCatalog",
    "Mode",
    "Published",
    "Schema",
    "SchemaCatalog",
    "SchemaStore",
    "UnknownWriter",
    "ValueCodec",
    "WriterSchema",
    "canonical_form",
    "catalogs",
    "check_release",
    "check_schemas",
    "codec_for",
    "compare",
    "dumps",
    "export_schemas",
    "fingerprint",
    "full_name",
    "kafka_source",
    "load_schema",
    "make_codec",
    "missing_schema_files",
    "schema_file_name",
    "schema_for",
    "table_source",
    "unknown_writers",
    "unused_schema_files",
]
