"""Items/s through a three-stage automatic workflow on SQLite, beside a hand-written sqlite3 loop;
then items/s of one stage run by 1 and by 2 `pipeteer run` processes on one file.

    python bench/bench_sqlite.py [--items 5000] [--shared-items 2000]

Both variants run in their own subprocess (so peak RSS is their own), on a fresh file in
WAL mode with synchronous=NORMAL, one transaction per item per stage. The baseline does
the same work by hand: select the oldest row, decode it (json), compute, then delete it
from one table and insert the next state into the next, in one transaction. Target:
pipeteer at least 0.5x the baseline.

The second figure is a stage that waits 2 ms per item (a call to another service, say: little
CPU), `tests.apps.shared`, run by one process and then by two on one file: reads claim their
item, so the second process adds capacity (ideally 2x), not contention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeteer.queues.sqlite.store import POLL_SECONDS  # noqa: E402

POLL_MS = int(POLL_SECONDS * 1000)


def run_pipeteer(db: str, n: int) -> float:
    from pipeteer import connect
    from tests.apps.chain import Raw, app

    async def main() -> float:
        qs = connect(app, f"sqlite:///{db}")
        for i in range(n):
            await qs.Qin.push(f"item-{i}", Raw(i))
        out = qs.Qout.queue if hasattr(qs.Qout, "queue") else qs.Qout
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(app.artifact(qs, s)) for s in app.stages()]
        while len(out) < n:  # type: ignore[arg-type]
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
        for t in tasks:
            t.cancel()
        return elapsed

    return asyncio.run(main())


def run_baseline(db: str, n: int) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    tables = ["input", "negate", "sum", "output"]
    for t in tables:
        conn.execute(f'CREATE TABLE "{t}" (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, value BLOB)')
    for i in range(n):
        conn.execute('INSERT INTO "input" (id, value) VALUES (?, ?)', (f"item-{i}", json.dumps({"n": i})))

    def step(src: str, dst: str, f: object) -> bool:
        row = conn.execute(f'SELECT id, value FROM "{src}" ORDER BY seq LIMIT 1').fetchone()
        if row is None:
            return False
        value = f(json.loads(row[1]))  # type: ignore[operator]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f'DELETE FROM "{src}" WHERE id = ?', (row[0],))
        conn.execute(f'INSERT INTO "{dst}" (id, value) VALUES (?, ?)', (row[0], json.dumps(value)))
        conn.execute("COMMIT")
        return True

    t0 = time.perf_counter()
    stages = [
        ("input", "negate", lambda v: {"n": v["n"], "sq": v["n"] * v["n"]}),
        ("negate", "sum", lambda v: {**v, "neg": -v["sq"]}),
        ("sum", "output", lambda v: {"n": v["n"], "total": v["n"] + v["sq"] + v["neg"]}),
    ]
    busy = True
    while busy:  # round-robin, like three stages sharing one event loop
        busy = False
        for src, dst, f in stages:
            busy = step(src, dst, f) or busy
    return time.perf_counter() - t0


def child(variant: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "queues.db")
        elapsed = (run_pipeteer if variant == "pipeteer" else run_baseline)(db, n)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"variant": variant, "seconds": elapsed, "items_per_s": n / elapsed, "peak_rss_mb": rss_mb}))


def cross_process_latency(samples: int = 50) -> list[float]:
    """Seconds from a push in this process to the item's output, through a `pipeteer run` worker
    of the three stages in another process (three hops: here -> worker -> worker -> here)."""
    import signal
    import socket

    from pipeteer import connect
    from tests.apps.chain import Raw, app

    async def measure(db: str) -> list[float]:
        qs = connect(app, f"sqlite:///{db}")
        await qs.Qin.push("warm-up", Raw(-1))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipeteer", "run", "tests.apps.chain:app", "--backend", f"sqlite:///{db}",
             "--port", str(port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            await asyncio.wait_for(qs.Qout.read(), 60)
            out: list[float] = []
            for i in range(samples):
                t0 = time.perf_counter()
                await qs.Qin.push(f"x{i}", Raw(i))
                while not await qs.Qout.has(f"x{i}"):
                    await asyncio.sleep(0.001)
                out.append(time.perf_counter() - t0)
            return out
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait()

    with tempfile.TemporaryDirectory() as d:
        return asyncio.run(measure(os.path.join(d, "queues.db")))


def shared_stage(n: int, processes: int) -> float:
    """Items/s of `processes` `pipeteer run` processes of the one stage of `tests.apps.shared` on one
    file with `n` items waiting: from the moment every worker serves to the last output."""
    import signal
    import socket

    import httpx

    from pipeteer import connect
    from tests.apps.shared import Job, app

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    async def measure(db: str) -> float:
        qs = connect(app, f"sqlite:///{db}")
        await qs.Qin.push_many((f"job-{i}", Job(i)) for i in range(n))
        out = qs.Qout.queue if hasattr(qs.Qout, "queue") else qs.Qout
        ports = [free_port() for _ in range(processes)]
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "pipeteer", "run", "tests.apps.shared:app", "--backend", f"sqlite:///{db}",
                 "--port", str(port)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for port in ports
        ]
        try:
            async with httpx.AsyncClient() as client:
                for port in ports:  # every worker's stage started
                    while True:
                        try:
                            if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        await asyncio.sleep(0.05)
            t0, done = time.perf_counter(), len(out)  # type: ignore[arg-type]
            while len(out) < n:  # type: ignore[arg-type]
                await asyncio.sleep(0.005)
            return (n - done) / (time.perf_counter() - t0)
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait()
            qs.backend.close()

    with tempfile.TemporaryDirectory() as d:
        return asyncio.run(measure(os.path.join(d, "queues.db")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--shared-items", type=int, default=2000)
    parser.add_argument("--child", choices=["pipeteer", "baseline"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.items)
        return
    results = {}
    for variant in ("baseline", "pipeteer"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", variant, "--items", str(args.items)],
            check=True, capture_output=True, text=True, cwd=ROOT,
        ).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    base = results["baseline"]["items_per_s"]
    print(f"three automatic stages on SQLite, {args.items} items, one transaction per item per stage")
    print(f"{'variant':<12}{'items/s':>12}{'peak RSS MB':>14}{'ratio':>8}")
    for variant in ("baseline", "pipeteer"):
        r = results[variant]
        print(f"{variant:<12}{r['items_per_s']:>12.0f}{r['peak_rss_mb']:>14.1f}{r['items_per_s'] / base:>8.2f}")
    lat = sorted(cross_process_latency())
    print(
        "\ncross-process latency, a push here -> its output, through a worker process running the 3 stages: "
        f"median {lat[len(lat) // 2] * 1000:.0f} ms, p90 {lat[int(len(lat) * 0.9)] * 1000:.0f} ms "
        f"(other processes poll every {POLL_MS} ms; in-process hops wake at once)"
    )
    from tests.apps.shared import WAIT_SECONDS

    print(
        f"\none stage waiting {WAIT_SECONDS * 1000:.0f} ms per item (I/O-ish), {args.shared_items} items, "
        "`pipeteer run` processes of it on one SQLite file"
    )
    print(f"{'processes':<12}{'items/s':>12}{'ratio':>8}")
    one = shared_stage(args.shared_items, 1)
    for processes in (1, 2):
        rate = one if processes == 1 else shared_stage(args.shared_items, processes)
        print(f"{processes:<12}{rate:>12.0f}{rate / one:>8.2f}")


if __name__ == "__main__":
    main()
