"""A file system that fills up under the blob store, the SQLite file or `pull`'s directory.

Each test mounts a 4 MB tmpfs of its own (root, or CAP_SYS_ADMIN: skipped otherwise), fills it
with a ballast file or with the work itself, and frees it by deleting the ballast. What must hold:
a clear `StorageFull` naming the path and the free space, never a traceback; nothing half-written
(no temporary file left, no truncated file under its name, no row referencing a blob that is not
whole, the queue as before a failed push); and the work going on once there is room, by itself in
a running stage, by a re-run of `push` / `pull`, with nothing written twice.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pipeteer import connect
from pipeteer.codec.blobstore import LocalBlobStore, content_key, file_key
from pipeteer.errors import StorageFull, Unavailable
from tests.apps import darkroom
from tests.apps.photos import Photo, Stored
from tests.apps.photos import app as photos
from tests.integration.test_batch import APP, check_outputs, make_photos, pulled
from tests.integration.test_sqlite_processes import ROOT, free_port

SIZE = 4 << 20
FREE = r"\d+(\.\d)? [kM]?B free"
"""How a message gives the space left on a nearly full file system."""


def esc(path: Path) -> str:
    return re.escape(str(path))


def mount_tmpfs(where: Path) -> str | None:
    """Mount a tmpfs of `SIZE` on `where`; why not, if it was refused."""
    if shutil.which("mount") is None:
        return "no mount command"
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(where)], capture_output=True, timeout=30
        )
    except OSError as e:
        return str(e)
    return None if done.returncode == 0 else done.stderr.decode().strip() or f"exit status {done.returncode}"


def unmount(where: Path) -> None:
    """Unmount `where`, waiting (bounded) for processes to let go of it, lazily if one never does."""
    deadline = time.monotonic() + 10
    while os.path.ismount(where):
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode == 0:
            return
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", str(where)], check=True, timeout=30)
            return
        time.sleep(0.1)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB file system of this test's own, unmounted after it even when it fails."""
    where = tmp_path / "small"
    where.mkdir()
    refused = mount_tmpfs(where)
    if refused is not None:
        pytest.skip(
            f"needs a small file system to fill: `mount -t tmpfs` was refused ({refused}); "
            "run as root (or with CAP_SYS_ADMIN)"
        )
    try:
        yield where.resolve()
    finally:
        unmount(where)


def free(fs: Path) -> int:
    st = os.statvfs(fs)
    return st.f_bavail * st.f_frsize


def fill(fs: Path, leave: int) -> Path:
    """A ballast file taking all the free space of `fs` but `leave` bytes: delete it to free them."""
    ballast = fs / "ballast"
    size = free(fs) - leave
    assert size > 0, f"{fs} has only {free(fs)} bytes free"
    chunk = b"\0" * (1 << 16)
    with open(ballast, "wb") as f:
        while size > 0:
            size -= f.write(chunk[: min(size, len(chunk))])
    return ballast


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")]


def whole_blobs(root: Path) -> bool:
    """Every blob of a local store is whole: its content hashes to its name."""
    return all(file_key(p) == p.name for p in root.rglob("*") if p.is_file())


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A `pipeteer` command run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "pipeteer", *args],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def audit(db: Path, table: str) -> None:
    """Record each INSERT of an id into `table`, and each UPDATE of its value (a push replacing it)."""
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE audit (event TEXT, id TEXT)")
    conn.execute(
        f'CREATE TABLE "{table}" (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, '
        "value BLOB NOT NULL)"
    )
    for event in ("INSERT", "UPDATE OF value"):  # (not the claims a read writes in the row)
        name = event.split()[0]
        conn.execute(
            f'CREATE TRIGGER "audit_{name}" AFTER {event} ON "{table}" BEGIN INSERT INTO audit VALUES '
            f"('{name}', NEW.id); END"
        )
    conn.commit()
    conn.close()


