"""Batch commands against real processes: `pipeteer push` / `run` / `pull` / `status` on a SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeteer import connect
from pipeteer.runtime.batch import default_ingest, expand_sources, item_id, outputs
from tests.apps.photos import Photo, Stored, app

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.photos:app"


def pipeteer(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    """A `pipeteer` process in the background, its stderr in a log file under `cwd`."""
    with open(cwd / f"{args[0]}-{time.monotonic_ns()}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeteer", *args],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def run(*args: str, cwd: Path) -> str:
    p = subprocess.run(
        [sys.executable, "-m", "pipeteer", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def make_photos(root: Path, n: int, size: int) -> dict[str, bytes]:
    """`n` distinct files of random bytes (`size` each, a PNG signature first); id -> content."""
    root.mkdir(parents=True)
    made = {}
    for i in range(n):
        data = b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8)
        path = root / f"photo {i:04d}.png"
        path.write_bytes(data)
        made[item_id(path, data)] = data
    return made


def pulled(dest: Path) -> Counter[str]:
    lines = (dest / "manifest.jsonl").read_text().splitlines()
    return Counter(json.loads(line)["id"] for line in lines)


def check_outputs(dest: Path, photos: dict[str, bytes]) -> None:
    ids = pulled(dest)
    assert set(ids) == set(photos) and max(ids.values()) == 1  # every output once
    for line in (dest / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        data = (dest / record["files"]["img"]).read_bytes()
        assert data == photos[record["id"]] and record["size"] == len(data)


def kill_when(p: subprocess.Popen[bytes], ready: callable, timeout: float = 120) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while not ready():
        assert p.poll() is None, f"{p.args} exited with {p.returncode}"
        assert time.monotonic() < deadline, "the process never got there"
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()


def test_sources_ids_and_default_ingest(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"1")
    (tmp_path / "a" / ".hidden").write_bytes(b"2")
    (tmp_path / "b.jpg").write_bytes(b"3")
    (tmp_path / "list").write_text(f"{tmp_path / 'b.jpg'}\n# a comment\n")
    found = expand_sources([str(tmp_path / "a"), str(tmp_path / "*.jpg"), f"@{tmp_path / 'list'}"])
    assert [p.name for p in found] == ["x.png", "b.jpg"]
    assert item_id(found[0], b"1") == item_id(found[0], b"1") != item_id(found[0], b"2")
    assert default_ingest(Photo)(found[0], b"1") == Photo(b"1")
    with pytest.raises(Exception, match="input state 'Stored' is not one bytes field: give the app an ingest"):
        default_ingest(Stored)
    with pytest.raises(Exception, match="'nothing-here' is no file, directory, pattern or @list"):
        expand_sources(["nothing-here"])


@pytest.mark.parametrize("link", [False, True], ids=["copies", "links"])
def test_push_run_pull_status_end_to_end(tmp_path: Path, link: bool) -> None:
    photos = make_photos(tmp_path / "in", 30, 100_000)
    backend = f"sqlite:///{tmp_path / 'q.db'}"
    extra = ["--link"] if link else []
    run("push", APP, str(tmp_path / "in"), "--backend", backend, "-q", *extra, cwd=tmp_path)
    run("push", APP, str(tmp_path / "in"), "--backend", backend, "-q", *extra, cwd=tmp_path)  # adds nothing twice
    status = run("status", APP, "--backend", backend, cwd=tmp_path)
    assert status.splitlines()[1].split()[:2] == ["keep", "30"]
    worker = pipeteer("run", APP, "--backend", backend, "--port", "0", cwd=tmp_path)
    try:
        run("pull", APP, str(tmp_path / "out"), "--backend", backend, "--expect", "30", "-q", *extra, cwd=tmp_path)
    finally:
        worker.terminate()
        worker.wait(30)
    check_outputs(tmp_path / "out", photos)
    # --link: the photo, its blob and its output are one file (three names of one inode); else copies
    for d in ("in", "out"):
        assert {p.stat().st_nlink for p in (tmp_path / d).glob("*.png")} == ({3} if link else {1})
    assert len(list((tmp_path / "q.blobs").rglob("*"))) > 30  # the images are beside the database
    assert os.path.getsize(tmp_path / "q.db") < 1 << 20  # not in it
    assert "(output)" in run("status", APP, "--backend", backend, cwd=tmp_path)


async def test_push_killed_then_rerun_pushes_each_photo_once(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "in", 120, 60_000)
    db = tmp_path / "q.db"
    ledger = tmp_path / ".pipeteer" / "pushed-photos.ids"
    push = pipeteer("push", APP, str(tmp_path / "in"), "--backend", f"sqlite:///{db}", "-q", cwd=tmp_path)
    kill_when(push, lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 40)
    assert len(ledger.read_text().splitlines()) < 120  # killed mid-batch
    run("push", APP, str(tmp_path / "in"), "--backend", f"sqlite:///{db}", "-q", cwd=tmp_path)
    queues = connect(app, f"sqlite:///{db}")
    stage = queues.stage_queue("keep")
    keys = await stage.keys()
    assert sorted(keys) == sorted(photos)  # each photo once, none missing
    for id in keys[:5]:
        assert (await stage.read(id)).img == photos[id]
    queues.backend.close()


def test_pull_killed_then_rerun_writes_each_output_once(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "in", 150, 60_000)
    backend = f"sqlite:///{tmp_path / 'q.db'}"
    run("push", APP, str(tmp_path / "in"), "--backend", backend, "-q", cwd=tmp_path)
    worker = pipeteer("run", APP, "--backend", backend, "--port", "0", cwd=tmp_path)
    try:
        dest = tmp_path / "out"
        pull = pipeteer("pull", APP, str(dest), "--backend", backend, "--follow", "--concurrency", "2", cwd=tmp_path)
        manifest = dest / "manifest.jsonl"
        kill_when(pull, lambda: manifest.exists() and manifest.read_text().count("\n") >= 30)
        assert sum(pulled(dest).values()) < 150
        run("pull", APP, str(dest), "--backend", backend, "--expect", "150", "-q", cwd=tmp_path)
    finally:
        worker.terminate()
        worker.wait(30)
    check_outputs(dest, photos)


async def test_push_many_and_outputs_from_python(tmp_path: Path) -> None:
    queues = connect(app, f"sqlite:///{tmp_path / 'q.db'}")
    images = {f"p{i}": os.urandom(50_000) for i in range(20)}
    assert await queues.Qin.push_many((id, Photo(img)) for id, img in images.items()) == 20
    stage = queues["keep"]
    for _ in range(20):
        id, photo = await stage.Qin.read()
        await stage.Qout.push(id, Stored(photo.img, len(photo.img)))
    got = {id: out.img async for id, out in outputs(queues.Qout, follow=False)}
    assert got == images and await queues.Qout.keys() == []
    queues.backend.close()
