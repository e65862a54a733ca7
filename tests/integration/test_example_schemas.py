"""The example topology's committed schemas are what the code derives today (golden test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_match_regenerated(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pipeteer", "schemas", "export", "topologies.perspective_correction:app", "-o", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    assert r.stdout.count("wrote ") == 4
    committed = {p.name: p.read_text() for p in (ROOT / "schemas").glob("*.avsc")}
    regenerated = {p.name: p.read_text() for p in tmp_path.glob("*.avsc")}
    assert regenerated == committed, "schemas drifted: run `pipeteer schemas export topologies.perspective_correction:app -o schemas`"


def test_schemas_check_flags_a_breaking_change(tmp_path: Path) -> None:
    for p in (ROOT / "schemas").glob("*.avsc"):
        (tmp_path / p.name).write_text(p.read_text())
    output = tmp_path / "topologies.perspective_correction.states.Output.avsc"
    # pretend the committed Output had a field the code no longer has, without a default
    output.write_text(output.read_text().replace('"fields": [', '"fields": [{"name": "reviewer", "type": "string"},', 1))
    r = subprocess.run(
        [sys.executable, "-m", "pipeteer", "schemas", "check", "topologies.perspective_correction:app",
         "--against", str(tmp_path), "--mode", "forward"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "reviewer" in r.stdout and "FAILED" in r.stdout
