"""SQLite reads claim their item: tasks and processes of one stage split the work; a claim whose
owner stops renewing it (killed) runs out, and one whose owner closes is given up at once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from pipeteer.queues.sqlite import SqliteQueue, SqliteStore


def queue(db: Path, **options: float) -> SqliteQueue[int]:
    return SqliteQueue(int, path=db, table="jobs", **options)


async def test_concurrent_reads_hand_out_different_items(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    q, other = queue(db), queue(db)  # two tasks on one queue, and another queue object on the same table
    for i in range(4):
        await q.push(f"j{i}", i)
    got = await asyncio.gather(q.read(), q.read(), other.read())
    assert sorted(id for id, _ in got) == ["j0", "j1", "j2"]
    reader = asyncio.create_task(other.read())
    assert await asyncio.wait_for(reader, 5) == ("j3", 3)
    third = asyncio.create_task(q.read())  # every item is someone's: waits for a new one
    await asyncio.sleep(0.1)
    assert not third.done()
    await q.push("j4", 4)
    assert await asyncio.wait_for(third, 5) == ("j4", 4)
    SqliteStore.at(db).close()


async def test_a_claim_that_is_not_renewed_runs_out_and_the_item_is_read(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    q = queue(db)
    await q.push("orphan", 1)
    await q.push("next", 2)
    conn = sqlite3.connect(db)  # a process killed while it held "orphan": its claim is not renewed
    conn.execute(
        "UPDATE jobs SET claimed_by = 'killed', claimed_until = ? WHERE id = 'orphan'", (time.time() + 0.5,)
    )
    conn.commit()
    conn.close()
    assert await q.read() == ("next", 2)
    await q.pop("next")
    started = time.monotonic()
    assert await asyncio.wait_for(q.read(), 5) == ("orphan", 1)  # once the claim ran out, without a push
    assert 0.3 <= time.monotonic() - started < 3
    SqliteStore.at(db).close()


async def test_claims_are_renewed_while_the_process_lives_and_given_up_on_close(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    q = queue(db, claim_seconds=0.3)
    await q.push("slow", 1)
    assert await q.read() == ("slow", 1)
    await asyncio.sleep(0.8)  # longer than the claim: renewed every 0.1 s meanwhile

    def claim() -> tuple[str | None, float | None]:
        conn = sqlite3.connect(db)
        try:
            row: tuple[str | None, float | None] = conn.execute(
                "SELECT claimed_by, claimed_until FROM jobs"
            ).fetchone()
            return row
        finally:
            conn.close()

    owner, until = claim()
    assert owner is not None and until is not None and until > time.time()
    SqliteStore.at(db).close()  # the backend closes (SIGTERM): another process may read it at once
    assert claim() == (None, None)
    assert await asyncio.wait_for(queue(db).read(), 1) == ("slow", 1)
    SqliteStore.at(db).close()


async def test_claims_of_a_killed_process_of_this_host_are_freed_at_once(tmp_path: Path) -> None:
    """A stage restarted after kill -9 takes the items its previous process had claimed (ahead) at
    once, not when their 30 s leases run out; a live process's claims are left alone."""
    import socket
    import subprocess
    import sys

    db = tmp_path / "q.db"
    q = queue(db)  # the default lease: 30 s
    for id in ("gone1", "gone2", "alive"):
        await q.push(id, 1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # exited and reaped: its pid names no process
    host = socket.gethostname()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE jobs SET claimed_by = ?, claimed_until = ? WHERE id LIKE 'gone%'",
                 (f"{host}:{dead.pid}:0123456789ab", time.time() + 30))
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    conn.execute("UPDATE jobs SET claimed_by = ?, claimed_until = ? WHERE id = 'alive'",
                 (f"{host}:{alive.pid}:ba9876543210", time.time() + 30))
    conn.commit()
    conn.close()
    try:
        started = time.monotonic()
        assert await asyncio.wait_for(q.read(), 5) == ("gone1", 1)
        assert await asyncio.wait_for(q.read(), 5) == ("gone2", 1)
        assert time.monotonic() - started < 2
        waiting = asyncio.create_task(q.read())  # "alive" is its live owner's
        await asyncio.sleep(0.3)
        assert not waiting.done()
        waiting.cancel()
    finally:
        alive.kill()
        alive.wait()
    SqliteStore.at(db).close()