def audited(db: Path) -> dict[tuple[str, str], int]:
    """(event, id) -> how many times."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT event, id, COUNT(*) FROM audit GROUP BY event, id").fetchall()
    finally:
        conn.close()
    return {(event, id): n for event, id, n in rows}


# --- push --------------------------------------------------------------------------------------


async def test_a_push_finding_the_blob_store_full_stores_nothing_and_names_it(
    small_fs: Path, tmp_path: Path
) -> None:
    blobs = small_fs / "blobs"
    queues = connect(photos, f"sqlite:///{tmp_path / 'q.db'}?blobs={blobs}")
    try:
        stage = queues.stage_queue("keep")
        stored = {f"p{i}": os.urandom(300_000) for i in range(3)}
        for id, img in stored.items():
            await queues.Qin.push(id, Photo(img))
        ballast = fill(small_fs, leave=100_000)
        big = os.urandom(300_000)
        with pytest.raises(StorageFull) as failed:
            await queues.Qin.push("p3", Photo(big))
        error = failed.value
        assert isinstance(error, Unavailable)  # a stage meeting it waits: not the item's fault
        assert (error.path, error.mount) == (str(blobs), str(small_fs))
        assert error.free is not None and error.free < 300_000
        assert re.fullmatch(
            rf"no space left on {esc(blobs)} \(writing blob {content_key(big)} of 300 kB; "
            rf"{FREE} on {esc(small_fs)}\): "
            r"free space there .*PIPETEER_BLOBS.*",
            str(error),
        ), error
        assert temp_files(small_fs) == [] and not LocalBlobStore(blobs).path(content_key(big)).exists()
        # a push replacing a stored item with a value that does not fit leaves the stored one
        with pytest.raises(StorageFull):
            await queues.Qin.push("p0", Photo(os.urandom(300_000)))
        assert sorted(await stage.keys()) == sorted(stored)
        assert {id: (await stage.read(id)).img for id in stored} == stored
        ballast.unlink()
        await queues.Qin.push("p3", Photo(big))
        assert (await stage.read("p3")).img == big and whole_blobs(blobs)
    finally:
        queues.backend.close()


async def test_a_push_finding_the_database_full_leaves_the_queue_as_it_was(small_fs: Path) -> None:
    db = small_fs / "q.db"
    queues = connect(photos, f"sqlite:///{db}?blobs=off")  # the values in the rows: the file fills up
    stored: dict[str, bytes] = {}
    try:
        stage = queues.stage_queue("keep")
        await queues.Qin.push("first", Photo(b"x"))  # the file, its tables, its WAL
        ballast = fill(small_fs, leave=1_500_000)
        with pytest.raises(StorageFull) as failed:
            for i in range(20):  # 20 x 200 kB: more than there is room for
                img = os.urandom(200_000)
                await queues.Qin.push(f"p{i}", Photo(img))
                stored[f"p{i}"] = img
        error = failed.value
        assert 0 < len(stored) < 20 and error.path == str(db)
        assert re.fullmatch(
            rf"no space left on {esc(db)} \(pushing item 'p{len(stored)}' to queue 'input': "
            rf"SQLite: database or disk is full; {FREE} on {esc(small_fs)}\): free space there, "
            r"or move the database .*",
            str(error),
        ), str(error)
        assert sorted(await stage.keys()) == sorted(["first", *stored])
        assert {id: (await stage.read(id)).img for id in stored} == stored
        ballast.unlink()
        await queues.Qin.push("after", Photo(b"y"))
        assert (await stage.read("after")).img == b"y"
    finally:
        queues.backend.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def test_the_push_command_filling_the_disk_stops_says_how_far_and_a_rerun_completes_it(
    small_fs: Path, tmp_path: Path
) -> None:
    photo_files = make_photos(tmp_path / "in", 10, 250_000)
    db = small_fs / "q.db"
    backend = f"sqlite:///{db}"
    push = ("push", APP, str(tmp_path / "in"), "--backend", backend, "-q")
    audit(db, "input")
    ballast = fill(small_fs, leave=1_200_000)  # room for about four of the ten

    first = cli(*push, cwd=tmp_path)
    assert first.returncode == 2 and "Traceback" not in first.stderr, first.stderr
    told = re.search(r"pipeteer push: stopped after pushing (\d+) item\(s\) \(([\d.]+) MB\); 0 already pushed, "
                     r"(\d+) not pushed \(ledger \S+\): run the same command again to push the rest", first.stderr)
    assert told is not None, first.stderr
    pushed = int(told[1])
    assert 0 < pushed < 10 and int(told[3]) == 10 - pushed and told[2] == f"{pushed * 0.25:.1f}"
    # the blob store or the database, whichever found no room first
    assert re.search(
        rf"pipeteer: error: no space left on {esc(small_fs)}/q\.(blobs|db) \(.*; {FREE} on {esc(small_fs)}\)",
        first.stderr,
    ), first.stderr
    assert temp_files(small_fs) == [] and whole_blobs(small_fs / "q.blobs")
    ledger = (tmp_path / ".pipeteer" / "pushed-photos.ids").read_text().split()
    assert len(ledger) == pushed

    async def stored() -> dict[str, bytes]:
        queues = connect(photos, backend)
        try:
            stage = queues.stage_queue("keep")
            return {id: (await stage.read(id)).img for id in await stage.keys()}  # (blobs verified as read)
        finally:
            queues.backend.close()

    assert asyncio.run(stored()) == {id: photo_files[id] for id in ledger}

    ballast.unlink()
    second = cli(*push, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert f"pushed {10 - pushed} item(s)" in second.stderr and f"{pushed} already pushed" in second.stderr
    assert asyncio.run(stored()) == photo_files
    assert audited(db) == {("INSERT", id): 1 for id in photo_files}  # each photo once

    # Pushes are idempotent by id: without the ledger, every file is pushed again and replaces itself.
    (tmp_path / ".pipeteer" / "pushed-photos.ids").unlink()
    third = cli(*push, cwd=tmp_path)
    assert third.returncode == 0 and "pushed 10 item(s)" in third.stderr, third.stderr
    assert asyncio.run(stored()) == photo_files
    replaced = {("UPDATE", id): 1 for id in photo_files}
    assert audited(db) == {**{("INSERT", id): 1 for id in photo_files}, **replaced}  # and not inserted again
    assert temp_files(small_fs) == []


# --- a stage's output --------------------------------------------------------------------------


async def test_a_stage_whose_output_finds_no_room_reads_the_item_again_once_there_is(small_fs: Path) -> None:
    """The move of an item the stage read finds the database full: the item stays where it was, and
    this process's next read hands it out again (it is not left claimed as in progress for good)."""
    db = small_fs / "q.db"
    queues = connect(darkroom.app, f"sqlite:///{db}?blobs=off")
    try:
        for id in ("a", "b"):
            await queues.Qin.push(id, darkroom.Photo(os.urandom(200_000)))
        develop = queues["develop"]
        id, photo = await develop.Qin.read()
        ballast = fill(small_fs, leave=50_000)
        with pytest.raises(StorageFull, match=rf"moving item '{id}' from queue 'input' to 'label': SQLite: "):
            await develop.Qout.push(id, darkroom.Print(darkroom.develop_bytes(photo.img)))
        source, target = queues.stage_queue("develop"), queues.stage_queue("label")
        assert sorted(await source.keys()) == ["a", "b"] and await target.keys() == []  # neither lost nor moved
        ballast.unlink()
        again, same = await asyncio.wait_for(develop.Qin.read(), 10)  # given back: read again (not left claimed)
        assert (again, same) == (id, photo)
        await develop.Qout.push(again, darkroom.Print(darkroom.develop_bytes(same.img)))
        assert await target.keys() == [id] and source.dead_letters() == []
    finally:
        queues.backend.close()


