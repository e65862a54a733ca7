"""Shipping version 2 while version 1 runs, on the embedded SQLite backend: every stage its own process
sharing one database file, each replaced in turn mid-stream (and rolled back), while items are pushed
and a person decides tasks over HTTP. Nothing is lost, duplicated, dead-lettered or held at the end, and
each stage is without a ready process only while its new process starts.

An incompatible version (3) is refused before it serves anything."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.rollout import STAGES, Pusher, Rollout, assert_version_3_refused, rolled, wait_for

pytestmark = pytest.mark.slow

N = 1000
ROOT = Path(__file__).resolve().parents[2]


def outputs(url: str) -> dict[str, Any]:
    """The workflow's finished items, read by this (version 1) process: rows of both versions."""
    from pipeteer import connect
    from tests.apps.rollout import app

    async def read() -> dict[str, Any]:
        queues = connect(app, url)
        try:
            return dict(await queues.Qout.items())
        finally:
            queues.backend.close()

    return asyncio.run(read())


def leftovers(url: str) -> dict[str, tuple[int, int, int]]:
    """Per stage: items still pending, dead letters, items held."""
    from pipeteer import connect
    from tests.apps.rollout import app

    queues = connect(app, url)
    try:
        out = {}
        for s in STAGES:
            q = queues.stage_queue(s)
            asyncio.run(_list(q))  # (a listing meets every row: any unreadable one would be held)
            out[s] = (len(q), len(q.dead_letters()), len(q.held()))
        return out
    finally:
        queues.backend.close()


async def _list(q: Any) -> list[Any]:
    items: list[Any] = await q.items()
    return items


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill9"])
def test_a_rolling_upgrade_and_rollback_lose_nothing(tmp_path: Path, kill: bool) -> None:
    url = f"sqlite:///{tmp_path / 'queues.db'}"
    with rolled(url, tmp_path, N, kill=kill, finished=lambda: len(outputs(url))) as (rollout, person):
        pass
    out = outputs(url)
    assert sorted(out) == sorted(f"item-{i}" for i in range(N))  # each once: a table is keyed by id
    assert all(o.total == 2 * int(id.split("-")[1]) and o.ok for id, o in out.items())
    assert leftovers(url) == dict.fromkeys(STAGES, (0, 0, 0))
    assert person.refused == []
    assert set(person.decided.values()) == {1, 2}  # tasks decided by both versions
    steps = [(s.stage, s.old, s.new, round(s.unready, 1)) for s in rollout.steps]
    print(f"\nSQLite rollout ({'kill -9' if kill else 'SIGTERM'}): stage, from, to, seconds without a ready process: {steps}")
    # a stage is without a process only while its new one starts (a Python process importing FastAPI)
    assert max(s.unready for s in rollout.steps) < 20, steps


def test_an_incompatible_version_is_refused_before_it_serves(tmp_path: Path) -> None:
    """Version 3 (`Mid.n` int -> str) cannot read what version 1 wrote, nor version 1 what it would
    write: its stages refuse to start, naming the state and the schemas, and nothing is touched."""
    url = f"sqlite:///{tmp_path / 'queues.db'}"
    rollout = Rollout(url, tmp_path)
    pusher = Pusher(url, 20, rate=1000)
    try:
        rollout.start_all(1)
        pusher.run()
        wait_for(lambda: leftovers(url)["h"][0] == 20, 60, "tasks in h")
        assert_version_3_refused(url)
        assert leftovers(url)["h"] == (20, 0, 0)  # the tasks are where they were, readable
        # what a release pipeline runs first: the new version against the running one's published schemas
        for version, code, said in (("2", 0, "full compatible"), ("3", 1, "FAILED")):
            check = subprocess.run(
                [sys.executable, "-m", "pipeteer", "schemas", "check", "tests.apps.rollout:app", "--against", url,
                 "--mode", "full"],
                cwd=ROOT, env={**os.environ, "ROLLOUT_VERSION": version}, capture_output=True, text=True, timeout=120,
            )
            assert check.returncode == code and said in check.stdout, (version, check.stdout, check.stderr)
    finally:
        rollout.stop_all()
