"""Batches of files in and out of a workflow: `pipeteer push`, `pipeteer pull`, `pipeteer status`.

    pipeteer push topologies.perspective_correction:app photos/ --backend sqlite:///q.db
    pipeteer run  topologies.perspective_correction:app --backend sqlite:///q.db
    pipeteer pull topologies.perspective_correction:app out/ --backend sqlite:///q.db --follow
    pipeteer status topologies.perspective_correction:app --backend sqlite:///q.db

**push** makes one input item per file (`App.ingest`, or the default for an input state of one
`bytes` field) under an id derived from the file's name and content, so pushing a file twice
adds it once. Pushed ids are recorded in a ledger (`.pipeteer/pushed-WORKFLOW.ids` by default):
a re-run, after a crash or `kill -9`, skips them and pushes the rest. An item pushed but not yet
in the ledger when push died is pushed again on the re-run; ids being the same, `pull` writes
its output once whatever happened (below).

**pull** writes each output's `bytes` fields as files `DEST/ID.FIELD.EXT` (temp name, fsync,
rename) and its other fields as a line of `DEST/manifest.jsonl` (appended and fsynced after
the files), and only then pops the output. A re-run after a crash skips the ids the manifest
already has (popping them), so every output is written once and none is lost.

A full disk stops either command with `StorageFull` (naming the path and the space left) and
nothing half-written: no blob or output file under its name unless whole, no ledger or manifest
line unless whole (a failed append is cut off again). The caller's `PushReport` / `PullReport`
says how far it got; a re-run once there is room goes on from there, writing nothing twice.

From Python: `await queues.Qin.push_many(pairs)` and `async for id, value in outputs(queues.Qout)`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import enum
import glob
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeteer.codec.blobstore import (
    TMP_PREFIX,
    LocalBlobStore,
    content_key,
    file_key,
    fsync_path,
    publishing,
    room_for,
)
from pipeteer.codec.claimcheck import EXPORT_FIX, ClaimCheck, has_refs, parse_ref
from pipeteer.errors import ConfigError, InexistentItem, format_size
from pipeteer.queues.base import Pending, ReadQueue
from pipeteer.runtime.app import App
from pipeteer.runtime.media import extension
from pipeteer.wiring import BackendQueues

MANIFEST = "manifest.jsonl"


# --- ingest and ids --------------------------------------------------------------------------


def default_ingest(tp: Any) -> Callable[[Path, bytes], Any]:
    """How a file becomes an input item when the app gives no `ingest`: the bytes themselves for
    `bytes`, else the one `bytes` field of a dataclass whose other fields have defaults."""
    if tp is bytes:
        return lambda path, data: data
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        import typing

        hints = typing.get_type_hints(tp)
        fields = [f for f in dataclasses.fields(tp) if f.init]
        blobs = [f.name for f in fields if hints.get(f.name) is bytes]
        required = [
            f.name
            for f in fields
            if f.name not in blobs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if len(blobs) == 1 and not required:
            name = blobs[0]
            return lambda path, data: tp(**{name: data})
    raise ConfigError(
        f"pipeteer push: the input state {getattr(tp, '__name__', tp)!r} is not one bytes field: "
        "give the app an ingest (App(workflow, artifacts, ingest=lambda path, content: Input(...)))"
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def item_id(path: Path, data: bytes, key: str | None = None) -> str:
    """An id from a file's name and content (`key`: its content key, if computed already): the same
    file always gets the same id.

    >>> item_id(Path("photos/IMG 0001.png"), b"png")
    'IMG_0001-bad7c9a32d645d0e'
    """
    stem = _UNSAFE.sub("_", path.stem).strip("._-")[:48] or "item"
    return f"{stem}-{(key or content_key(data))[:16]}"


def expand_sources(sources: Sequence[str]) -> list[Path]:
    """Files named by SOURCE arguments: a file, a directory (its files, recursively, hidden ones
    left out), a glob pattern, or `@LIST` (a file naming one path per line). Sorted, each once."""
    found: list[Path] = []
    for source in sources:
        if source.startswith("@"):
            listing = Path(source[1:])
            if not listing.is_file():
                raise ConfigError(f"pipeteer push: list file {listing} does not exist")
            lines = [line.strip() for line in listing.read_text().splitlines()]
            found += expand_sources([line for line in lines if line and not line.startswith("#")])
            continue
        path = Path(source)
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(source):
            matches = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
            if not matches:
                raise ConfigError(f"pipeteer push: pattern {source!r} matches no file")
            found += matches
        else:
            raise ConfigError(f"pipeteer push: {source!r} is no file, directory, pattern or @list")
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def append_durably(fd: int, data: bytes) -> None:
    """Append `data` to the file open as `fd` (`O_APPEND`) and fsync it. If that fails (no space
    left), the file is cut back to its size before: it never ends with a part of `data`."""
    size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


class Ledger:
    """Ids already done, one per line in a file appended to as they are done (fsynced per batch)."""

    FIX = (
        "free space there, or give --ledger a path on another file system; the items are pushed, "
        "and a re-run pushes them again under the same ids (replaced, not duplicated)"
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        with room_for(path, doing="making the ledger of pushed items", fix=self.FIX):
            path.parent.mkdir(parents=True, exist_ok=True)
            # a torn last line (crash mid-write) is cut off: that one is simply done again
            self.ids = {line for line in _whole_lines(path) if line}
            self._fd = _open_append(path)

    def add(self, ids: Iterable[str]) -> None:
        new = [id for id in ids if id not in self.ids]
        if new:
            with room_for(self.path, doing=f"recording {len(new)} pushed item(s) in the ledger", fix=self.FIX):
                append_durably(self._fd, "".join(f"{id}\n" for id in new).encode())
            self.ids.update(new)

    def close(self) -> None:
        os.close(self._fd)


def _progress(total: int | None, unit: str, desc: str, quiet: bool) -> Any:
    from tqdm import tqdm

    bytes_ = unit == "B"
    return tqdm(
        total=total, unit=unit, unit_scale=bytes_, unit_divisor=1024 if bytes_ else 1000, desc=desc,
        disable=quiet or None, file=sys.stderr, dynamic_ncols=True,
    )


# --- push ------------------------------------------------------------------------------------


@dataclass
class PushReport:
    """How far a push got, counted as items are stored: a caller that passes one to `push_files`
    reads it even when the push fails (`pipeteer push` then says how far it got)."""

    pushed: int = 0
    """Items stored by this run."""
    skipped: int = 0
    """Files the ledger lists as pushed already (by an earlier run)."""
    bytes: int = 0
    """The size of the files pushed by this run."""


async def push_files(
    app: App,
    queues: BackendQueues,
    files: Sequence[Path],
    *,
    ledger: Path,
    concurrency: int = 8,
    quiet: bool = False,
    link: bool = False,
    report: PushReport | None = None,
) -> PushReport:
    """Push one item per file (see the module doc); resumes from `ledger`. Returns `report` (a new
    one if None), counted as the push goes.

    `link`: a file whose content goes to a local blob store (on the same file system) is stored
    there as a hard link, not a copy; it must then not be modified in place.
    """
    report = PushReport() if report is None else report
    ingest = app.ingest or default_ingest(app.workflow.Tin)
    claim = queues.Qin.claim
    store = claim.store if claim is not None else None
    if link and not isinstance(store, LocalBlobStore):
        raise ConfigError(f"pipeteer push --link: the blob store of {queues.backend.url} is not a local directory")

    # With the default ingest, a large file's reference is pushed (see `ClaimCheck.file_ref`): the
    # file is hashed in chunks and, on a local store, copied in the kernel (or linked) when pushed.
    by_file = claim if app.ingest is None else None

    def load(path: Path) -> tuple[bytes, str]:
        """What the ingest gets (the file's bytes, or a reference to them) and the content key."""
        if by_file is not None and sizes[path] > by_file.threshold:
            key = file_key(path)
            return by_file.file_ref(path, key, link=link), key
        data = path.read_bytes()
        key = content_key(data)
        if claim is not None and len(data) > claim.threshold:
            # the id's hash is the blob's key: pushing the value will not hash it again
            adopted = link and isinstance(store, LocalBlobStore) and store.adopt(key, path)
            claim.remember(data, key, stored=adopted)
        return data, key

    done = Ledger(ledger)
    sizes = {p: p.stat().st_size for p in files}
    bar = _progress(sum(sizes.values()), "B", "push", quiet)
    under_way: dict[str, int] = {}  # id -> size of its file, until stored
    finished: list[str] = []

    async def items() -> AsyncIterator[tuple[str, Any]]:
        for path in files:
            content, key = await asyncio.to_thread(load, path)
            id = item_id(path, b"", key)
            if id in done.ids:
                report.skipped += 1
                bar.update(sizes[path])
                continue
            try:
                value = ingest(path, content)
            except Exception as e:
                raise ConfigError(f"pipeteer push: ingesting {path} failed: {type(e).__name__}: {e}") from e
            under_way[id] = sizes[path]
            yield id, value
            bar.update(sizes[path])

    def on_done(id: str) -> None:
        report.pushed += 1
        report.bytes += under_way.pop(id, 0)
        finished.append(id)
        if len(finished) >= 32:
            done.add(finished)
            finished.clear()

    try:
        await queues.Qin.push_many(items(), concurrency=concurrency, done=on_done)
    finally:
        try:
            done.add(finished)  # what was stored, failure or not: a re-run skips it
        finally:
            done.close()
            bar.close()
    return report


# --- pull ------------------------------------------------------------------------------------


def _json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, enum.Enum):
        return _json(value.value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


def write_atomically(path: Path, data: bytes) -> None:
    """Write `path` so that it is either absent or whole, and durable once this returns (on a full
    disk: `StorageFull`, and no file under either name)."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    with room_for(path, doing=f"writing {format_size(len(data))}", fix=EXPORT_FIX):
        with publishing(tmp, path), open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_output(
    dest: Path, id: str, value: Any, *, claim: ClaimCheck | None = None, link: bool = False
) -> dict[str, Any]:
    """Write an output's bytes as files; returns its manifest record (the files are durable, the
    directory entry is made durable by the caller's directory fsync).

    `value` as `read_stored` returns it when `claim` is given (a local blob store): a field that
    is a blob reference is exported from the store (copied in the kernel, or hard-linked with
    `link`), verified, never loaded into Python."""
    record: dict[str, Any] = {"id": id}
    files: dict[str, str] = {}

    def save(stem: str, data: bytes, field: str) -> str:
        if claim is not None and parse_ref(data) is not None:
            name = stem + extension(claim.head(data, id=id, field=field))
            claim.export(data, dest / name, id=id, field=field, link=link)
        else:
            name = stem + extension(data)
            write_atomically(dest / name, data)
        return name

    def plain(v: Any, field: str) -> Any:
        if claim is not None and has_refs(v):  # (large bytes inside a list or a dict: in the manifest)
            v = claim.hydrate(v, id=id, source=f"inside field {field!r}")
        return _json(v)

    if isinstance(value, bytes):
        files["value"] = save(id, value, "")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if isinstance(v, bytes):
                files[f.name] = save(f"{id}.{f.name}", v, f.name)
            else:
                record[f.name] = plain(v, f.name)
    else:
        record["value"] = plain(value, "")
    record["files"] = files
    return record


def manifest_ids(path: Path) -> set[str]:
    """The ids a manifest lists. A torn last line (a crash mid-append) is cut off: that output was
    not popped, so it is written again."""
    return {json.loads(line)["id"] for line in _whole_lines(path) if line.strip()}


def _whole_lines(path: Path) -> list[str]:
    """The complete lines of a file appended to line by line; a torn last line is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    if len(whole) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(whole))
    return whole.decode().splitlines()


