"""Claim check for large values (images): the blob goes to a store, the record carries a reference.

A value whose encoded record is larger than `threshold` bytes is written whole (the same
framed Avro bytes as inline) to a blob store under its SHA-256, and what travels through
the topic is a small `pipeteer.BlobRef` record, itself Avro single-object encoded, so
other teams' consumers can recognize it by its fingerprint and fetch the blob. Decoding
is transparent: stage code sees the value, bytes and all.

    >>> import tempfile
    >>> store = LocalBlobStore(tempfile.mkdtemp())
    >>> codec = ClaimCheckCodec(codec_for(bytes), store, threshold=100)
    >>> ref = codec.encode(b"x" * 1000)
    >>> len(ref) < 200, codec.decode(ref) == b"x" * 1000
    (True, True)

Blobs are content-addressed, so re-sending a value after a crash writes the same blob
again (idempotent). They are never deleted by pipeteer: expire them with the store's own
lifecycle rules, after the longest retention of the topics that reference them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from pipeteer.codec.codec import MAGIC, Codec, codec_for, describe_bytes
from pipeteer.codec.framing import ValueCodec
from pipeteer.codec.schema import Schema
from pipeteer.errors import ConfigError, DecodeError

T = TypeVar("T")

DEFAULT_THRESHOLD = 256 * 1024
"""Records above this size go to the blob store (Kafka's default max.message.bytes is 1 MB)."""


@dataclass
class BlobRef:
    """A reference to a record stored in a blob store, in place of the record itself."""

    uri: str
    sha256: str
    size: int
    schema: str


REF_CODEC: Codec[BlobRef] = codec_for(BlobRef, namespace="pipeteer")
_REF_HEADER = MAGIC + REF_CODEC.fingerprint


class BlobStore(Protocol):
    """Where claim-checked records live. `put` must be idempotent for the same key and data."""

    url: str

    def put(self, key: str, data: bytes) -> str: ...

    def get(self, uri: str) -> bytes: ...


class LocalBlobStore:
    """Blobs as files under a directory (shared by every stage process: a volume on Kubernetes)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def put(self, key: str, data: bytes) -> str:
        path = self.root / key[:2] / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # write-then-rename: a reader never sees half a blob, and a crash leaves only a temp file
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return path.as_uri()

    def get(self, uri: str) -> bytes:
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise ConfigError(f"blob {uri!r} is not in local store {self.url}")
        return Path(unquote(parts.path)).read_bytes()


class S3BlobStore:
    """Blobs in an S3-compatible bucket (`s3://bucket/prefix?endpoint=http://minio:9000`); needs boto3.

    Credentials come from the usual AWS environment variables or instance roles, never from the URL.
    """

    def __init__(
        self, bucket: str, prefix: str = "", *, endpoint: str | None = None, client: Any = None
    ) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" + (f"?endpoint={endpoint}" if endpoint else "")
        if client is None:
            try:
                import boto3
            except ImportError as e:
                raise ConfigError("an s3:// blob store needs boto3: pip install 'pipeteer[s3]'") from e
            client = boto3.client("s3", endpoint_url=endpoint)
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        return f"s3://{self.bucket}/{self._key(key)}"

    def get(self, uri: str) -> bytes:
        parts = urlsplit(uri)
        if parts.scheme != "s3":
            raise ConfigError(f"blob {uri!r} is not an s3:// URI")
        body = self.client.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"]
        return bytes(body.read())


def blob_store_from_url(url: str) -> BlobStore:
    """`file:///var/lib/pipeteer/blobs`, a plain directory path, or `s3://bucket/prefix[?endpoint=URL]`."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return LocalBlobStore(unquote(parts.path) if parts.scheme else url)
    if parts.scheme == "s3":
        endpoint = parse_qs(parts.query).get("endpoint", [None])[0]
        return S3BlobStore(parts.netloc, parts.path, endpoint=endpoint)
    raise ConfigError(f"unknown blob store URL {url!r}: use file:///dir or s3://bucket/prefix")


class ClaimCheckCodec(ValueCodec[T]):
    """Wraps a codec: large records go to `store`, a `BlobRef` record goes on the wire."""

    def __init__(self, inner: ValueCodec[T], store: BlobStore, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.inner, self.store, self.threshold = inner, store, threshold

    @property
    def tp(self) -> Any:
        return self.inner.tp

    @property
    def schema(self) -> Schema:
        return self.inner.schema

    def encode(self, value: T) -> bytes:
        data = self.inner.encode(value)
        if len(data) <= self.threshold:
            return data
        key = hashlib.sha256(data).hexdigest()
        uri = self.store.put(key, data)
        name = str(getattr(self.inner, "name", "")) or str(self.inner.schema)
        return REF_CODEC.encode(BlobRef(uri=uri, sha256=key, size=len(data), schema=name))

    def decode(self, data: bytes, *, source: str = "") -> T:
        if not data.startswith(_REF_HEADER):
            return self.inner.decode(data, source=source)
        ref = REF_CODEC.decode(data, source=source)
        try:
            blob = self.store.get(ref.uri)
        except Exception as e:
            raise DecodeError(f"{source or 'record'}: blob {ref.uri} could not be read ({e})") from e
        if hashlib.sha256(blob).hexdigest() != ref.sha256:
            raise DecodeError(
                f"{source or 'record'}: blob {ref.uri} is corrupt: expected sha256 {ref.sha256}, "
                f"found {describe_bytes(blob)}"
            )
        return self.inner.decode(blob, source=f"{source} (blob {ref.uri})" if source else ref.uri)
