"""The README's snippets run as written, and its commands are what a user of its venv types."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from topologies.perspective_correction.demo import pipeteer_command

REPO = Path(__file__).resolve().parents[3]
README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, flags=re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCKS if lang == language]


def test_the_example_snippet_runs_as_written(tmp_path: Path) -> None:
    snippet = next(b for b in blocks("python") if "connect(app" in b)
    (tmp_path / "snippet.py").write_text(snippet)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    # the photo is waiting in the first stage's queue of the SQLite file the snippet named
    with sqlite3.connect(tmp_path / "queues.db") as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        tables = [t for t in tables if not t.startswith("_")]  # (pipeteer's own: the schemas table)
        found = [t for t in tables if db.execute(f'SELECT 1 FROM "{t}" WHERE id = ?', ("photo-1",)).fetchone()]
    assert len(found) == 1, tables


def test_shell_commands_use_the_readme_venv() -> None:
    lines = [line for b in blocks("sh") for line in b.splitlines()]
    bare = [line for line in lines if re.match(r"^(\S+=\S+ )*pipeteer ", line)]
    assert not bare, f"commands a user of the README's .venv cannot type as shown: {bare}"
    assert any(line.startswith(".venv/bin/pipeteer ") for line in lines)


@pytest.mark.parametrize("verb", ["describe", "schemas check"])
def test_read_only_commands_run_as_shown(verb: str) -> None:
    lines = [line for b in blocks("sh") for line in b.splitlines() if line.startswith(f".venv/bin/pipeteer {verb} ")]
    assert lines, verb
    command = lines[0].split("#")[0].replace(" [--mermaid]", "").split()
    script = Path(sys.executable).parent / "pipeteer"  # the venv running the tests is the README's .venv
    out = subprocess.run([str(script), *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_demo_tells_the_command_of_its_own_venv() -> None:
    command = pipeteer_command()
    script = Path(sys.executable).parent / "pipeteer"
    assert (Path.cwd() / command).samefile(script)
    if Path.cwd() == REPO and script.parent.parent == REPO / ".venv":
        assert command == ".venv/bin/pipeteer"
