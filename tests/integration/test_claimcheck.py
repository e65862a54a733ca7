"""Claim check: large `bytes` fields go to a blob store (a real directory; S3 API via moto's server, a fake)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeteer import DecodeError, Pipeline, Workflow, connect
from pipeteer.codec import codec_for
from pipeteer.codec.blobstore import drop_cached, fsync_path
from pipeteer.codec.claimcheck import (
    REF_MAGIC,
    BlobError,
    ChangedWhileStored,
    ClaimCheck,
    ClaimCheckCodec,
    LocalBlobStore,
    S3BlobStore,
    blob_store_from_url,
    content_key,
    parse_ref,
    refs,
)
from pipeteer.queues.backends import backend_from_url


@dataclass
class Photo:
    name: str
    img: bytes


@dataclass
class Album:
    title: str
    photos: list[Photo] = field(default_factory=list)
    thumbs: dict[str, bytes] = field(default_factory=dict)
    cover: bytes | None = None


BIG = Photo("big", os.urandom(200_000))
SMALL = Photo("small", b"tiny")


def blob_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_large_fields_go_by_reference_small_ones_stay(tmp_path: Path) -> None:
    cc = ClaimCheck(LocalBlobStore(tmp_path), threshold=64 * 1024)
    assert cc.dehydrate(SMALL) is SMALL  # nothing to store: the very same value
    light = cc.dehydrate(BIG)
    assert light.name == "big" and len(light.img) < 120 and parse_ref(light.img) is not None
    assert cc.hydrate(light) == BIG
    assert cc.dehydrate(BIG) == light  # content-addressed: a re-send after a crash writes nothing new
    assert len(blob_files(tmp_path)) == 1
    codec = ClaimCheckCodec(codec_for(Photo), cc)
    record = codec.encode(BIG)
    assert len(record) < 200 and codec.decode(record) == BIG


def test_nested_fields_lists_dicts_and_optionals(tmp_path: Path) -> None:
    cc = ClaimCheck(LocalBlobStore(tmp_path), threshold=1000)
    shared = os.urandom(5000)
    album = Album("trip", [BIG, SMALL, Photo("dup", shared)], {"a": shared, "b": b"x"}, cover=shared)
    light = cc.dehydrate(album)
    assert sorted(size for _, size in refs(light)) == [5000, 5000, 5000, 200_000]
    assert len(blob_files(tmp_path)) == 2  # identical content is stored once
    assert len(codec_for(Album).encode(light)) < 1000
    assert cc.hydrate(light) == album and album.photos[1] is SMALL


def test_a_value_that_looks_like_a_reference_is_stored_not_mistaken(tmp_path: Path) -> None:
    cc = ClaimCheck(LocalBlobStore(tmp_path), threshold=1000)
    tricky = Photo("tricky", REF_MAGIC + b"blake3:00:1")
    light = cc.dehydrate(tricky)
    assert light.img != tricky.img and cc.hydrate(light) == tricky


def test_missing_or_corrupt_blob_names_item_field_and_key(tmp_path: Path) -> None:
    cc = ClaimCheck(LocalBlobStore(tmp_path), threshold=1024)
    light = cc.dehydrate(Album("a", [SMALL, BIG]))
    ((key, _),) = refs(light)
    (blob,) = blob_files(tmp_path)
    data = blob.read_bytes()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # always a different last byte
    with pytest.raises(BlobError, match=rf"item 'it-7' field 'photos\[1\].img'.*blob {key} .* is corrupt") as e:
        cc.hydrate(light, id="it-7")
    assert (e.value.id, e.value.field, e.value.key) == ("it-7", "photos[1].img", key)
    assert isinstance(e.value, DecodeError)
    blob.unlink()
    with pytest.raises(BlobError, match=rf"item 'it-7' field 'photos\[1\].img'.*blob {key} is missing"):
        cc.hydrate(light, id="it-7")


def test_blob_writes_leave_no_temp_files_and_list_sees_blobs(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    cc = ClaimCheck(store, threshold=10)
    cc.dehydrate(Photo("a", b"a" * 100))
    cc.dehydrate(Photo("b", b"b" * 100))
    listed = sorted(store.list(), key=lambda b: b.key)
    assert [b.size for b in listed] == [100, 100]
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    store.delete(listed[0].key)
    assert len(list(store.list())) == 1


def test_blob_store_urls(tmp_path: Path) -> None:
    assert isinstance(blob_store_from_url(tmp_path.as_uri()), LocalBlobStore)
    assert isinstance(blob_store_from_url(str(tmp_path)), LocalBlobStore)
    with pytest.raises(Exception, match="unknown blob store URL"):
        blob_store_from_url("ftp://x")
    with pytest.raises(Exception, match="claim_check_bytes='big' is not a size"):
        backend_from_url("sqlite:///q.db?claim_check_bytes=big", workflow_name="wf", env={})
    with pytest.raises(Exception, match=r"unknown option\(s\) \['blob'\]"):
        backend_from_url("sqlite:///q.db?blob=x", workflow_name="wf", env={})


@dataclass
class Done:
    name: str
    img: bytes


WF = Workflow(Photo, Done, pipelines={"same": Pipeline(Photo, Done)}, name="photos")


async def test_sqlite_rows_carry_references_blobs_beside_the_database(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    queues = connect(WF, f"sqlite:///{db}", env={})
    await queues.Qin.push("p1", BIG)
    await queues.Qin.push("p2", SMALL)
    assert await queues.Qin.read("p1") == BIG
    assert len(blob_files(tmp_path / "q.blobs")) == 1
    rows = sqlite3.connect(db).execute('SELECT id, length(value) FROM "input"').fetchall()
    assert dict(rows)["p1"] < 200
    stage = queues["same"]
    id, photo = await stage.Qin.read()
    assert (id, photo) == ("p1", BIG)
    await stage.Qout.push(id, Done(photo.name, photo.img))
    assert await queues.Qout.read("p1") == Done(BIG.name, BIG.img)
    assert len(blob_files(tmp_path / "q.blobs")) == 1  # the unchanged image is not stored twice
    queues.backend.close()


async def test_sqlite_missing_blob_fails_the_item_then_dead_letters_it(tmp_path: Path) -> None:
    queues = connect(WF, f"sqlite:///{tmp_path / 'q.db'}", env={})
    await queues.Qin.push("p1", BIG)
    for blob in blob_files(tmp_path / "q.blobs"):
        blob.unlink()
    q = queues.Qin
    with pytest.raises(BlobError, match="item 'p1' field 'img'"):
        await q.read()
    q.retry = type(q.retry)(attempts=1)
    assert q.fail(BlobError("x", id="p1", field="img", key="00")) == "p1"
    (dead,) = q.dead_letters()
    assert dead.id == "p1" and parse_ref(dead.value.img) is not None  # the reference, kept to repair
    queues.backend.close()


async def test_memory_backend_with_blobs(tmp_path: Path) -> None:
    queues = connect(WF, f"memory://?blobs={tmp_path}&claim_check_bytes=1000", env={})
    await queues.Qin.push("p1", BIG)
    assert await queues.Qin.read("p1") == BIG
    assert len(blob_files(tmp_path)) == 1
    stored = queues.Qin.codec.decode(queues.Qin._items["p1"])  # type: ignore[attr-defined]
    assert parse_ref(stored.img) is not None and len(queues.Qin._items["p1"]) < 1000  # type: ignore[attr-defined]


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


def test_s3_compatible_store_multipart(s3_endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="blobs")
    store = blob_store_from_url(f"s3://blobs/pipeteer?endpoint={s3_endpoint}")
    assert isinstance(store, S3BlobStore)
    cc = ClaimCheck(store, threshold=1024)
    huge = Photo("huge", os.urandom(20 << 20))  # above the 8 MiB multipart threshold
    light = cc.dehydrate(huge)
    ((key, _),) = refs(light)
    assert client.head_object(Bucket="blobs", Key=f"pipeteer/{key[:2]}/{key}")["ContentLength"] == 20 << 20
    assert cc.hydrate(light) == huge
    assert [b.key for b in store.list()] == [key]
    store.delete(key)
    with pytest.raises(BlobError, match="is missing"):
        cc.hydrate(light, id="x")


def test_a_file_reference_on_an_s3_store_is_uploaded_when_pushed(s3_endpoint: str, tmp_path: Path) -> None:
    """`pipeteer push`'s path with a bucket: the file's bytes are read and uploaded at dehydration."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="refs")
    cc = ClaimCheck(blob_store_from_url(f"s3://refs/p?endpoint={s3_endpoint}"), threshold=1024)
    photo = tmp_path / "p.png"
    photo.write_bytes(BIG.img)
    ref = cc.file_ref(photo)
    assert not list(cc.store.list())
    light = cc.dehydrate(Photo("p", ref))
    assert [b.key for b in cc.store.list()] == [content_key(BIG.img)] and cc.hydrate(light) == Photo("p", BIG.img)
    later = cc.file_ref(photo)
    photo.write_bytes(BIG.img[::-1])
    with pytest.raises(ChangedWhileStored, match="changed while it was stored"):
        cc.dehydrate(Photo("p", later))


