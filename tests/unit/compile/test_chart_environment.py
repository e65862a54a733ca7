"""Every `PIPETEER_*` variable the Helm chart sets is one `pipeteer.settings` declares (so something
reads it): read from the chart's templates, no Helm needed. The stage a pod runs is its command's
`--stage` (compiled values), not a variable."""

from __future__ import annotations

import re
from pathlib import Path

from pipeteer import settings
from pipeteer.compile import build_topology
from pipeteer.compile.manifests import helm_values
from tests.unit.compile.sample_app import APP_REF, app

CHART = Path(__file__).resolve().parents[3] / "helm" / "pipeteer"
TEMPLATES = sorted(p for p in (CHART / "templates").iterdir() if p.is_file())

# the ways a template sets a variable: a container's `env` entry, a ConfigMap key, a printf'd name
_SET = (
    re.compile(r"^\s*-\s*name:\s*[\"']?(PIPETEER_\w+)", re.M),
    re.compile(r"^\s*[\"']?(PIPETEER_\w+)[\"']?\s*:", re.M),
    re.compile(r"printf\s+\"(PIPETEER_\w*)%s\""),
)
_ANY = re.compile(r"PIPETEER_\w*")


def declared(name: str) -> bool:
    """Whether `pipeteer.settings` declares `name` (`PIPETEER_KAFKA_<PROPERTY>` covers every client property)."""
    names = {v.name for v in vars(settings).values() if isinstance(v, settings.Variable)}
    return name in names or name.startswith(settings.KAFKA_PROPERTY_PREFIX)


def set_by_chart() -> dict[str, set[str]]:
    """Each variable name the templates set, with the templates setting it (`PIPETEER_KAFKA_` for a printf'd one)."""
    found: dict[str, set[str]] = {}
    for path in TEMPLATES:
        text = path.read_text()
        for pattern in _SET:
            for name in pattern.findall(text):
                found.setdefault(name, set()).add(path.name)
    return found


def test_every_variable_the_chart_sets_is_declared() -> None:
    found = set_by_chart()
    # the collection sees what the chart sets (a pattern that stopped matching would pass vacuously)
    assert {"PIPETEER_BACKEND", "PIPETEER_INSTANCE", "PIPETEER_TOPIC_PROFILE", "PIPETEER_KAFKA_"} <= set(found)
    undeclared = {name: sorted(where) for name, where in found.items() if not declared(name)}
    assert not undeclared, f"set by the chart, read by nothing (declare them in pipeteer/settings.py): {undeclared}"
    # and no variable is named in a template in some other way this test does not see
    mentioned = {name for path in TEMPLATES for name in _ANY.findall(path.read_text())}
    assert mentioned <= set(found), sorted(mentioned - set(found))


def test_every_variable_the_chart_documents_is_declared() -> None:
    named = {
        name
        for path in sorted(CHART.rglob("*"))
        if path.is_file() and path.suffix in (".md", ".yaml", ".txt", ".tpl", ".json")
        for name in _ANY.findall(path.read_text())
    }
    assert "PIPETEER_BACKEND" in named
    assert not {n for n in named if not declared(n)}, sorted(named)


def test_a_pod_runs_the_stage_its_command_names() -> None:
    assert "PIPETEER_STAGE" not in set_by_chart()
    for name, stage in helm_values(build_topology(app, app_ref=APP_REF))["stages"].items():
        assert stage["command"][stage["command"].index("--stage") + 1] == name