@pytest.mark.parametrize("full", ["blob store", "database"])
async def test_a_running_stage_waits_for_room_and_completes_its_items_once_there_is(
    small_fs: Path, tmp_path: Path, full: str
) -> None:
    """`pipeteer run`: a stage that finds the disk full waits (no attempt counted, no dead letter, no
    traceback) while the service goes on serving, and completes the items once the ballast is deleted.

    Blob store: the database is elsewhere; each output is a new 300 kB blob, which does not fit, and
    the other stage (writing no blob) goes on meanwhile. Database: the values are in the rows (50 kB
    each); every write of the stage needs more room than there is (a read's claim rewrites the row:
    the stage meets it there, or in writing its output; `test_a_stage_whose_output_finds_no_room_…`
    makes the output the one)."""
    if full == "blob store":
        where, url = small_fs / "blobs", f"sqlite:///{tmp_path / 'q.db'}?blobs={small_fs / 'blobs'}"
        size, leave = 300_000, 150_000
    else:
        where, url = small_fs / "q.db", f"sqlite:///{small_fs / 'q.db'}?blobs=off"
        size, leave = 50_000, 30_000
    images = {f"p{i}": os.urandom(size) for i in range(3)}
    queues = connect(darkroom.app, url)
    log = tmp_path / "run.log"
    service: subprocess.Popen[bytes] | None = None
    try:
        for id, img in images.items():
            await queues.Qin.push(id, darkroom.Photo(img))
        if full == "database":  # the WAL emptied, so that the stage's writes must grow it
            conn = sqlite3.connect(where)
            assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # (not busy)
            conn.close()
        ballast = fill(small_fs, leave=leave)
        port = free_port()
        with open(log, "wb") as out:
            service = subprocess.Popen(
                [sys.executable, "-m", "pipeteer", "run", "tests.apps.darkroom:app", "--backend", url,
                 "--port", str(port)],
                cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=out,
            )

        async def says_full() -> bool:
            assert service is not None and service.poll() is None, log.read_text()
            return f"no space left on {where} (" in log.read_text()

        await until(says_full, "the stage to meet the full disk")
        develop, label = queues.stage_queue("develop"), queues.stage_queue("label")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200  # the service serves meanwhile
        if full == "blob store":  # ... and so does the other stage
            for i in range(2):
                await label.push(f"s{i}", darkroom.Print(b"small print %d" % i))

            async def labelled() -> bool:
                return {"s0", "s1"} <= set(await queues.Qout.keys())

            await until(labelled, "the label stage to go on")
            assert await queues.Qout.read("s1") == darkroom.Label(13, b"small print 1")
        assert sorted(await develop.keys()) == sorted(images) and develop.dead_letters() == []

        ballast.unlink()

        async def all_done() -> bool:
            return set(images) <= set(await queues.Qout.keys())

        await until(all_done, "the stage to complete its items once there is room")
        for id, img in images.items():
            assert await queues.Qout.read(id) == darkroom.Label(len(img), darkroom.develop_bytes(img)[:16])
        assert await develop.keys() == [] and develop.dead_letters() == [] and label.dead_letters() == []
    finally:
        queues.backend.close()
        if service is not None:
            service.send_signal(signal.SIGTERM)
            assert service.wait(timeout=30) == 0
    text = log.read_text()
    assert "Traceback" not in text, text
    waits = [line for line in text.splitlines() if "waits for its backend: no space left on" in line]
    assert any("stage 'develop' waits" in w for w in waits)
    assert all(re.search(rf"no space left on {esc(where)} \(.*; {FREE} on {esc(small_fs)}\)", w) for w in waits)
    assert text.count("no space left on") == len(waits)  # said once per wait, by the service, nowhere else
    assert temp_files(small_fs) == []


