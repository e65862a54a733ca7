"""docs/ARCHITECTURE.md draws the layers as the imports are: each row's imports column is read back
and compared with the graph `test_layers` reads from the code."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from tests.unit.test_layers import LAYERS, imports, layer_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


def drawn() -> dict[str, set[str]]:
    """Layer -> the layers its row says it imports (rank 0 aside), from the table's rows."""
    names = set().union(*LAYERS)
    rows: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].isdigit() or cells[0] == "0":
            continue
        layers = re.findall(r"`([^`]+)`", cells[1])
        assert len(layers) == 1, f"one layer per row of rank > 0: {line}"
        rows[layers[0]] = {t for t in re.findall(r"`([^`]+)`", cells[3]) if t in names}
    return rows


def real() -> dict[str, set[str]]:
    bottom = LAYERS[0]
    found: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports().items():
        for target in targets:
            a, b = layer_of(module), layer_of(target)
            if a != b and b not in bottom and a not in bottom:
                found[a].add(b)
    return dict(found)


def test_every_layer_above_rank_0_has_a_row() -> None:
    assert sorted(drawn()) == sorted(set().union(*LAYERS[1:]))


def test_each_row_draws_what_its_layer_imports() -> None:
    found = real()
    wrong = {layer: {"drawn": sorted(says), "imports": sorted(found.get(layer, set()))}
             for layer, says in drawn().items() if says != found.get(layer, set())}
    assert wrong == {}, "docs/ARCHITECTURE.md's table differs from the imports"
