"""The example's real automatic path (OpenCV perspective correction) under pipeteer, beside a plain loop.

    python bench/bench_autocorrect.py [--count 200] [--repeat 3]

Both variants correct the same generated photos with the same function
(`imaging.correct_perspective`):

- **loop**: a plain Python loop in this process, reading each photo from a file and writing the
  result to a file (what a user would write without pipeteer);
- **pipeteer**: the example's `auto-correct` stage as users run it, `pipeteer run APP --stage
  auto-correct` in its own process on SQLite, with every photo pushed before it starts; timed from
  its first output to its last (steady state: start-up and imports are left out and reported apart).

The figures: images per second, the ratio (target ≥ 0.8), and CPU seconds per image of the process
doing the work (the loop's own CPU; the stage process's CPU from /proc). Variants take turns for
`--repeat` rounds; the table gives medians.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeteer import connect  # noqa: E402
from topologies.perspective_correction import app  # noqa: E402
from topologies.perspective_correction.imaging import correct_perspective  # noqa: E402
from topologies.perspective_correction.samples import make_samples  # noqa: E402
from topologies.perspective_correction.states import Input  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop(files: list[Path], out: Path) -> tuple[float, float]:
    cpu0, t0 = time.process_time(), time.perf_counter()
    for f in files:
        result = correct_perspective(f.read_bytes())
        if result is not None:
            (out / f.name).write_bytes(result)
    elapsed = time.perf_counter() - t0
    return len(files) / elapsed, (time.process_time() - cpu0) / len(files)


async def watch(url: str, pid: int, total: int) -> tuple[float, float, int, float]:
    """Poll the two downstream queues' counts (SQL COUNT, cheap) until every photo is through:
    (time of the first output, the stage's CPU then, how many were out then, time of the last)."""
    queues = connect(app, url)
    counted = [queues.stage_queue("validation"), queues.stage_queue("manual-correct")]
    first = last = 0.0
    first_n, cpu_first, seen = 0, 0.0, 0
    deadline = time.monotonic() + 600
    while seen < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the stage finished {seen} of {total} photos")
        n = sum(len(q) for q in counted)  # type: ignore[arg-type]  # SqliteQueue counts in SQL
        now = time.perf_counter()
        if n and not first:
            first, cpu_first, first_n = now, cpu_seconds(pid), n
        if n > seen:
            seen, last = n, now
        await asyncio.sleep(0.01)
    return first, cpu_first, first_n, last


def pipeteer(files: list[Path], work: Path) -> tuple[float, float, float]:
    url = f"sqlite:///{work / 'q.db'}"

    async def push() -> None:
        q = connect(app, url).Qin
        for f in files:
            await q.push(f.stem, Input(f.read_bytes()))

    asyncio.run(push())
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeteer", "run", "topologies.perspective_correction:app", "--backend", url,
         "--stage", "auto-correct", "--port", "0"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        first, cpu_first, first_n, last = asyncio.run(watch(url, proc.pid, len(files)))
        cpu = cpu_seconds(proc.pid) - cpu_first
        done = len(files) - first_n
        return done / (last - first), cpu / max(done, 1), first - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        files = []
        for i, s in enumerate(make_samples(args.count, seed=11)):
            f = photos / f"photo-{i:04d}.png"
            f.write_bytes(s.img)
            files.append(f)
        size = sum(f.stat().st_size for f in files) / len(files) / 1024
        rows: dict[str, list[tuple[float, ...]]] = {"loop": [], "pipeteer": []}
        for r in range(args.repeat):
            out = Path(tmp) / f"loop-{r}"
            out.mkdir()
            rows["loop"].append(loop(files, out))
            work = Path(tmp) / f"run-{r}"
            work.mkdir()
            rows["pipeteer"].append(pipeteer(files, work))
    med = {k: [statistics.median(x[i] for x in v) for i in range(len(v[0]))] for k, v in rows.items()}
    print(f"auto-correct of {args.count} generated photos (~{size:.0f} KiB PNG), medians of {args.repeat} rounds")
    print(f"{'variant':10} {'images/s':>9} {'CPU s/image':>12} {'× loop':>7}")
    for k in ("loop", "pipeteer"):
        print(f"{k:10} {med[k][0]:9.1f} {med[k][1]:12.4f} {med[k][0] / med['loop'][0]:7.2f}")
    print(f"pipeteer start-up (process start to first output): {med['pipeteer'][2]:.2f} s")
    print("rounds (images/s):", {k: [round(x[0], 1) for x in v] for k, v in rows.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
