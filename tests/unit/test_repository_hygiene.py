"""What the README's recipes leave in a working copy is never committed by accident (git's own answer)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git working copy")
@pytest.mark.parametrize("path", ["tokens.txt", "queues.db", "queues.db-wal", "q.blobs/ab/cd", "queues.blobs/x"])
def test_secrets_databases_and_blobs_are_ignored(path: str) -> None:
    r = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT)
    assert r.returncode == 0, f"{path} is not ignored by .gitignore"
