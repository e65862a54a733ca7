"""Claim check for large values (images): a large `bytes` field goes to a blob store, the record carries a reference.

Every backend (memory, SQLite, Kafka) uses this one mechanism. `ClaimCheck.dehydrate` replaces
each `bytes` value above `threshold` — a field of a dataclass, at any depth, in lists and dicts
too — by a short *reference*, itself a `bytes` value, so the record keeps its schema and its
size stays small; `hydrate` puts the bytes back, reading and verifying each blob. Stage code
only ever sees hydrated values; queues, pending tables and transactions carry references.

    >>> import tempfile
    >>> from dataclasses import dataclass
    >>> from pipeteer.codec.blobstore import LocalBlobStore
    >>> @dataclass
    ... class Photo:
    ...     name: str
    ...     img: bytes
    >>> cc = ClaimCheck(LocalBlobStore(tempfile.mkdtemp()), threshold=100)
    >>> light = cc.dehydrate(Photo("a", b"x" * 1000))
    >>> len(light.img) < 100, cc.hydrate(light) == Photo("a", b"x" * 1000)
    (True, True)

A reference is `REF_MAGIC` + `blake3:<hex key>:<size>`. A `bytes` value that merely starts with
`REF_MAGIC` goes to the store whatever its size, so a stored value is never mistaken for a
reference. Blobs are content-addressed, so identical content is stored once and a re-sent value
(after a crash) writes nothing. Blobs no item references any more are removed by
`pipeteer blobs gc` (`pipeteer.runtime.blobs`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import re
import threading
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from pipeteer.codec.blobstore import (
    HASH_NAME,
    TMP_PREFIX,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    blob_store_from_url,
    content_key,
    copy_durably,
    drop_cached,
    file_key,
    publishing,
    room_for,
)
from pipeteer.codec.framing import ValueCodec
from pipeteer.codec.schema import Schema
from pipeteer.errors import BlobError, ChangedWhileStored, ConfigError, format_size

__all__ = [
    "DEFAULT_THRESHOLD",
    "REF_MAGIC",
    "BlobError",
    "BlobStore",
    "ChangedWhileStored",
    "ClaimCheck",
    "ClaimCheckCodec",
    "FileRef",
    "LocalBlobStore",
    "S3BlobStore",
    "blob_store_from_url",
    "claim_check_from",
    "content_key",
    "file_key",
    "has_refs",
    "keys_in",
    "parse_ref",
]

T = TypeVar("T")

DEFAULT_THRESHOLD = 32 * 1024
"""`bytes` values above this size go to the blob store: records stay far below Kafka's 1 MB limit
and SQLite rows stay small, so the database and its WAL do not grow with the images."""

EXPORT_FIX = "free space there, or write the files to a larger file system"
"""What `export`'s `StorageFull` says to do (`pipeteer pull` adds how far it got: a re-run goes on from there)."""

REF_MAGIC = b"\x00\xffpipeteer-blob\x00"
_PREFIX = REF_MAGIC + HASH_NAME.encode() + b":"


def make_ref(key: str, size: int) -> bytes:
    return _PREFIX + f"{key}:{size}".encode()


def parse_ref(data: bytes) -> tuple[str, int] | None:
    """`(key, size)` when `data` is a reference, else None.

    >>> parse_ref(make_ref("ab12", 5))
    ('ab12', 5)
    >>> parse_ref(b"png") is None
    True
    """
    if not data.startswith(_PREFIX) or len(data) > 256:
        return None
    try:
        key, size = data[len(_PREFIX) :].decode("ascii").split(":")
        return key, int(size)
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def may_hold_bytes(tp: Any) -> bool:
    """Whether values of `tp` can contain a `bytes` value (else claim checking skips them at no cost)."""
    if tp is bytes or tp is Any:
        return True
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        try:
            hints = typing.get_type_hints(tp)
        except Exception:
            return True
        return any(may_hold_bytes(h) for h in hints.values())
    args = typing.get_args(tp)
    return any(may_hold_bytes(a) for a in args if a is not Ellipsis)


