"""A Kafka cluster nobody answers at: one clear error naming the bootstrap servers, librdkafka's
retries rate-limited through logging, /readyz 503 with the reason, pages 503 at once, commands exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.integration.test_sqlite_processes import ROOT
from tests.kafka_broker import free_port

APP = "topologies.perspective_correction:app"
EXPECTED = "cannot reach the Kafka brokers at 127.0.0.1:{port}"


def pipeteer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeteer", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_service_says_once_why_and_answers_503_with_the_reason() -> None:
    nobody, port = free_port(), free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeteer", "run", APP, "--backend", f"kafka://127.0.0.1:{nobody}", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        reasons: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # until the service knows the cluster is away
            assert proc.poll() is None, "the service exited"
            try:
                r = httpx.get(f"{base}/readyz", timeout=5)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            assert r.status_code == 503
            reasons = r.json()["reasons"]
            if reasons and all(EXPECTED.format(port=nobody) in x for x in reasons):
                break
            time.sleep(0.2)
        assert reasons and all(EXPECTED.format(port=nobody) in x and "firewall" in x for x in reasons), reasons
        # the people's pages and the console answer at once, with the reason, instead of hanging
        for path in ("/validation/", "/manual-correct/", "/console/api/stages"):
            page = httpx.get(base + path, timeout=5)
            assert page.status_code == 503, (path, page.text)
            assert EXPECTED.format(port=nobody) in page.json()["detail"]
            assert page.headers["retry-after"] == "5"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # alive: it waits for the cluster
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    minutes = (time.monotonic() - started) / 60
    lines = stderr.splitlines()
    said = [line for line in lines if EXPECTED.format(port=nobody) in line]
    assert len(said) == 1 and said[0].startswith("ERROR"), said  # said once, as an error
    assert not [line for line in lines if line.startswith("%")], "librdkafka wrote to stderr itself"
    assert not [line for line in lines if "Traceback" in line], stderr
    # every client message went through logging: each distinct one at most once a minute
    client = [line for line in lines if line.startswith(("ERROR pipeteer.kafka.client", "WARNING pipeteer.kafka.client"))]
    assert client and len(client) <= len(set(client)) * (1 + int(minutes)), client


def test_commands_exit_2_with_one_line() -> None:
    nobody = free_port()
    for args in (
        ("dlq", "list", APP, "--backend", f"kafka://127.0.0.1:{nobody}", "--stage", "validation"),
        ("topics", "plan", APP, "--bootstrap", f"127.0.0.1:{nobody}"),
        ("status", APP, "--backend", f"kafka://127.0.0.1:{nobody}"),  # a client exception of its own
    ):
        out = pipeteer(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stdout == ""
        [line] = out.stderr.splitlines()
        assert line.startswith("pipeteer: error: " + EXPECTED.format(port=nobody)), line