async def outputs(Qout: ReadQueue[Any], *, follow: bool = True, poll: float = 0.2) -> AsyncIterator[tuple[str, Any]]:
    """The workflow's outputs as they come: each is popped when the loop asks for the next one
    (so, after the loop body handled it; an item whose body raised stays in the queue).

    >>> async def save(queues):
    ...     async for id, out in outputs(queues.Qout, follow=False):
    ...         print(id)
    """
    while True:
        ids = [id async for id in _first_keys(Qout, 1)]
        if not ids:
            if not follow:
                return
            await asyncio.sleep(poll)
            continue
        try:
            value = await Qout.read(ids[0])
        except InexistentItem:
            continue
        yield ids[0], value
        with contextlib.suppress(InexistentItem):
            await Qout.pop(ids[0])


async def _first_keys(q: ReadQueue[Any], n: int) -> AsyncIterator[str]:
    count = 0
    async for id in q.keys():
        yield id
        count += 1
        if count >= n:
            return


async def _pop(q: ReadQueue[Any], id: str) -> None:
    with contextlib.suppress(InexistentItem):
        await q.pop(id)


async def drained(queues: BackendQueues, app: App) -> bool:
    """No item waits in any stage or in the output."""
    for stage in app.stages():
        if (await queues.stage_queue(stage).pending()).count:
            return False
    return not (await queues.Qout.pending()).count


