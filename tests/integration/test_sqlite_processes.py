"""Several processes on one SQLite file, and kill -9 in the middle of a stream."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeteer import connect
from tests.apps.chain import Raw, Result, app
from tests.apps.shared import Done, Job
from tests.apps.shared import app as shared_app

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(
    db: Path, *stages: str, env: dict[str, str] | None = None, app: str = "tests.apps.chain:app", options: str = ""
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "pipeteer", "run", app, "--backend", f"sqlite:///{db}{options}"]
    args += ["--port", str(free_port())]
    for s in stages:
        args += ["--stage", s]
    return subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def audit(db: Path, tables: list[str]) -> None:
    """Count every write of an id into each table, so a duplicate shows even though queues are keyed by id."""
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE IF NOT EXISTS audit (tbl TEXT, id TEXT)")
    for t in tables:
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{t}" (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, value BLOB NOT NULL)'
        )
        for event in ("INSERT", "UPDATE OF value"):  # (not the claims a read writes in the row)
            conn.execute(
                f'CREATE TRIGGER IF NOT EXISTS "audit_{t}_{event.split()[0]}" AFTER {event} ON "{t}" '
                f"BEGIN INSERT INTO audit VALUES ('{t}', NEW.id); END"
            )
    conn.commit()
    conn.close()


def count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
    finally:
        conn.close()


@pytest.mark.slow
async def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "queues.db"
    tables = ["input", "negate", "sum", "output"]
    audit(db, tables)
    qs = connect(app, f"sqlite:///{db}")
    n = 2000
    for i in range(n):
        await qs.Qin.push(f"item-{i}", Raw(i))
    kills = 0
    worker = start_worker(db, env={"CHAIN_SLOW_SECONDS": "0.001"})
    try:
        deadline = time.monotonic() + 240
        for threshold in (300, 900, 1500):
            while count(db, "output") < threshold and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
            kills += 1
            worker = start_worker(db, env={"CHAIN_SLOW_SECONDS": "0.001"})
        while count(db, "output") < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert kills == 3
    outputs = dict(await qs.Qout.items())
    assert len(outputs) == n
    assert outputs == {f"item-{i}": Result(i, i) for i in range(n)}  # n + n² - n² = n
    conn = sqlite3.connect(db)
    dupes = conn.execute("SELECT tbl, id, COUNT(*) c FROM audit GROUP BY tbl, id HAVING c > 1").fetchall()
    writes = dict(conn.execute("SELECT tbl, COUNT(*) FROM audit GROUP BY tbl").fetchall())
    conn.close()
    assert dupes == []
    assert writes == {t: n for t in tables}
    for stage in ("square", "negate", "sum"):
        assert await qs.stage(stage).Qin.keys() == []


async def test_processes_share_one_file(tmp_path: Path) -> None:
    db = tmp_path / "queues.db"
    qs = connect(app, f"sqlite:///{db}")
    await qs.Qin.push("warm-up", Raw(-1))  # creates the tables
    squarer = start_worker(db, "square")
    rest = start_worker(db, "negate", "sum")
    try:
        for i in range(20):
            await qs.Qin.push(f"x{i}", Raw(i))
            out = qs.Qout.filter(lambda r, i=i: r.n == i)  # type: ignore[misc]
            assert await asyncio.wait_for(out.read(), 30) == (f"x{i}", Result(i, i))
    finally:
        for p in (squarer, rest):
            p.send_signal(signal.SIGTERM)
        for p in (squarer, rest):
            assert p.wait(timeout=30) == 0  # clean shutdown on SIGTERM


SHARED = "tests.apps.shared:app"


async def shared_run(
    db: Path, n: int, *, kill_one_at: int | None = None
) -> tuple[dict[str, Done], dict[int, int], int]:
    """Two processes of the one stage of `tests.apps.shared` on one file with `n` items (claims last
    2 s): its outputs, how many each process did, and how many times an item was started on again.
    `kill_one_at`: kill -9 one after that many outputs."""
    audit(db, ["input", "output"])
    logs = db.parent / "started"
    logs.mkdir()
    qs = connect(shared_app, f"sqlite:///{db}")
    await qs.Qin.push_many((f"job-{i}", Job(i)) for i in range(n))
    env = {"SHARED_LOG_DIR": str(logs)}
    workers = [start_worker(db, app=SHARED, options="?claim_seconds=2", env=env) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        if kill_one_at is not None:
            while count(db, "output") < kill_one_at and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait()
        while count(db, "output") < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
    outputs = dict(await qs.Qout.items())
    shares: dict[int, int] = {}
    for done in outputs.values():
        shares[done.pid] = shares.get(done.pid, 0) + 1
    conn = sqlite3.connect(db)
    dupes = conn.execute("SELECT tbl, id, COUNT(*) c FROM audit GROUP BY tbl, id HAVING c > 1").fetchall()
    conn.close()
    assert dupes == []  # every item written once to each table: no output twice
    assert await qs.Qin.keys() == []
    qs.backend.close()
    started = [line for log in logs.iterdir() for line in log.read_text().splitlines()]
    return outputs, shares, len(started) - len(set(started))


async def test_two_processes_of_one_stage_split_the_work(tmp_path: Path) -> None:
    n = 2000
    outputs, shares, again = await shared_run(tmp_path / "queues.db", n)
    assert {id: d.n for id, d in outputs.items()} == {f"job-{i}": i for i in range(n)}
    assert len(shares) == 2 and min(shares.values()) >= n // 4, shares  # each a substantial share
    assert again == 0  # and no item was worked on by both: capacity, not contention


@pytest.mark.slow
async def test_kill_9_of_one_of_two_processes_the_other_finishes_every_item_once(tmp_path: Path) -> None:
    n = 2000
    outputs, shares, again = await shared_run(tmp_path / "queues.db", n, kill_one_at=500)
    assert {id: d.n for id, d in outputs.items()} == {f"job-{i}": i for i in range(n)}
    assert len(shares) == 2 and max(shares.values()) >= n // 2, shares  # the survivor did the rest
    assert again <= 1  # at most the item the killed process was working on, started on again after its claim ran out


async def test_a_file_from_before_claims_opens_and_its_items_are_read(tmp_path: Path) -> None:
    """A database written by the previous version (no `at`, no claim columns) opens: the columns are added."""
    db = tmp_path / "queues.db"
    conn = sqlite3.connect(db)
    conn.execute(
        'CREATE TABLE "input" (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, value BLOB NOT NULL)'
    )
    conn.commit()
    conn.close()
    qs = connect(shared_app, f"sqlite:///{db}")
    await qs.Qin.push("old", Job(1))
    assert await qs["work"].Qin.read() == ("old", Job(1))
    conn = sqlite3.connect(db)
    columns = [row[1] for row in conn.execute('PRAGMA table_info("input")')]
    claimed = conn.execute('SELECT claimed_by IS NOT NULL, claimed_until > 0 FROM "input"').fetchall()
    conn.close()
    assert columns == ["seq", "id", "value", "at", "claimed_by", "claimed_until"] and claimed == [(1, 1)]
    qs.backend.close()
