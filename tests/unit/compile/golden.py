"""Golden files: compare generated text with committed files; PIPETEER_REGENERATE=1 rewrites them."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path

REGENERATE = os.environ.get("PIPETEER_REGENERATE") == "1"


def check_golden(directory: Path, files: Mapping[str, str], *, exclusive: bool = True) -> None:
    """Fail with a unified diff if `directory` differs from `files` (or has extra files, when exclusive)."""
    if REGENERATE:
        for rel, text in files.items():
            (directory / rel).parent.mkdir(parents=True, exist_ok=True)
            (directory / rel).write_text(text)
    problems = []
    for rel, text in sorted(files.items()):
        path = directory / rel
        if not path.exists():
            problems.append(f"missing golden file {path}")
            continue
        old = path.read_text()
        if old != text:
            diff = difflib.unified_diff(
                old.splitlines(), text.splitlines(), f"{path} (committed)", "regenerated", lineterm=""
            )
            problems.append("\n".join(list(diff)[:80]))
    if exclusive and directory.exists():
        extra = sorted(
            str(p.relative_to(directory))
            for p in directory.rglob("*")
            if p.is_file() and str(p.relative_to(directory)) not in files
        )
        problems += [f"stale golden file {directory / rel} (no longer generated)" for rel in extra]
    assert not problems, (
        "generated output drifted (rerun with PIPETEER_REGENERATE=1 if intended):\n" + "\n".join(problems)
    )