@dataclass
class PullReport:
    """How far a pull got, counted as outputs are named in the manifest: a caller that passes one to
    `pull_outputs` reads it even when the pull fails (`pipeteer pull` then says how far it got)."""

    written: int = 0
    """Outputs this run wrote (files durable, named in the manifest)."""
    listed: int = 0
    """Outputs the manifest listed when the run began (written by earlier runs)."""


async def pull_outputs(
    app: App,
    queues: BackendQueues,
    dest: Path,
    *,
    follow: bool = False,
    until_empty: bool = False,
    expect: int | None = None,
    concurrency: int = 8,
    poll: float = 0.2,
    quiet: bool = False,
    link: bool = False,
    report: PullReport | None = None,
) -> int:
    """Write outputs to `dest` (see the module doc). Returns how many this run wrote (also counted
    in `report`, if given, as the pull goes).

    Stops when the output queue is empty, unless `follow` (wait for more, until interrupted),
    `until_empty` (until no stage holds an item either) or `expect` (until the manifest has that many).
    `link`: files of claim-checked values are hard links to their blobs (a local blob store on
    the same file system), not copies: no second write of the bytes, but the files must not be
    modified in place (that would change the blob).
    """
    if concurrency < 1:
        raise ValueError(f"pull_outputs: concurrency must be >= 1, got {concurrency}")
    report = PullReport() if report is None else report
    manifest = dest / MANIFEST
    with room_for(dest, doing="making the directory and its manifest", fix=EXPORT_FIX):
        dest.mkdir(parents=True, exist_ok=True)
        done = manifest_ids(manifest)  # outputs already written (by this run or an earlier one)
        lines = _open_append(manifest)
    report.listed = len(done)
    Qout = queues.Qout
    # from a local blob store, files are exported (copied in the kernel or linked), not read
    local = Qout.claim if Qout.claim is not None and isinstance(Qout.claim.store, LocalBlobStore) else None
    if link and local is None:
        raise ConfigError(f"pipeteer pull --link: the blob store of {queues.backend.url} is not a local directory")
    bar = _progress(None if expect is None else max(expect - len(done), 0), "item", "pull", quiet)
    # A pipeline, not rounds: up to `concurrency` outputs are read and written at once, and as each
    # finishes its slot takes the next; whatever finished meanwhile is named in the manifest by one
    # group commit (two fsyncs for many outputs), then popped. Many fsyncs under way at once is
    # what makes durable writes fast: the file system commits them together.
    busy: set[str] = set()  # ids being written, or written and waiting for the manifest and their pop
    finished: list[dict[str, Any]] = []  # records whose files are durable, not yet in the manifest
    stale: list[str] = []  # in the manifest already (an earlier run died before popping them)
    running: set[asyncio.Task[None]] = set()
    popping: set[asyncio.Task[None]] = set()  # pops of outputs the manifest names
    failures: list[BaseException] = []
    changed = asyncio.Event()
    written = 0

    async def one(id: str) -> None:
        try:
            value = await (Qout.read(id) if local is None else Qout.read_stored(id))
            finished.append(await asyncio.to_thread(write_output, dest, id, value, claim=local, link=link))
        except InexistentItem:  # popped meanwhile (another pull)
            busy.discard(id)
        except BaseException as e:
            failures.append(e)
        finally:
            changed.set()

    def commit(records: list[dict[str, Any]]) -> None:
        with room_for(manifest, doing=f"naming {len(records)} output(s) in the manifest", fix=EXPORT_FIX):
            fsync_path(dest)  # the files' names are durable before the manifest names them
            append_durably(lines, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode())

    async def pops(ids: list[str]) -> None:
        try:
            # at once: on Kafka each pop waits for the transaction it is in, and they all share one
            await asyncio.gather(*(_pop(Qout, id) for id in ids))
        except Exception as e:
            failures.append(e)
        finally:
            busy.difference_update(ids)
            changed.set()

    async def settle() -> None:
        """The manifest names what finished; then those outputs are popped, in the background: the
        next ones are read and written meanwhile (on Kafka a pop waits for a transaction's commit)."""
        nonlocal written
        records, finished[:] = finished[:], []
        ids, stale[:] = [r["id"] for r in records] + stale, []
        if records:
            await asyncio.to_thread(commit, records)
            done.update(r["id"] for r in records)
            written += len(records)
            report.written = written
            bar.update(len(records))
        if ids:
            task = asyncio.ensure_future(pops(ids))
            popping.add(task)
            task.add_done_callback(popping.discard)

    async def fill() -> None:
        free = concurrency - len(running)
        if free <= 0:
            return
        async for id in _first_keys(Qout, len(busy) + free):
            if id in busy:
                continue
            busy.add(id)
            if id in done:
                stale.append(id)
                continue
            task = asyncio.ensure_future(one(id))
            running.add(task)
            task.add_done_callback(running.discard)

    try:
        while not failures:
            changed.clear()  # first: an output finishing from here on wakes the wait below
            if finished or stale:
                await settle()
            if expect is not None and len(done) >= expect and not running:
                break
            await fill()
            if running or stale:
                if not stale:
                    await changed.wait()
                continue
            if expect is None and not follow and not popping and (not until_empty or await drained(queues, app)):
                break
            with contextlib.suppress(TimeoutError):  # (a pop ending may let the next output in)
                await asyncio.wait_for(changed.wait(), poll)
        if failures:
            await asyncio.gather(*running, return_exceptions=True)
            if finished:
                await settle()  # what was written is not written again
        await asyncio.gather(*popping)  # (their failures are in `failures`)
        if failures:
            raise failures[0]
    finally:
        for task in running | popping:
            task.cancel()
        bar.close()
        os.close(lines)
    return written


# --- status ----------------------------------------------------------------------------------


async def status(app: App, queues: BackendQueues) -> dict[str, Pending]:
    """Per stage, what waits in it; and the outputs waiting to be pulled (`'(output)'`)."""
    out: dict[str, Pending] = {}
    for stage in app.stages():
        out[stage] = await queues.stage_queue(stage).pending()
    out["(output)"] = await queues.Qout.pending()
    return out


def format_status(rows: dict[str, Pending]) -> str:
    width = max([len(k) for k in rows] + [5])
    lines = [f"{'stage':<{width}}  {'pending':>8}  oldest"]
    for name, p in rows.items():
        age = "-" if p.oldest_age is None else _age(p.oldest_age)
        lines.append(f"{name:<{width}}  {p.count:>8}  {age}")
    return "\n".join(lines)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
