"""The compiled Grafana dashboard queries only what a running stage really exports on /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pipeteer.compile import build_topology, dashboard
from pipeteer.compile.dashboard import METRICS, metric_names
from tests.integration.deploy.conftest import REPO
from tests.kafka_broker import free_port
from tests.unit.compile.sample_app import APP_REF, app

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_sample_names(text: str) -> tuple[set[str], set[str]]:
    """(sample names a scrape can return, stage label values seen) from a Prometheus exposition."""
    names: set[str] = set()
    stages: set[str] = set()
    for family in text_string_to_metric_families(text):
        # families declared without samples yet (e.g. lag before any partition is assigned) count too
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
        for sample in family.samples:
            names.add(sample.name)
            if "stage" in sample.labels:
                stages.add(sample.labels["stage"])
    return names, stages


def scrape(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "stage exited"
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            if r.status_code == 200 and "pipeteer_items_consumed_total" in r.text:
                return r.text
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"no /metrics on port {port}")


def test_dashboard_uses_only_exported_metrics() -> None:
    # memory://: the stages' metric families and their stage labels exist from start-up, whatever the backend
    backend = "memory://"
    topo = build_topology(app, app_ref=APP_REF)
    port = free_port()
    stages = [arg for s in topo.stages for arg in ("--stage", s.name)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeteer",
            "run",
            APP_REF,
            "--backend",
            backend,
            *stages,
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        text = scrape(port, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    exported, seen_stages = exported_sample_names(text)
    model = dashboard(topo)
    used = metric_names(model)
    assert used, "the dashboard queries no pipeteer metric"
    assert used <= exported, f"dashboard queries metrics no stage exports: {sorted(used - exported)}"
    # every metric family the dashboard knows is really exported, and the stage label matches the topology
    assert {f + ("_count" if k == "histogram" else "") for f, k in METRICS.items()} <= exported
    assert set(topo.stage_names()) <= seen_stages
    # the committed dashboard of the example too
    committed = json.loads(
        (
            REPO / "topologies" / "perspective_correction" / "compiled" / "grafana" / "dashboard.json"
        ).read_text()
    )
    assert metric_names(committed) and metric_names(committed) <= exported
