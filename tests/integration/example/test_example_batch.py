"""The example workflow over a batch of generated photos, with blobs on (SQLite's default): `pipeteer push`,
`pipeteer run` and `pipeteer pull` as real processes, a simulated person at the two web pages."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import httpx

from pipeteer.runtime.batch import item_id
from tests.integration.test_batch import pipeteer, run
from tests.kafka_broker import free_port
from topologies.perspective_correction.demo import Reviewer
from topologies.perspective_correction.samples import Sample, make_samples

APP = "topologies.perspective_correction:app"
N = 120  # ~55 MB of photos


async def review_until(pull: subprocess.Popen[bytes], port: int, samples: dict[str, Sample], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        while not await _ready(http):
            assert time.monotonic() < deadline, "the service never got ready"
            await asyncio.sleep(0.1)
        reviewer = Reviewer(http, samples)
        while pull.poll() is None:
            assert time.monotonic() < deadline, "the batch did not get through"
            if not await reviewer.work():
                await asyncio.sleep(0.1)


async def _ready(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/readyz")).status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


def test_a_batch_of_photos_through_the_example(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    samples = {}
    originals = {}
    for i, s in enumerate(make_samples(N, seed=7)):
        path = tmp_path / "photos" / f"doc-{i:03d}.png"
        path.write_bytes(s.img)
        id = item_id(path, s.img)
        samples[id], originals[id] = s, s.img
    backend = f"sqlite:///{tmp_path / 'q.db'}"
    run("push", APP, str(tmp_path / "photos"), "--backend", backend, "-q", cwd=tmp_path)
    port = free_port()
    service = pipeteer("run", APP, "--backend", backend, "--port", str(port), cwd=tmp_path)
    pull = pipeteer("pull", APP, str(tmp_path / "out"), "--backend", backend, "--expect", str(N), "-q", cwd=tmp_path)
    try:
        asyncio.run(review_until(pull, port, samples))
        assert pull.wait() == 0
    finally:
        for p in (service, pull):
            if p.poll() is None:
                p.terminate()
                p.wait(30)
    records = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(originals)  # every output once
    for r in records:
        assert (tmp_path / "out" / r["files"]["img"]).read_bytes() == originals[r["id"]]  # the photo, unchanged
        assert (tmp_path / "out" / r["files"]["corrected"]).read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "q.db").stat().st_size < 1 << 20  # the photos were in the blob directory, not the database