# --- pull --------------------------------------------------------------------------------------


async def test_the_pull_command_filling_the_disk_leaves_no_truncated_file_and_a_rerun_completes_it(
    small_fs: Path, tmp_path: Path
) -> None:
    backend = f"sqlite:///{tmp_path / 'q.db'}"
    images = {f"p{i}": b"\x89PNG\r\n\x1a\n" + os.urandom(300_000 - 8) for i in range(8)}
    queues = connect(photos, backend)
    try:
        await queues.Qin.push_many((id, Photo(img)) for id, img in images.items())
        keep = queues["keep"]
        for _ in images:  # the stage, here: the outputs wait to be pulled
            id, photo = await keep.Qin.read()
            await keep.Qout.push(id, Stored(photo.img, len(photo.img)))
    finally:
        queues.backend.close()
    dest = small_fs / "out"
    pull = ("pull", APP, str(dest), "--backend", backend, "-q", "--concurrency", "2")
    ballast = fill(small_fs, leave=1_000_000)  # room for about three of the eight

    first = cli(*pull, cwd=tmp_path)
    assert first.returncode == 2 and "Traceback" not in first.stderr, first.stderr
    told = re.search(
        r"pipeteer pull: stopped after writing (\d+) output\(s\) into \S+ \((\d+) in manifest.jsonl\); "
        r"the others are still queued: run the same command again to go on",
        first.stderr,
    )
    assert told is not None and told[1] == told[2], first.stderr
    written = int(told[1])
    assert 0 < written < 8
    # an output's file, or the manifest naming outputs, whichever found no room
    assert re.search(rf"pipeteer: error: no space left on {esc(dest)}/\S+ \(.*; {FREE} on {esc(small_fs)}\)",
                     first.stderr), first.stderr
    assert temp_files(dest) == []
    files = [p for p in dest.iterdir() if p.name != "manifest.jsonl"]
    for p in files:  # every file under its name is whole: no truncated output
        assert p.read_bytes() == images[p.name.split(".")[0]], p
    assert sum(pulled(dest).values()) == written == len(set(pulled(dest)))

    ballast.unlink()
    second = cli(*pull, "--expect", "8", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert f"pulled {8 - written} output(s)" in second.stderr
    check_outputs(dest, images)  # each output once, whole
    assert temp_files(dest) == []
