"""Where claim-checked values live: a directory (shared by every process) or an S3-compatible bucket.

Blobs are content-addressed (`key` is the BLAKE3 hash of the bytes, see `content_key`), so a
blob is written once: a `put` of a key already stored does nothing, and a crashed writer leaves
at most a temporary file, never half a blob under its key. A write that finds the file system
full (or a disk quota reached) removes its temporary file and raises `StorageFull`, naming the
store, the blob and the space left: the same error on every backend, since they all write their
blobs here.

    >>> import tempfile
    >>> store = LocalBlobStore(tempfile.mkdtemp())
    >>> key = content_key(b"png")
    >>> store.put(key, b"png"); store.get(key)
    b'png'
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import blake3

from pipeteer.errors import ChangedWhileStored, ConfigError, StorageFull, format_size

HASH_NAME = "blake3"
"""BLAKE3 hashes at ~5.6 GB/s on one core here, sha256 at ~1.4 GB/s and blake2b at ~0.7 GB/s
(5 MiB values; `bench/bench_images.py` prints them): a blob is hashed when written and verified
when read, so the hash must not cost more than the copy."""

TMP_PREFIX = ".tmp-"


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file, or a directory (its entries), by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def drop_cached(path: str | os.PathLike[str]) -> None:
    """Tell the kernel a file's cached pages will not be read again (a hint; its pages must be
    clean, i.e. fsynced, to be dropped): streamed data that leaves the pipeline then does not
    push out of the page cache what will be read (the backlog's blobs, the database), and its
    pages are used again for the next writes. On a VM whose balloon hands freed memory back to
    the host, a write into a page the guest never had costs ~8x one into a page used again
    (`bench/images.md`)."""
    if not hasattr(os, "posix_fadvise"):
        return
    with contextlib.suppress(OSError):  # (deleted meanwhile: nothing cached to drop)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@contextlib.contextmanager
def publishing(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> Iterator[None]:
    """The block writes `tmp`; then `tmp` takes the name `target` (an atomic rename). If the block
    or the rename fails, `tmp` is removed and `target` is as it was: a reader never sees half a
    file, and a crash leaves at most a temporary one."""
    try:
        yield
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""What a write (or an fsync, a rename) says when the file system has no space left, or a disk quota is reached."""


def is_full(error: BaseException) -> bool:
    """Whether `error` is a file system running out of space (ENOSPC) or a disk quota reached (EDQUOT).

    >>> is_full(OSError(errno.ENOSPC, "No space left on device")), is_full(FileNotFoundError())
    (True, False)
    """
    return isinstance(error, OSError) and error.errno in FULL_ERRNOS


def free_space(path: str | os.PathLike[str]) -> tuple[int | None, str | None]:
    """The bytes an unprivileged writer may still use on the file system holding `path` (or its
    nearest existing parent: the file may not be made yet), and where that file system is mounted;
    `(None, None)` when that cannot be told.

    >>> free, mount = free_space("/no/such/dir")  # the root file system's
    >>> free is not None and free >= 0, mount
    (True, '/')
    """
    where = Path(os.path.abspath(path))
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        st = os.statvfs(where)
    except OSError:
        return None, None
    mount = where if where.is_dir() else where.parent
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return st.f_bavail * st.f_frsize, str(mount)


def storage_full(path: str | os.PathLike[str], *, doing: str, fix: str, quota: bool = False) -> StorageFull:
    """The `StorageFull` error for a write of `path` (named absolute) that found no space: with the
    space left now."""
    free, mount = free_space(path)
    return StorageFull(os.path.abspath(path), doing=doing, free=free, mount=mount, fix=fix, quota=quota)


@contextlib.contextmanager
def room_for(path: str | os.PathLike[str], *, doing: str, fix: str) -> Iterator[None]:
    """The block writes to `path`: if the file system is full (ENOSPC, EDQUOT: in a write, an fsync,
    a rename, a mkdir), the block's own clean-up runs and `StorageFull` is raised in its place,
    naming `path`, `doing` and the space left, with `fix` to say what to do. Other errors pass.

    >>> with room_for("/mnt/x", doing="writing out.png", fix="free space"):  # doctest: +ELLIPSIS
    ...     raise OSError(errno.ENOSPC, "No space left on device")
    Traceback (most recent call last):
    pipeteer.errors.StorageFull: no space left on /mnt/x (writing out.png; ... free on /): free space
    """
    try:
        yield
    except OSError as e:
        if not is_full(e):
            raise
        raise storage_full(path, doing=doing, fix=fix, quota=e.errno == errno.EDQUOT) from e


def content_key(data: bytes) -> str:
    """The key a blob is stored under: the hex BLAKE3 hash of its bytes.

    >>> content_key(b"")[:16]
    'af1349b9f5f9a1a6'
    """
    return str(blake3.blake3(data).hexdigest())


_buffers = threading.local()


def file_key(path: str | os.PathLike[str]) -> str:
    """The content key of a file's bytes, read in 1 MiB chunks into one buffer per thread.

    (A memory map costs less alone, but unmapping it interrupts every core running one of the
    process's threads: in `pipeteer pull`, with copies under way in other threads, that was a
    fifth of its CPU time.)

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     _ = f.write(b"png"); f.flush()
    ...     file_key(f.name) == content_key(b"png")
    True
    """
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(1 << 20)
    view = memoryview(buf)
    h = blake3.blake3()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return str(h.hexdigest())


FICLONE = 0x40049409
"""Linux's ioctl that makes a file share another's extents, copy-on-write (XFS, btrfs, bcachefs)."""


def clone_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> bool:
    """Make `target` a copy-on-write clone of `source` (no data copied; writing either later
    leaves the other as it was): True if done, False where the file system cannot (ext4, another
    file system, not Linux), with `target` then created empty."""
    if sys.platform != "linux":
        return False
    import fcntl

    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        except OSError:
            return False
    return True


def copy_durably(
    source: str | os.PathLike[str], target: Path, *, check: Callable[[Path], None] | None = None
) -> str:
    """Copy a file without passing its bytes through Python, fsync it and rename it to `target`:
    `target` is absent or whole, and durable once this returns (its directory entry once the
    caller fsyncs the directory). Returns how: `"clone"` (copy-on-write, where the file system
    shares extents: no data written) or `"copy"` (`shutil.copyfile`, sendfile in the kernel).

    On this project's machines a copy through Python's memory (read into `bytes`, write, fsync)
    costs ~4 CPU-seconds per GB and runs at ~200 MB/s; a kernel copy ~0.6 s per GB at ~700 MB/s,
    a clone on XFS next to nothing (`bench/bench_images.py` measures them). `check(temp_path)`
    may refuse the copy (by raising) before it takes the name `target`."""
    tmp = target.with_name(f"{TMP_PREFIX}{target.name}-{os.getpid()}-{threading.get_ident()}")
    with publishing(tmp, target):
        how = "clone" if clone_file(source, tmp) else "copy"
        if how == "copy":
            shutil.copyfile(source, tmp)
        fsync_path(tmp)
        if check is not None:
            check(tmp)
    return how


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob, as a listing sees it (for `pipeteer blobs gc`)."""

    key: str
    size: int
    modified: float
    """Seconds since the epoch of the last write (blobs younger than a grace period are never collected)."""


class BlobStore(Protocol):
    """A content-addressed store: `put` is idempotent for one key; `get` of an absent key raises `KeyError`."""

    url: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self) -> Iterator[BlobInfo]: ...

    def delete(self, key: str, *, written_before: float | None = None) -> bool:
        """Remove a blob (if it was last written before `written_before`, seconds since the epoch); True if removed."""
        ...


def _check_key(key: str) -> str:
    if not key or len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
        raise ConfigError(f"invalid blob key {key!r}: expected a lowercase hex hash")
    return key


class LocalBlobStore:
    """Blobs as files `ROOT/ab/abcdef…` (a volume every stage process mounts, on Kubernetes).

    A write that runs out of space raises `StorageFull` naming `ROOT` and the blob, and leaves no
    trace: its temporary file is removed, the key is absent as before."""

    FIX = (
        "free space there (`pipeteer blobs gc APP --delete` removes the blobs nothing references), or move "
        "the blob store to a larger file system (PIPETEER_BLOBS, or ?blobs=DIR in the backend URL); stages "
        "waiting for it go on by themselves once there is room"
    )
    """What a full blob store's `StorageFull` says to do."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / _check_key(key)

    @staticmethod
    def _renewed(path: Path) -> bool:
        """Whether the blob is stored already: written once, identical content is never written
        twice, but its time is renewed (`blobs gc` spares it for its grace period)."""
        if path.exists():
            with contextlib.suppress(FileNotFoundError):  # (unless collected meanwhile: write it)
                os.utime(path)
                return True
        return False

    def _room(self, doing: str, key: str, size: int | None) -> contextlib.AbstractContextManager[None]:
        """Out of space in the block: `StorageFull` naming this store, the blob and its size."""
        of = "" if size is None else f" of {format_size(size)}"
        return room_for(self.root, doing=f"{doing} blob {key}{of}", fix=self.FIX)

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        if self._renewed(path):
            return
        with self._room("writing", key, len(data)):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX)
            with publishing(tmp, path), os.fdopen(fd, "wb") as f:  # temp name, fsync, rename
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())

    def put_file(self, key: str, source: str | os.PathLike[str], *, link: bool = False) -> None:
        """Store the file `source`, whose content has the key `key`: a copy made in the kernel (see
        `copy_durably`), or with `link` a hard link when it can be made (see `adopt`). The copy is
        hashed again before it takes the key: raises `ChangedWhileStored` (and stores nothing) when
        the file changed since `key` was computed."""
        path = self.path(key)
        if self._renewed(path):
            return
        if link and self.adopt(key, source):
            return

        def same(copy: Path) -> None:
            if file_key(copy) != key:
                raise ChangedWhileStored(source, key)

        with self._room("copying", key, os.path.getsize(source)):
            path.parent.mkdir(parents=True, exist_ok=True)
            copy_durably(source, path, check=same)

    def adopt(self, key: str, source: str | os.PathLike[str]) -> bool:
        """Store the file `source` (whose content has the key `key`) as a hard link, not a copy: True
        when the blob is there now, False when it cannot be linked (another file system) — `put` it.
        The file must then not be modified in place (that would change the blob; reads would say so)."""
        path = self.path(key)
        if path.exists():
            return True
        with self._room("linking", key, None):  # (a link writes no data: its size is beside the point)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{TMP_PREFIX}{key}-{os.getpid()}-{threading.get_ident()}")
            try:
                os.link(source, tmp)
            except OSError as e:
                if is_full(e):  # (a directory that could not grow: a copy would not fit either)
                    raise
                return False
            with publishing(tmp, path):
                if self.fsync:
                    fsync_path(tmp)
        return True

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def list(self) -> Iterator[BlobInfo]:
        if not self.root.is_dir():
            return
        for sub in self.root.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for entry in os.scandir(sub):
                if entry.name.startswith(TMP_PREFIX):  # a write in progress (or a crashed writer's)
                    continue
                with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                    st = entry.stat()
                    yield BlobInfo(entry.name, st.st_size, st.st_mtime)

    def delete(self, key: str, *, written_before: float | None = None) -> bool:
        path = self.path(key)
        try:
            if written_before is not None and path.stat().st_mtime >= written_before:
                return False  # written (or re-used by a push) since it was listed
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True