@pytest.mark.parametrize(
    "module", ["pipeteer.codec.claimcheck", "pipeteer.codec.blobstore", "pipeteer.runtime.batch"]
)
def test_docstring_examples(module: str) -> None:
    """The examples in these modules' docstrings run as written (they touch temporary files)."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_a_key_known_ahead_is_not_hashed_again_but_still_stored(tmp_path: Path) -> None:
    from pipeteer.codec.claimcheck import content_key

    cc = ClaimCheck(LocalBlobStore(tmp_path), threshold=10)
    data = os.urandom(1000)
    cc.remember(data, content_key(data), stored=False)  # as `pipeteer push` does with the id's hash
    light = cc.dehydrate(Photo("p", data))
    assert cc.hydrate(light).img == data and len(blob_files(tmp_path)) == 1


def test_a_file_goes_to_the_store_by_reference_copied_in_the_kernel(tmp_path: Path) -> None:
    """`pipeteer push`'s path: the value carries `file_ref`'s reference, the file is stored when pushed."""
    store = LocalBlobStore(tmp_path / "blobs")
    cc = ClaimCheck(store, threshold=1024)
    photo = tmp_path / "p.png"
    photo.write_bytes(BIG.img)
    ref = cc.file_ref(photo)
    assert parse_ref(ref) == (content_key(BIG.img), len(BIG.img)) and not blob_files(tmp_path / "blobs")
    light = cc.dehydrate(Photo("p", ref))
    assert light.img == ref and type(light.img) is bytes  # the plain reference, its file stored now: a copy
    (blob,) = blob_files(tmp_path / "blobs")
    assert blob.read_bytes() == BIG.img and blob.stat().st_ino != photo.stat().st_ino
    assert cc.hydrate(light) == Photo("p", BIG.img)
    linked = ClaimCheck(LocalBlobStore(tmp_path / "linked"), threshold=1024)
    linked.dehydrate(Photo("p", linked.file_ref(photo, link=True)))
    assert photo.stat().st_nlink == 2  # --link: the photo and its blob are one file
    # an equal value that did not come from file_ref is content, not a reference: stored as such
    equal = bytes(ref)
    assert cc.hydrate(cc.dehydrate(Photo("p", equal))).img == ref


def test_a_file_changed_before_it_is_stored_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    cc = ClaimCheck(LocalBlobStore(tmp_path / "blobs"), threshold=1024)
    photo = tmp_path / "p.png"
    photo.write_bytes(BIG.img)
    ref = cc.file_ref(photo)
    photo.write_bytes(BIG.img[::-1])  # rewritten in place (same size) between hashing and pushing
    with pytest.raises(ChangedWhileStored, match=rf"{photo} changed while it was stored"):
        cc.dehydrate(Photo("p", ref))
    assert not blob_files(tmp_path / "blobs")  # no blob under a key that is not its content


@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
def test_export_writes_a_verified_file_and_names_a_bad_blob(tmp_path: Path, link: bool) -> None:
    """`pipeteer pull`'s path: a reference's blob becomes a file without passing through Python."""
    cc = ClaimCheck(LocalBlobStore(tmp_path / "blobs"), threshold=1024)
    light = cc.dehydrate(BIG)
    (blob,) = blob_files(tmp_path / "blobs")
    out = tmp_path / "out.bin"
    assert cc.head(light.img, 8) == BIG.img[:8]
    cc.export(light.img, out, id="it-1", field="img", link=link)
    assert out.read_bytes() == BIG.img and (out.stat().st_ino == blob.stat().st_ino) == link
    out.unlink()
    data = blob.read_bytes()
    os.unlink(blob)  # (a linked output must not change the blob: write a new file)
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    key = content_key(BIG.img)
    with pytest.raises(BlobError, match=rf"item 'it-1' field 'img'.*blob {key} .* is corrupt"):
        cc.export(light.img, out, id="it-1", field="img", link=link)
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))  # nothing half-written left
    blob.unlink()
    with pytest.raises(BlobError, match=rf"item 'it-1' field 'img'.*blob {key} is missing"):
        cc.export(light.img, out, id="it-1", field="img", link=link)
    with pytest.raises(BlobError, match="is missing"):
        cc.head(light.img, id="it-1", field="img")


def resident_bytes(path: Path) -> int:
    """How much of a file the page cache holds (mincore(2) over a mapping that touches nothing)."""
    import ctypes
    import mmap

    size = path.stat().st_size
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        anchor = ctypes.c_char.from_buffer(m)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)), ctypes.c_size_t(size), vec) == 0
        finally:
            del anchor
    return sum(mmap.PAGESIZE for v in vec if v & 1)


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="the page-cache hint is POSIX-only")
@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
def test_export_leaves_neither_the_file_nor_its_blob_in_the_page_cache(tmp_path: Path, link: bool) -> None:
    """An exported output leaves the pipeline: its pages (and its blob's) are dropped from the
    cache once durable, so a long pull does not grow the page cache (see `drop_cached`)."""
    probe = tmp_path / "probe"
    probe.write_bytes(BIG.img)
    fsync_path(probe)  # (dirty pages are not dropped)
    drop_cached(probe)
    if resident_bytes(probe) > 0:
        pytest.skip(f"{tmp_path}'s file system keeps every page in memory (tmpfs): nothing to drop")
    cc = ClaimCheck(LocalBlobStore(tmp_path / "blobs"), threshold=1024)
    light = cc.dehydrate(BIG)
    (blob,) = blob_files(tmp_path / "blobs")
    blob.read_bytes()
    assert resident_bytes(blob) > 0  # (the check can see cached pages)
    out = tmp_path / "out.bin"
    cc.export(light.img, out, id="it-1", field="img", link=link)
    assert resident_bytes(out) == 0 and resident_bytes(blob) == 0
    assert out.read_bytes() == BIG.img and resident_bytes(out) > 0
    drop_cached(out)
    assert resident_bytes(out) == 0


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
async def test_read_stored_leaves_references_read_resolves_them(tmp_path: Path, scheme: str) -> None:
    url = f"memory://?blobs={tmp_path / 'b'}&claim_check_bytes=1000" if scheme == "memory" else f"sqlite:///{tmp_path / 'q.db'}"
    queues = connect(WF, url, env={})
    await queues.Qin.push("p1", BIG)
    stored = await queues.Qin.read_stored("p1")  # type: ignore[attr-defined]
    assert parse_ref(stored.img) == (content_key(BIG.img), len(BIG.img))
    assert await queues.Qin.read("p1") == BIG  # (the context of read_stored ends with it)
    queues.backend.close()
