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

import copy
import dataclasses
import re
import threading
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any, TypeVar

from pipeteer.codec.blobstore import (
    HASH_NAME,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    blob_store_from_url,
    content_key,
)
from pipeteer.codec.framing import ValueCodec
from pipeteer.codec.schema import Schema
from pipeteer.errors import BlobError, ConfigError

__all__ = [
    "DEFAULT_THRESHOLD",
    "REF_MAGIC",
    "BlobError",
    "BlobStore",
    "ClaimCheck",
    "ClaimCheckCodec",
    "LocalBlobStore",
    "S3BlobStore",
    "blob_store_from_url",
    "claim_check_from",
    "content_key",
    "has_refs",
    "keys_in",
    "parse_ref",
]

T = TypeVar("T")

DEFAULT_THRESHOLD = 32 * 1024
"""`bytes` values above this size go to the blob store: records stay far below Kafka's 1 MB limit
and SQLite rows stay small, so the database and its WAL do not grow with the images."""

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


def _walk(value: Any, f: Callable[[bytes, str], bytes], path: str) -> Any:
    """`value` with every `bytes` inside it replaced by `f(bytes, path)` (copies only what changed)."""
    if type(value) is bytes:
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
    if type(value) is bytes:
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
            where = f"item {id!r} field {path or '(value)'!r}" + (f" ({source})" if source else "")
            try:
                blob = self.store.get(key)
            except KeyError:
                raise BlobError(
                    f"{where}: blob {key} is missing from {self.store.url}", id=id, field=path, key=key, source=source
                ) from None
            except Exception as e:
                raise BlobError(
                    f"{where}: blob {key} could not be read from {self.store.url} ({e})",
                    id=id, field=path, key=key, source=source,
                ) from e
            if len(blob) != size or (self.verify and content_key(blob) != key):
                raise BlobError(
                    f"{where}: blob {key} in {self.store.url} is corrupt "
                    f"({len(blob)} bytes, expected {size} with {HASH_NAME} {key})",
                    id=id, field=path, key=key, source=source,
                )
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
