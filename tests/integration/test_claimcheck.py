"""Claim check: large records go to a blob store (a real directory; S3 API via moto's server)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeteer import DecodeError
from pipeteer.codec import codec_for
from pipeteer.codec.claimcheck import (
    REF_CODEC,
    ClaimCheckCodec,
    LocalBlobStore,
    S3BlobStore,
    blob_store_from_url,
)


@dataclass
class Photo:
    name: str
    img: bytes


BIG = Photo("big", os.urandom(200_000))
SMALL = Photo("small", b"tiny")


def test_small_inline_big_by_reference(tmp_path: Path) -> None:
    codec = ClaimCheckCodec(codec_for(Photo), LocalBlobStore(tmp_path), threshold=64 * 1024)
    small = codec.encode(SMALL)
    assert small == codec_for(Photo).encode(SMALL)  # unchanged below the threshold
    ref = codec.encode(BIG)
    assert len(ref) < 300
    assert REF_CODEC.decode(ref).size > 200_000
    assert codec.decode(ref) == BIG and codec.decode(small) == SMALL
    assert codec.encode(BIG) == ref  # content-addressed: a re-send after a crash writes the same blob
    assert len(list(tmp_path.rglob("*"))) == 2  # one directory, one blob


def test_missing_or_corrupt_blob_is_a_decode_error_naming_the_source(tmp_path: Path) -> None:
    codec = ClaimCheckCodec(codec_for(Photo), LocalBlobStore(tmp_path), threshold=1024)
    ref = codec.encode(BIG)
    (blob,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    with pytest.raises(DecodeError, match=r"topic 't' partition 0 offset 5: blob file://.* is corrupt"):
        codec.decode(ref, source="topic 't' partition 0 offset 5")
    blob.unlink()
    with pytest.raises(DecodeError, match="could not be read"):
        codec.decode(ref, source="x")


def test_blob_store_urls(tmp_path: Path) -> None:
    assert isinstance(blob_store_from_url(tmp_path.as_uri()), LocalBlobStore)
    assert isinstance(blob_store_from_url(str(tmp_path)), LocalBlobStore)
    with pytest.raises(Exception, match="unknown blob store URL"):
        blob_store_from_url("ftp://x")


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """A FAKE S3: moto's server speaking the S3 HTTP API on loopback (no real S3 can run here)."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_s3_compatible_store(s3_endpoint: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="blobs")
    store = blob_store_from_url(f"s3://blobs/pipeteer?endpoint={s3_endpoint}")
    assert isinstance(store, S3BlobStore)
    codec = ClaimCheckCodec(codec_for(Photo), store, threshold=1024)
    ref = codec.encode(BIG)
    assert REF_CODEC.decode(ref).uri.startswith("s3://blobs/pipeteer/")
    assert codec.decode(ref) == BIG
