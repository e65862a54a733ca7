"""Schema files: export one `.avsc` per state type, load them back, check types against them.

>>> from dataclasses import dataclass
>>> @dataclass
... class Input:
...     img: bytes
>>> schema_file_name(schema_for(Input, namespace="demo"))
'demo.Input.avsc'

Files are pretty-printed JSON with sorted keys, named by the record's full name, so
exporting the same types twice gives byte-identical files (and a clean `git diff`).
Older versions of a schema may be kept anywhere under the directory (for example
`schemas/history/`): `SchemaStore` loads them all so records written with them still
decode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeteer.codec.codec import Codec, codec_for
from pipeteer.codec.compat import Change, Incompatibility, Mode, judge
from pipeteer.codec.schema import Schema, dumps, fingerprint, full_name, schema_for
from pipeteer.errors import SchemaError

SUFFIX = ".avsc"


def schema_file_name(schema: Schema) -> str:
    """`<full name>.avsc` for records and enums; a name spelled from the type otherwise."""
    return f"{_stem(schema)}{SUFFIX}"


def _stem(schema: Any) -> str:
    name = full_name(schema)
    if name:
        return name
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union-" + "-".join(_stem(s) for s in schema)
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "array":
            return "array-" + _stem(schema["items"])
        if kind == "map":
            return "map-" + _stem(schema["values"])
        if isinstance(kind, str):
            logical = schema.get("logicalType")
            return f"{kind}-{logical}" if logical else kind
    raise SchemaError(f"cannot name a schema file for {schema!r}")


def export_schemas(
    types: Sequence[Any], outdir: str | os.PathLike[str], *, namespace: str | None = None
) -> list[Path]:
    """Write one `.avsc` per type into `outdir` (created if needed); returns the paths, in order.

    Deterministic: the same types give byte-identical files. Files already there that
    no type produces are left alone.
    """
    out = Path(outdir)
    written: dict[Path, str] = {}
    for tp in types:
        schema = schema_for(tp, namespace=namespace)
        path = out / schema_file_name(schema)
        text = dumps(schema)
        if written.get(path, text) != text:
            raise SchemaError(f"two state types map to the schema file {path.name}; rename one of them")
        written[path] = text
    out.mkdir(parents=True, exist_ok=True)
    for path, text in written.items():
        # Only rewrite changed files so that mtimes (and build tools watching them) stay quiet.
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return list(written)


def load_schema(path: str | os.PathLike[str]) -> Schema:
    """The schema JSON in an `.avsc` file; `SchemaError` naming the file if it is not one."""
    p = Path(path)
    try:
        schema = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read the schema file {p}: {exc}") from exc
    if not isinstance(schema, dict | list | str):
        raise SchemaError(f"the schema file {p} does not hold an Avro schema")
    return schema


def check_schemas(
    types: Sequence[Any],
    against_dir: str | os.PathLike[str],
    mode: Mode | str = Mode.BACKWARD,
    *,
    namespace: str | None = None,
) -> list[Incompatibility]:
    """Every incompatible change between the schema files in `against_dir` and the current types.

    A type with no file there (a new state) has nothing to be incompatible with and is
    skipped; `missing_schema_files` lists those. A record renamed with `__avro_aliases__`
    is compared with the file of its old name.
    """
    mode = Mode(mode)
    return [
        i
        for _, change in schema_changes(types, against_dir, namespace=namespace)
        for i in change.problems(mode)
    ]


def schema_changes(
    types: Sequence[Any], against_dir: str | os.PathLike[str], *, namespace: str | None = None
) -> list[tuple[Any, Change]]:
    """Each type whose schema differs from its file in `against_dir`, with the change judged both ways.

    Types with no file (new states) and types whose schema equals their file are left out. The
    `Change` says which modes the change satisfies and in which order to roll (`Change.roll`).
    """
    changes: list[tuple[Any, Change]] = []
    for tp in types:
        new = schema_for(tp, namespace=namespace)
        path = _existing_file(new, Path(against_dir))
        if path is None:
            continue
        old = load_schema(path)
        if old != new:
            changes.append((tp, judge(old, new, label=full_name(new) or _stem(new))))
    return changes


def missing_schema_files(
    types: Sequence[Any], against_dir: str | os.PathLike[str], *, namespace: str | None = None
) -> list[str]:
    """Names of the schema files that `against_dir` lacks for `types` (new states)."""
    missing = []
    for tp in types:
        schema = schema_for(tp, namespace=namespace)
        if _existing_file(schema, Path(against_dir)) is None:
            missing.append(schema_file_name(schema))
    return missing


def unused_schema_files(
    types: Sequence[Any], against_dir: str | os.PathLike[str], *, namespace: str | None = None
) -> list[str]:
    """Names of the `.avsc` files in `against_dir` that no state type (nor its aliases) claims."""
    directory = Path(against_dir)
    claimed: set[str] = set()
    for tp in types:
        schema = schema_for(tp, namespace=namespace)
        claimed.add(schema_file_name(schema))
        if isinstance(schema, dict):
            claimed.update(f"{alias}{SUFFIX}" for alias in schema.get("aliases", ()))
    present = sorted(p.name for p in directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []
    return [name for name in present if name not in claimed]


def _existing_file(schema: Schema, directory: Path) -> Path | None:
    names = [schema_file_name(schema)]
    if isinstance(schema, dict):
        names += [f"{alias}{SUFFIX}" for alias in schema.get("aliases", ())]
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


class SchemaStore:
    """Known writer schemas (current and older), loaded from `.avsc` files, by full name.

    >>> store = SchemaStore.from_dir("schemas")          # doctest: +SKIP
    >>> codec = store.codec(Input)                        # doctest: +SKIP
    >>> codec.decode(bytes_written_by_an_older_release)   # doctest: +SKIP
    """

    def __init__(self, schemas: Iterable[Schema] = ()) -> None:
        self._by_name: dict[str, dict[bytes, Schema]] = {}
        for schema in schemas:
            self.add(schema)

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str]) -> SchemaStore:
        """Every `.avsc` under `directory` (recursively; an absent directory gives an empty store)."""
        root = Path(directory)
        paths = sorted(root.rglob(f"*{SUFFIX}")) if root.is_dir() else []
        return cls(load_schema(p) for p in paths)

    def add(self, schema: Schema) -> bytes:
        """Remember `schema`; returns its fingerprint."""
        fp = fingerprint(schema)
        self._by_name.setdefault(full_name(schema) or _stem(schema), {})[fp] = schema
        return fp

    def schemas_for(self, codec: Codec[Any]) -> list[Schema]:
        """The stored schemas with the codec's full name or one of its aliases."""
        names = [codec.name]
        if isinstance(codec.schema, dict):
            names += list(codec.schema.get("aliases", ()))
        return [s for name in names for s in self._by_name.get(name, {}).values()]

    def attach(self, codec: Codec[Any], *, strict: bool = True) -> list[str]:
        """Register this store's schemas for `codec`'s type as writer schemas of `codec`.

        With `strict`, a stored schema the current type cannot read raises `SchemaError`
        (so a stale schema directory is found at startup, not on the first old record);
        otherwise such schemas are skipped and their problems returned.
        """
        problems: list[str] = []
        for schema in self.schemas_for(codec):
            try:
                codec.add_writer_schema(schema)
            except SchemaError as exc:
                if strict:
                    raise
                problems.append(str(exc))
        return problems

    def codec(self, tp: Any, *, namespace: str | None = None, strict: bool = True) -> Codec[Any]:
        """`codec_for(tp)` with this store's older schemas of `tp` attached."""
        codec: Codec[Any] = codec_for(tp, namespace=namespace)
        self.attach(codec, strict=strict)
        return codec
