"""The main job: the example workflow on the embedded SQLite backend, end to end, non-interactively.

Generated photos go in; the automatic stage corrects what it can; a simulated person
works the two web stages over real HTTP (approving corrections that match the page it
knows, clicking the true corners for the rest); the rectified pages come out.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import uvicorn

from pipeteer import connect
from pipeteer.runtime.service import StageService
from topologies.perspective_correction import app
from topologies.perspective_correction.samples import Sample, make_samples, similarity
from topologies.perspective_correction.states import Input

APPROVE_ABOVE = 0.5
"""The simulated reviewer approves a correction whose similarity to the true page exceeds this."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Reviewer:
    """A person at the two web pages, who happens to know the true page and corners of every photo."""

    def __init__(self, http: httpx.AsyncClient, samples: dict[str, Sample]) -> None:
        self.http, self.samples = http, samples
        self.actions: Counter[str] = Counter()
        self.path: dict[str, str] = {}

    async def work(self) -> int:
        done = 0
        for task in (await self.http.get("/validation/tasks")).raise_for_status().json():
            id = task["id"]
            image = (await self.http.get(f"/validation/tasks/{id}/image")).raise_for_status().content
            ok = similarity(image, self.samples[id].page) > APPROVE_ABOVE
            r = await self.http.post("/validation/validate", params={"id": id, "ok": ok})
            if r.status_code == 200:
                self.actions["approved" if ok else "rejected"] += 1
                self.path[id] = "auto-correct → validation: approved" if ok else "auto-correct → validation: rejected → manual-correct"
                done += 1
        for task in (await self.http.get("/manual-correct/tasks")).raise_for_status().json():
            id = task["id"]
            corners = [list(c) for c in self.samples[id].corners]
            r = await self.http.post("/manual-correct/correct", json={"id": id, "corners": corners})
            if r.status_code == 200:
                self.actions["corrected by hand"] += 1
                self.path.setdefault(id, "auto-correct: no document found → manual-correct")
                done += 1
        return done


async def run(items: int, workdir: Path, seed: int, timeout: float) -> int:
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "outputs").mkdir(parents=True)
    url = f"sqlite:///{workdir / 'queues.db'}"
    samples = {f"doc-{i:03d}": s for i, s in enumerate(make_samples(items, seed=seed))}

    port = _free_port()
    service = StageService(app, url)
    server = uvicorn.Server(uvicorn.Config(service.asgi, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    service.start()
    serving = asyncio.create_task(server.serve())
    queues = connect(app, url)
    t0 = time.perf_counter()
    print(f"pipeteer demo: {items} generated photos → {url}; stages at http://127.0.0.1:{port}/")
    for id, s in samples.items():
        await queues.Qin.push(id, Input(s.img))
    outputs: dict[str, bytes] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            while not server.started:
                await asyncio.sleep(0.01)
            reviewer = Reviewer(http, samples)
            while len(outputs) < items and time.perf_counter() - t0 < timeout:
                if not await reviewer.work():
                    await asyncio.sleep(0.05)
                outputs = {id: out.corrected async for id, out in queues.Qout.items()}
    finally:
        server.should_exit = True
        await serving
        await service.stop()
    elapsed = time.perf_counter() - t0

    for id, png in outputs.items():
        (workdir / "outputs" / f"{id}.png").write_bytes(png)
    scores = [similarity(png, samples[id].page) for id, png in outputs.items()]
    paths = Counter(reviewer.path.get(id, "?") for id in outputs)
    print(f"\n{len(outputs)}/{items} documents rectified in {elapsed:.1f}s ({len(outputs) / elapsed:.1f}/s)")
    for path, n in sorted(paths.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  {path}")
    if scores:
        print(f"similarity of the outputs to the true pages: mean {sum(scores) / len(scores):.2f}, min {min(scores):.2f}")
    print(f"outputs: {workdir / 'outputs'}/*.png   queues: {workdir / 'queues.db'}")
    print(f"run it yourself: {pipeteer_command()} run topologies.perspective_correction:app --backend {url}")
    return 0 if len(outputs) == items else 1


def pipeteer_command() -> str:
    """The `pipeteer` script of the Python running the demo, as typed from here (`.venv/bin/pipeteer`)."""
    script = Path(sys.executable).parent / "pipeteer"  # not resolved: a venv's python is a symlink
    if not script.exists():
        return "pipeteer"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topologies.perspective_correction", description=__doc__)
    parser.add_argument("--items", type=int, default=24, help="how many photos to generate (default 24)")
    parser.add_argument("--workdir", type=Path, default=Path("pipeteer-demo"), help="where the queues and outputs go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.items, args.workdir, args.seed, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