class FileRef(bytes):
    """A reference to a file's content that is not stored yet (`ClaimCheck.file_ref`): `dehydrate`
    stores the file and puts the plain reference in its place."""

    path: Path
    link: bool

    def __new__(cls, ref: bytes, path: Path, link: bool) -> FileRef:
        self = super().__new__(cls, ref)
        self.path, self.link = path, link
        return self

    def __reduce__(self) -> Any:
        return (FileRef, (bytes(self), self.path, self.link))


def _walk(value: Any, f: Callable[[bytes, str], bytes], path: str) -> Any:
    """`value` with every `bytes` inside it replaced by `f(bytes, path)` (copies only what changed)."""
    if type(value) is bytes or type(value) is FileRef:
        return f(value, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed: dict[str, Any] = {}
        for fld in dataclasses.fields(value):
            old = getattr(value, fld.name)
            new = _walk(old, f, f"{path}.{fld.name}" if path else fld.name)
            if new is not old:
                changed[fld.name] = new
        if not changed:
            return value
        out = copy.copy(value)  # not dataclasses.replace: no __post_init__, init=False fields kept
        for k, v in changed.items():
            object.__setattr__(out, k, v)
        return out
    if isinstance(value, list | tuple):
        items = [_walk(v, f, f"{path}[{i}]") for i, v in enumerate(value)]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else type(value)(items)
    if isinstance(value, dict):
        new_dict = {k: _walk(v, f, f"{path}[{k!r}]") for k, v in value.items()}
        if all(new_dict[k] is v for k, v in value.items()):
            return value
        return new_dict
    return value


def _any_bytes(value: Any, pred: Callable[[bytes], bool]) -> bool:
    """Whether some `bytes` inside `value` satisfies `pred` (stops at the first)."""
    if type(value) is bytes or type(value) is FileRef:
        return pred(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_any_bytes(getattr(value, f.name), pred) for f in dataclasses.fields(value))
    if isinstance(value, list | tuple):
        return any(_any_bytes(v, pred) for v in value)
    if isinstance(value, dict):
        return any(_any_bytes(v, pred) for v in value.values())
    return False


def has_refs(value: Any) -> bool:
    """Whether hydrating `value` would read a blob (so that a value without any skips the worker thread)."""
    return _any_bytes(value, lambda b: b.startswith(_PREFIX))


class ClaimCheck:
    """Moves large `bytes` out of values into `store`, and back. Thread-safe; do the I/O off the event loop.

    `dehydrate` hashes and writes (once per content), `hydrate` reads and verifies. A small
    cache remembers the keys of values whose key is known already: read from the store (a stage
    passing an image on unchanged does not hash it again, nor write it), or hashed by the caller
    (`pipeteer push` hashes a file for its id: the blob is written without hashing it twice).
    """

    def __init__(self, store: BlobStore, threshold: int = DEFAULT_THRESHOLD, *, verify: bool = True) -> None:
        self.store = store
        self.threshold = threshold
        self.verify = verify
        self._recent: OrderedDict[int, tuple[bytes, str, bool]] = OrderedDict()
        self._recent_bytes = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClaimCheck({self.store!r}, threshold={self.threshold})"

    RECENT_BYTES = 16 << 20

    def remember(self, data: bytes, key: str, *, stored: bool) -> None:
        """`key` is the content key of `data`, and the store holds that blob if `stored`: dehydrating
        `data` (the same object) will not hash it again, nor write it if stored."""
        with self._lock:
            if id(data) in self._recent:
                return
            self._recent[id(data)] = (data, key, stored)
            self._recent_bytes += len(data)
            while self._recent_bytes > self.RECENT_BYTES and len(self._recent) > 1:
                _, (old, _, _) = self._recent.popitem(last=False)
                self._recent_bytes -= len(old)

    def _known(self, data: bytes) -> tuple[str, bool] | None:
        with self._lock:
            hit = self._recent.get(id(data))
        # the cache holds the object itself, so an equal id means the same (immutable) bytes
        return (hit[1], hit[2]) if hit is not None and hit[0] is data else None

    def file_ref(self, path: str | os.PathLike[str], key: str | None = None, *, link: bool = False) -> FileRef:
        """A reference to a file's content, a `bytes` value to put in a state in place of the
        content (`pipeteer push` does this): the file is stored when the value is pushed (in the
        push's worker thread), and never passes through Python's memory on a local store.

        `key`: the file's content key, if computed already. A local store copies the file in the
        kernel, or hard-links it with `link` (see `LocalBlobStore.put_file`); another store is
        given the bytes. The push raises `ChangedWhileStored` when the file's content is no longer
        `key`'s by then."""
        if key is None:
            key = file_key(path)
        return FileRef(make_ref(key, os.path.getsize(path)), Path(path), link)

    def _store_file(self, ref: FileRef) -> bytes:
        """Store the file behind `ref`; the plain reference."""
        key, _ = self._parse(ref)
        if isinstance(self.store, LocalBlobStore):
            self.store.put_file(key, ref.path, link=ref.link)
        else:
            data = ref.path.read_bytes()
            if content_key(data) != key:
                raise ChangedWhileStored(ref.path, key)
            self.store.put(key, data)
        return bytes(ref)

    def head(self, ref: bytes, n: int = 32, *, id: str = "", field: str = "") -> bytes:
        """The first `n` bytes of a reference's blob in a local store (what kind of file it is)."""
        key, _ = self._parse(ref)
        try:
            with open(self._local().path(key), "rb") as f:
                return f.read(n)
        except FileNotFoundError:
            raise self._missing(key, id=id, path=field) from None

    def export(self, ref: bytes, target: Path, *, id: str = "", field: str = "", link: bool = False) -> None:
        """Write a reference's blob, from a local store, as the file `target`: copied in the kernel
        or with `link` hard-linked, verified, then renamed into place (`target` is whole or absent,
        and durable once the caller fsyncs its directory). `pipeteer pull` does this: no pass of
        the bytes through Python. Raises `BlobError` as `hydrate` does, and `StorageFull` (naming
        `target` and the space left, with nothing under that name) when its file system is full."""
        key, size = self._parse(ref)
        blob = self._local().path(key)

        def verified(copy: Path) -> None:
            found = os.path.getsize(copy)
            if found != size or (self.verify and file_key(copy) != key):
                raise self._corrupt(key, found, size, id=id, path=field)

        doing = f"writing {self._where(id, field, '')} of {format_size(size)}"
        with room_for(target, doing=doing, fix=EXPORT_FIX):
            try:
                if link:
                    tmp = target.with_name(f"{TMP_PREFIX}{target.name}")
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
                    os.link(blob, tmp)
                    with publishing(tmp, target):
                        verified(tmp)  # (the blob is durable already: a link needs no fsync of its data)
                else:
                    copy_durably(blob, target, check=verified)
                    drop_cached(target)
                drop_cached(blob)  # (an output is the end of the line: neither is read again here)
            except FileNotFoundError as e:
                if not blob.exists():
                    raise self._missing(key, id=id, path=field) from None
                raise e

    def _local(self) -> LocalBlobStore:
        if not isinstance(self.store, LocalBlobStore):
            raise TypeError(f"{self.store!r} is not a local directory: hydrate the value instead")
        return self.store

    @staticmethod
    def _parse(ref: bytes) -> tuple[str, int]:
        parsed = parse_ref(ref)
        if parsed is None:
            raise ValueError("not a blob reference")
        return parsed

    def _where(self, id: str, path: str, source: str) -> str:
        return f"item {id!r} field {path or '(value)'!r}" + (f" ({source})" if source else "")

    def _missing(self, key: str, *, id: str, path: str, source: str = "") -> BlobError:
        return BlobError(
            f"{self._where(id, path, source)}: blob {key} is missing from {self.store.url}",
            id=id, field=path, key=key, source=source,
        )

    def _corrupt(self, key: str, found: int, size: int, *, id: str, path: str, source: str = "") -> BlobError:
        return BlobError(
            f"{self._where(id, path, source)}: blob {key} in {self.store.url} is corrupt "
            f"({found} bytes, expected {size} with {HASH_NAME} {key})",
            id=id, field=path, key=key, source=source,
        )

    def applies_to(self, tp: Any) -> bool:
        return may_hold_bytes(tp)

    def is_heavy(self, value: Any) -> bool:
        """Whether dehydrating `value` would store a blob (so that a small value skips the worker thread)."""
        return _any_bytes(value, lambda b: len(b) > self.threshold or b.startswith(REF_MAGIC))

    def dehydrate(self, value: T) -> T:
        """`value` with its large `bytes` stored and replaced by references (blocking I/O)."""

        def out(data: bytes, path: str) -> bytes:
            if len(data) <= self.threshold and not data.startswith(REF_MAGIC):
                return data
            if type(data) is FileRef:  # a file `file_ref` named: stored now
                return self._store_file(data)
            known = self._known(data)
            key = content_key(data) if known is None else known[0]
            if known is None or not known[1]:
                self.store.put(key, data)
            return make_ref(key, len(data))

        result: T = _walk(value, out, "")
        return result

    def hydrate(self, value: T, *, id: str = "", source: str = "") -> T:
        """`value` with every reference replaced by its blob's bytes, verified (blocking I/O).

        Raises `BlobError` naming the item, the field and the key when a blob is missing or corrupt.
        """

        def back(data: bytes, path: str) -> bytes:
            ref = parse_ref(data)
            if ref is None:
                return data
            key, size = ref
            try:
                blob = self.store.get(key)
            except KeyError:
                raise self._missing(key, id=id, path=path, source=source) from None
            except Exception as e:
                raise BlobError(
                    f"{self._where(id, path, source)}: blob {key} could not be read from {self.store.url} ({e})",
                    id=id, field=path, key=key, source=source,
                ) from e
            if len(blob) != size or (self.verify and content_key(blob) != key):
                raise self._corrupt(key, len(blob), size, id=id, path=path, source=source)
            self.remember(blob, key, stored=True)
            return blob

        result: T = _walk(value, back, "")
        return result


_REF = re.compile(re.escape(REF_MAGIC + HASH_NAME.encode() + b":") + rb"([0-9a-f]{16,128}):[0-9]+")


def keys_in(data: bytes | None) -> set[str]:
    """The blob keys referenced anywhere in a record (scanned as bytes: any schema, any framing).

    >>> keys_in(b"..." + make_ref("ab" * 32, 10) + b"...") == {"ab" * 32}
    True
    """
    if not data or REF_MAGIC not in data:
        return set()
    return {m.group(1).decode() for m in _REF.finditer(data)}


def refs(value: Any) -> Iterator[tuple[str, int]]:
    """The `(key, size)` of every reference inside `value`."""
    found: list[tuple[str, int]] = []

    def see(data: bytes, path: str) -> bytes:
        ref = parse_ref(data)
        if ref is not None:
            found.append(ref)
        return data

    _walk(value, see, "")
    return iter(found)


class ClaimCheckCodec(ValueCodec[T]):
    """A codec whose records carry references: `encode` dehydrates, `decode` hydrates (blocking I/O).

    Backends use `ClaimCheck` directly, to keep references in their pending items and hydrate
    only when a stage reads one; this class is for scripts reading or writing records themselves.
    """

    def __init__(self, inner: ValueCodec[T], claim: ClaimCheck) -> None:
        self.inner, self.claim = inner, claim

    @property
    def tp(self) -> Any:
        return self.inner.tp

    @property
    def schema(self) -> Schema:
        return self.inner.schema

    def encode(self, value: T) -> bytes:
        return self.inner.encode(self.claim.dehydrate(value))

    def decode(self, data: bytes, *, source: str = "") -> T:
        return self.claim.hydrate(self.inner.decode(data, source=source), source=source)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


def claim_check_from(
    blobs: str | None, threshold: int | str | None = None, *, default: str | None = None, where: str = ""
) -> ClaimCheck | None:
    """The claim check a backend is configured with: `blobs` a store URL (or directory), `off` for
    none, None for `default` (SQLite: a directory beside the database; Kafka and memory: none).

    >>> claim_check_from("off", default="/tmp/x") is None
    True
    >>> claim_check_from(None, "1024", default="/tmp/x").threshold
    1024
    """
    url = default if blobs is None or blobs == "" else blobs
    if url is None or url.lower() in ("off", "none", "false", "0"):
        return None
    if threshold is None or threshold == "":
        size = DEFAULT_THRESHOLD
    else:
        try:
            size = int(threshold)
        except ValueError:
            size = -1
        if size < 0:
            raise ConfigError(
                f"{where or 'backend'}: claim_check_bytes={threshold!r} is not a size in bytes (e.g. 32768)"
            )
    return ClaimCheck(blob_store_from_url(url), size)
