"""Images on Kafka with the claim check: push / run / pull as real processes, small records, corrupt blobs, gc."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pipeteer import connect
from pipeteer.codec.claimcheck import refs
from pipeteer.spec import names
from tests.apps.photos import Photo, app
from tests.integration.kafka.procs import StageProcess, backend_url, read_topic
from tests.integration.test_batch import APP, check_outputs, make_photos, run
from tests.kafka_broker import Broker

TOPICS = ("input", "output")


def all_records(bootstrap: str, prefix: str) -> list[bytes]:
    topics = [names.queue_topic("photos", [t], prefix) for t in TOPICS]
    topics += [names.changelog_topic("photos", ["keep"], prefix), names.dead_letter_topic("photos", ["keep"], prefix)]
    return [m.value() or b"" for t in topics for m in read_topic(bootstrap, t, timeout=5)]


def run_and_pull(url: str, tmp_path: Path, expect: int) -> None:
    """Run the stage (its own process) until `pull` has written `expect` outputs in all."""
    stage = StageProcess(APP, "keep", url, "keep-1", tmp_path).start()
    try:
        stage.wait_ready()
        run("pull", APP, str(tmp_path / "out"), "--backend", url, "--expect", str(expect), "-q", cwd=tmp_path)
    finally:
        stage.stop()


def test_a_batch_of_images_flows_with_small_records_and_gc_spares_pending_ones(
    kafka_broker: Broker, kafka_prefix: str, tmp_path: Path
) -> None:
    photos = make_photos(tmp_path / "in", 40, 300_000)
    url = backend_url(kafka_broker, kafka_prefix, blobs=tmp_path / "blobs")
    run("push", APP, str(tmp_path / "in"), "--backend", url, "-q", cwd=tmp_path)
    status = run("status", APP, "--backend", url, cwd=tmp_path).splitlines()
    assert status[1].split()[:2] == ["keep", "40"]  # no stage has consumed them yet
    run_and_pull(url, tmp_path, 40)
    check_outputs(tmp_path / "out", photos)
    records = all_records(kafka_broker.bootstrap, kafka_prefix)
    assert len(records) >= 80 and max(len(r) for r in records) < 64 * 1024  # references, not images
    # one more, pending in the input while no stage runs: gc removes every blob but its own
    extra = make_photos(tmp_path / "in2", 1, 300_000)
    run("push", APP, str(tmp_path / "in2"), "--backend", url, "-q", cwd=tmp_path)
    out = run("blobs", "gc", APP, "--backend", url, "--delete", "--grace", "0", cwd=tmp_path)
    assert out.startswith("removed 40 blob(s)"), out
    run_and_pull(url, tmp_path, 41)
    check_outputs(tmp_path / "out", {**photos, **extra})


def test_a_corrupt_blob_sends_the_item_to_dead_letters_naming_id_field_and_key(
    kafka_broker: Broker, kafka_prefix: str, tmp_path: Path
) -> None:
    url = backend_url(kafka_broker, kafka_prefix, retries=0, blobs=tmp_path / "blobs")

    async def push() -> str:
        queues = connect(app, url)
        try:
            bad = Photo(os.urandom(200_000))
            await queues.Qin.push_many([("bad", bad), ("good", Photo(os.urandom(200_000)))])
            light = queues.Qin.claim.dehydrate(bad)  # type: ignore[attr-defined]  # (already stored: no write)
            ((key, _),) = refs(light)
            return key
        finally:
            await asyncio.to_thread(queues.backend.close)

    key = asyncio.run(push())
    blob = tmp_path / "blobs" / key[:2] / key
    blob.write_bytes(b"not the image")
    stage = StageProcess(APP, "keep", url, "keep-1", tmp_path).start()
    dlq = names.dead_letter_topic("photos", ["keep"], kafka_prefix)
    out = names.queue_topic("photos", ["output"], kafka_prefix)
    try:
        stage.wait_ready()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (read_topic(kafka_broker.bootstrap, dlq, 2) and read_topic(kafka_broker.bootstrap, out, 2)):
            time.sleep(0.3)
    finally:
        stage.stop()
    (dead,) = read_topic(kafka_broker.bootstrap, dlq)
    headers = {k: v.decode() for k, v in dead.headers()}
    assert dead.key() == b"bad" and headers["pipeteer.error.class"] == "pipeteer.errors.BlobError"
    message = headers["pipeteer.error.message"]
    assert "item 'bad'" in message and "field 'img'" in message and key in message and "corrupt" in message
    assert [m.key() for m in read_topic(kafka_broker.bootstrap, out)] == [b"good"]
