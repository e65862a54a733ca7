"""The Kafka backend's blob store fills up under a running stage (`tests/integration/test_disk_full.py`
does the same on SQLite): the stage waits, without a traceback, an attempt counted or a dead letter,
and completes its items once there is room; every output exactly once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pipeteer.codec import codec_for
from pipeteer.queues.kafka import KafkaBackend
from pipeteer.spec import names
from tests.apps import darkroom
from tests.integration.kafka.procs import ROOT, backend_url, read_topic
from tests.integration.test_disk_full import FREE, esc, fill, small_fs, temp_files, whole_blobs  # noqa: F401 (a fixture)
from tests.kafka_broker import Broker, free_port


async def push_photos(url: str, images: dict[str, bytes]) -> None:
    backend = KafkaBackend.from_url(url, workflow_name=darkroom.workflow.name, env={})
    q = backend.make_queue(darkroom.Photo, ["input"])
    try:
        for id, img in images.items():
            await q.push(id, darkroom.Photo(img))
    finally:
        backend.close()


def test_a_kafka_stage_waits_for_room_in_its_blob_store_and_completes_its_items(
    small_fs: Path, tmp_path: Path, real_kafka: Broker, kafka_prefix: str  # noqa: F811 (the fixture imported above)
) -> None:
    blobs = small_fs / "blobs"
    url = backend_url(real_kafka, kafka_prefix, blobs=str(blobs))
    images = {f"p{i}": os.urandom(300_000) for i in range(3)}  # claim-checked: each output a new 300 kB blob
    asyncio.run(push_photos(url, images))
    ballast = fill(small_fs, leave=150_000)
    out_topic = names.queue_topic(darkroom.workflow.name, ["output"], kafka_prefix)
    dlq = names.dead_letter_topic(darkroom.workflow.name, ["develop"], kafka_prefix)
    log = tmp_path / "run.log"
    port = free_port()
    with open(log, "wb") as out:
        service = subprocess.Popen(
            [sys.executable, "-m", "pipeteer", "run", "tests.apps.darkroom:app", "--backend", url, "--port", str(port)],
            cwd=ROOT, env={**os.environ, "PIPETEER_INSTANCE": "darkroom-1"}, stdout=subprocess.DEVNULL, stderr=out,
        )
    try:
        deadline = time.monotonic() + 90
        while f"no space left on {blobs}" not in log.read_text():
            assert service.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200  # waiting, not stuck
        assert read_topic(real_kafka.bootstrap, out_topic) == []
        ballast.unlink()
        deadline = time.monotonic() + 90
        while len(read_topic(real_kafka.bootstrap, out_topic)) < len(images):
            assert service.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=60) == 0
    outputs = read_topic(real_kafka.bootstrap, out_topic)
    codec = codec_for(darkroom.Label)
    assert sorted(m.key().decode() for m in outputs) == sorted(images)  # each once
    for m in outputs:
        img = images[m.key().decode()]
        assert codec.decode(m.value()) == darkroom.Label(len(img), darkroom.develop_bytes(img)[:16])
    assert read_topic(real_kafka.bootstrap, dlq) == []
    text = log.read_text()
    assert "Traceback" not in text, text
    waits = [line for line in text.splitlines() if "waits for its backend: no space left on" in line]
    assert waits and all("stage 'develop' waits" in w for w in waits), text
    assert all(re.search(rf"no space left on {esc(blobs)} \(.*; {FREE} on {esc(small_fs)}\)", w) for w in waits)
    assert temp_files(small_fs) == [] and whole_blobs(blobs)
