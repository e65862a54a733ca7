"""Golden tests of everything `pipeteer compile` writes for the sample app."""

from __future__ import annotations

from pathlib import Path

from pipeteer.compile import build_topology, describe_text, mermaid, render
from tests.unit.compile.golden import check_golden
from tests.unit.compile.sample_app import APP_REF, app

GOLDEN = Path(__file__).parent / "golden" / "sample"


def test_describe_and_mermaid_are_stable() -> None:
    topo = build_topology(app, app_ref=APP_REF)
    assert describe_text(topo) == describe_text(build_topology(app, app_ref=APP_REF))
    check_golden(
        GOLDEN.parent, {"sample.txt": describe_text(topo), "sample.mmd": mermaid(topo)}, exclusive=False
    )


def test_compiled_files_match_golden() -> None:
    check_golden(GOLDEN, render(build_topology(app, app_ref=APP_REF)))
