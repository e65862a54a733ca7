"""`pipeteer blobs gc`: only blobs nothing references go, and never while a batch flows through them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipeteer import connect
from pipeteer.codec.claimcheck import keys_in, refs
from pipeteer.runtime.blobs import gc
from tests.apps.photos import Photo, Stored, app
from tests.integration.test_batch import APP, check_outputs, make_photos, pipeteer, run


def age(root: Path, seconds: float) -> None:
    then = time.time() - seconds
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (then, then))


async def test_gc_removes_only_unreferenced_blobs(tmp_path: Path) -> None:
    queues = connect(app, f"sqlite:///{tmp_path / 'q.db'}", env={})
    blobs = tmp_path / "q.blobs"
    images = [os.urandom(100_000) for _ in range(6)]
    await queues.Qin.push_many((f"p{i}", Photo(img)) for i, img in enumerate(images))
    stage = queues["keep"]
    moved = []
    for _ in range(4):  # four move on; two of those are pulled (popped from the output)
        id, photo = await stage.Qin.read()
        await stage.Qout.push(id, Stored(photo.img, len(photo.img)))
        moved.append(id)
    await queues.Qout.pop(moved[0])
    await queues.Qout.pop(moved[1])
    age(blobs, 7200)
    found = gc(queues, grace=3600)  # a dry run
    assert sorted(b.size for b in found.unreferenced) == [100_000, 100_000] and found.removed == 0
    assert len([p for p in blobs.rglob("*") if p.is_file()]) == 6  # nothing removed by a dry run
    done = gc(queues, grace=3600, delete=True)
    assert done.removed == 2 and done.removed_bytes == 200_000
    assert len([p for p in blobs.rglob("*") if p.is_file()]) == 4
    for id in moved[2:]:
        assert (await queues.Qout.read(id)).img == images[int(id[1:])]
    for id in {f"p{i}" for i in range(6)} - set(moved):
        assert (await queues.Qin.read(id)).img == images[int(id[1:])]
    # a blob written within the grace period is spared, referenced or not
    await queues.Qin.push("young", Photo(os.urandom(100_000)))
    await queues.Qin.pop("young")
    assert gc(queues, grace=3600, delete=True).removed == 0
    queues.backend.close()


async def test_dead_letters_keep_their_blobs(tmp_path: Path) -> None:
    queues = connect(app, f"sqlite:///{tmp_path / 'q.db'}", env={})
    await queues.Qin.push("bad", Photo(os.urandom(100_000)))
    q = queues.stage_queue("keep")
    q.retry = type(q.retry)(attempts=1)
    await q.read()
    q.fail(RuntimeError("stage failed"))
    assert [d.id for d in q.dead_letters()] == ["bad"]
    (key,) = [k for k, _ in refs(q.dead_letters()[0].value)]
    assert key in queues.backend.referenced_blob_keys()
    age(tmp_path / "q.blobs", 7200)
    assert gc(queues, grace=0, delete=True).removed == 0
    queues.backend.close()


async def test_memory_keeps_the_blobs_of_pending_items_and_dead_letters(tmp_path: Path) -> None:
    queues = connect(app, f"memory://?blobs={tmp_path / 'blobs'}", env={})
    for i in range(3):
        await queues.Qin.push(f"p{i}", Photo(os.urandom(100_000)))
    q = queues.stage_queue("keep")
    q.retry = type(q.retry)(attempts=1)
    await q.read()
    q.fail(RuntimeError("stage failed"))  # p0: a dead letter; p1, p2: pending
    await q.pop("p2")
    age(tmp_path / "blobs", 7200)
    done = gc(queues, grace=3600, delete=True)
    assert done.removed == 1 and len(done.referenced) == 2  # p2's blob went; p0's and p1's are kept
    assert [d.id for d in q.dead_letters()] == ["p0"] and (await q.read("p1")).img


def test_gc_while_a_batch_flows_never_removes_a_referenced_blob(tmp_path: Path) -> None:
    first = make_photos(tmp_path / "in", 80, 50_000)
    second = make_photos(tmp_path / "in2", 40, 50_000)
    backend = f"sqlite:///{tmp_path / 'q.db'}"
    run("push", APP, str(tmp_path / "in"), "--backend", backend, "-q", cwd=tmp_path)
    age(tmp_path / "q.blobs", 7200)  # old blobs: only their references keep them
    worker = pipeteer("run", APP, "--backend", backend, "--port", "0", cwd=tmp_path)
    pull = pipeteer("pull", APP, str(tmp_path / "out"), "--backend", backend, "--expect", "120", "-q", cwd=tmp_path)
    push = pipeteer("push", APP, str(tmp_path / "in2"), "--backend", backend, "-q", cwd=tmp_path)
    runs = removed = 0
    try:
        while pull.poll() is None:
            out = run("blobs", "gc", APP, "--backend", backend, "--delete", "--grace", "2", cwd=tmp_path)
            removed += int(out.split()[1])
            runs += 1
        assert pull.returncode == 0 and push.wait(60) == 0
    finally:
        for p in (worker, pull, push):
            if p.poll() is None:
                p.terminate()
                p.wait(30)
    check_outputs(tmp_path / "out", {**first, **second})  # every output whole: no blob went too early
    assert runs >= 2
    out = run("blobs", "gc", APP, "--backend", backend, "--grace", "0", cwd=tmp_path)
    assert out.startswith(f"{120 - removed} unreferenced blob(s)")  # the rest is garbage now, none referenced


def test_keys_are_found_in_raw_records() -> None:
    from pipeteer.codec import codec_for
    from pipeteer.codec.claimcheck import make_ref

    record = codec_for(Photo).encode(Photo(make_ref("cd" * 32, 5)))
    assert keys_in(record) == {"cd" * 32} and keys_in(b"plain") == set()
