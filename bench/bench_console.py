"""The review console's server time with many pending tasks, beside the floors it cannot beat.

    python bench/bench_console.py [--pending 10000] [--repeat 50]

A `pipeteer run` process (authentication on, SQLite) serves the example's human stages with
`--pending` tasks waiting in validation. Each console request is sent `--repeat` times over one
keep-alive connection; the table gives the median and p95 wall time per request and the server
process's CPU per request (from /proc, so client time is not counted), beside two baselines
measured in the same run: `/healthz` (the HTTP floor: routing, middleware, uvicorn) and the
queue's own `keys()` on the same SQLite file in this process (the storage floor of a listing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeteer import connect  # noqa: E402
from topologies.perspective_correction import app  # noqa: E402
from topologies.perspective_correction.states import AutoCorrected  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(20_000)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pid: int, repeat: int, call: Callable[[int], httpx.Response]) -> tuple[float, float, float]:
    """Median and p95 ms per request, and server CPU ms per request."""
    times = []
    cpu0 = cpu_seconds(pid)
    for i in range(repeat):
        t0 = time.perf_counter()
        r = call(i)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code >= 400:
            raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:200]}")
    cpu = (cpu_seconds(pid) - cpu0) * 1000 / repeat
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], cpu


async def fill(url: str, n: int) -> float:
    q = connect(app, url).stage("validation").Qin
    for i in range(n):
        await q.push(f"doc-{i:06d}", AutoCorrected(PNG, PNG))
    t0 = time.perf_counter()
    for _ in range(20):
        await q.keys()
    return (time.perf_counter() - t0) * 1000 / 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/q.db"
        keys_ms = asyncio.run(fill(url, args.pending))
        tokens = Path(tmp) / "tokens"
        tokens.write_text(f"bench:{TOKEN}\n")
        port = 18_000 + os.getpid() % 1000
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeteer", "run", "topologies.perspective_correction:app", "--backend", url,
             "--stage", "validation", "--stage", "manual-correct", "--port", str(port), "--undo-seconds", "0"],
            cwd=ROOT, env={**os.environ, "PIPETEER_AUTH_TOKEN_FILE": str(tokens)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise
                    time.sleep(0.05)
                stage = {"stage": "validation"}
                ids = [f"doc-{i:06d}" for i in range(args.pending)]
                rows: list[tuple[str, tuple[float, float, float]]] = [
                    ("GET /healthz (HTTP floor)", measure(proc.pid, args.repeat, lambda i: http.get("/healthz"))),
                    ("GET / (stage counts)", measure(proc.pid, args.repeat, lambda i: http.get("/"))),
                    ("GET /console/?stage= (page)", measure(proc.pid, args.repeat, lambda i: http.get("/console/", params=stage))),
                    ("GET tasks, first page", measure(proc.pid, args.repeat, lambda i: http.get("/console/api/tasks", params=stage))),
                    ("GET tasks, last page", measure(proc.pid, args.repeat, lambda i: http.get(
                        "/console/api/tasks", params={**stage, "offset": max(0, args.pending - 50)}))),
                    ("POST next (lease a task)", measure(proc.pid, args.repeat, lambda i: http.post(
                        "/console/api/next", params={**stage, "after": ids[i]}))),
                    ("GET task (its fields)", measure(proc.pid, args.repeat, lambda i: http.get(
                        "/console/api/task", params={**stage, "id": ids[-1 - i]}))),
                    ("GET field (a 20 KB image)", measure(proc.pid, args.repeat, lambda i: http.get(
                        "/console/api/field", params={**stage, "id": ids[-1 - i], "name": "corrected"}))),
                    ("POST decide (applied)", measure(proc.pid, args.repeat, lambda i: http.post(
                        "/console/api/decide", params={**stage, "id": ids[i]}, json={"value": i % 2 == 0}))),
                    ("GET /validation/ (the app's page)", measure(proc.pid, args.repeat, lambda i: http.get("/validation/"))),
                ]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    floor = rows[0][1][0]
    print(f"review console, {args.pending:,} pending tasks on SQLite, {args.repeat} requests each")
    print(f"storage floor: the queue's keys() in-process, {keys_ms:.2f} ms")
    print(f"{'request':38} {'median ms':>10} {'p95 ms':>8} {'server CPU ms':>14} {'× /healthz':>11}")
    for name, (median, p95, cpu) in rows:
        print(f"{name:38} {median:10.2f} {p95:8.2f} {cpu:14.2f} {median / floor:11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
