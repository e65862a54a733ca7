"""bench/bench_console.py still runs: a smoke run of 200 tasks on SQLite (figures are not checked)."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.test_sqlite_processes import ROOT


def test_the_console_bench_runs() -> None:
    r = subprocess.run(
        [sys.executable, "bench/bench_console.py", "--quick", "--sizes", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    table = r.stdout.split("sqlite: server time", 1)[1]
    for request in ("GET /healthz", "GET / (index)", "GET tasks, first page", "GET tasks, middle page",
                    "POST next (lease a task)", "POST decide (a fresh task)"):
        assert request in table, r.stdout
    assert "server RSS MiB (loaded -> after the requests): 200: " in r.stdout
