"""A stage service stays responsive while a stage drains a SQLite backlog: /healthz and the console's listing.

    python bench/bench_liveness.py [--items 10000]

`pipeteer run tests.apps.review:app` (an automatic stage, `summarize`, and a human one, `review`)
on SQLite, in its own process. `--items` documents are pushed at once while the service runs;
during the drain, this process asks `/healthz` and `/console/api/stages` every 20 ms and
records each answer's time. Beside them, in the same run: the same requests with no backlog
(the floor), and the drain's own rate (items per second through `summarize`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeteer import connect  # noqa: E402
from tests.apps.review import Doc, app  # noqa: E402


def timed(http: httpx.Client, path: str) -> float:
    t0 = time.perf_counter()
    http.get(path).raise_for_status()
    return (time.perf_counter() - t0) * 1000


def summary(times: list[float]) -> str:
    times = sorted(times)
    return (f"median {statistics.median(times):7.2f}  p99 {times[max(0, int(len(times) * 0.99) - 1)]:7.2f}  "
            f"max {times[-1]:7.2f} ms  ({len(times)} requests)")


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/q.db"
        port = 19_000 + os.getpid() % 1000
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeteer", "run", "tests.apps.review:app", "--backend", url, "--port", str(port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        http.get("/healthz")
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                idle = {p: [timed(http, p) for _ in range(50)] for p in ("/healthz", "/console/api/stages")}

                async def push() -> None:
                    q = connect(app, url).Qin
                    for i in range(args.items):
                        await q.push(f"d{i:05d}", Doc(f"headline{i} body"))

                t0 = time.perf_counter()
                asyncio.run(push())
                pushed = time.perf_counter() - t0
                busy: dict[str, list[float]] = {"/healthz": [], "/console/api/stages": []}
                queues = connect(app, url)
                waiting = queues.stage_queue("summarize")
                while len(waiting):  # type: ignore[arg-type]
                    for p in busy:
                        busy[p].append(timed(http, p))
                    time.sleep(0.02)
                drained = time.perf_counter() - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(f"{args.items:,} items pushed in {pushed:.2f} s and drained through summarize {drained:.2f} s after the "
          f"first push ({args.items / drained:,.0f} items/s)")
    for p in busy:
        print(f"{p:22} idle: {summary(idle[p])}")
        print(f"{'':22} busy: {summary(busy[p])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