MULTIPART_CHUNK = 8 << 20


class S3BlobStore:
    """Blobs in an S3-compatible bucket (`s3://bucket/prefix?endpoint=http://minio:9000`); needs boto3.

    Uploads above 8 MiB are multipart and downloads are streamed in chunks (boto3's transfer
    manager). Credentials come from the usual AWS environment variables or instance roles,
    never from the URL.
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

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r})"

    def _key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key[:2]}/{key}" if self.prefix else f"{key[:2]}/{key}"

    def _transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=MULTIPART_CHUNK, multipart_chunksize=MULTIPART_CHUNK)

    def put(self, key: str, data: bytes) -> None:
        name = self._key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
            # written once; its time renewed (a copy onto itself), so `blobs gc` spares it for its grace period
            self.client.copy_object(
                Bucket=self.bucket, Key=name, CopySource={"Bucket": self.bucket, "Key": name},
                MetadataDirective="REPLACE",
            )
            return
        except Exception as e:
            if not _is_not_found(e):
                raise
        # a multipart upload becomes visible only when complete: readers never see half a blob
        self.client.upload_fileobj(io.BytesIO(data), self.bucket, name, Config=self._transfer())

    def get(self, key: str) -> bytes:
        buf = io.BytesIO()
        try:
            self.client.download_fileobj(self.bucket, self._key(key), buf, Config=self._transfer())
        except Exception as e:
            if _is_not_found(e):
                raise KeyError(key) from None
            raise
        return buf.getvalue()

    def list(self) -> Iterator[BlobInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""
        )
        for page in pages:
            for obj in page.get("Contents", ()):
                yield BlobInfo(obj["Key"].rsplit("/", 1)[-1], int(obj["Size"]), obj["LastModified"].timestamp())

    def delete(self, key: str, *, written_before: float | None = None) -> bool:
        name = self._key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        except Exception as e:
            if _is_not_found(e):
                return False
            raise
        if written_before is not None and head["LastModified"].timestamp() >= written_before:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=name)
        return True


def _is_not_found(e: Exception) -> bool:
    response = getattr(e, "response", None)
    code = str((response or {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def blob_store_from_url(url: str) -> BlobStore:
    """`file:///var/lib/pipeteer/blobs`, a plain directory path, or `s3://bucket/prefix[?endpoint=URL]`."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return LocalBlobStore(unquote(parts.path) if parts.scheme else url)
    if parts.scheme == "s3":
        endpoint = parse_qs(parts.query).get("endpoint", [None])[0]
        return S3BlobStore(parts.netloc, parts.path, endpoint=endpoint)
    raise ConfigError(f"unknown blob store URL {url!r}: use file:///dir, a directory, or s3://bucket/prefix")
