"""Golden test: the example topology's committed schemas/ match what `pipeteer schemas export` gives now.

Regenerate with `pipeteer schemas export topologies.perspective_correction:app -o schemas/`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeteer.codec import export_schemas

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "schemas"


def _example_state_types() -> list[type]:
    example = pytest.importorskip(
        "topologies.perspective_correction", reason="the example topology is not there yet"
    )
    workflow = getattr(example, "workflow", None) or example.app.workflow
    return list(workflow.state_types())


def test_committed_schemas_match_a_fresh_export(tmp_path: Path) -> None:
    types = _example_state_types()
    fresh = export_schemas(types, tmp_path)
    committed = {p.name for p in COMMITTED.glob("*.avsc")}
    assert committed == {p.name for p in fresh}, (
        "schemas/ lists other states than the workflow has: re-export"
    )
    for path in fresh:
        assert (COMMITTED / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"schemas/{path.name} differs from the current types: re-export (and check compatibility first)"
        )
