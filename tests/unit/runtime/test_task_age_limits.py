"""How long a person's task may wait, declared on the App: validated when built, compiled into the topology."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeteer import App
from pipeteer.compile import build_topology
from pipeteer.errors import SpecError
from pipeteer.runtime.app import DEFAULT_TASK_AGE_LIMIT
from tests.unit.compile.sample_app import ARTIFACTS, workflow


def test_limits_reach_the_topology_with_a_default_of_a_day() -> None:
    app = App(workflow, ARTIFACTS, task_age_limits={"validation": timedelta(hours=2)})
    topo = build_topology(app)
    limits = {s.name: s.task_age_limit for s in topo.stages}
    assert limits == {"auto-correct": None, "validation": 7200.0, "manual-correct": DEFAULT_TASK_AGE_LIMIT}
    assert DEFAULT_TASK_AGE_LIMIT == 86400


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"nope": 60}, "task_age_limits names no stage 'nope'"),
        ({"auto-correct": 60}, "'auto-correct' is an automatic stage"),
        ({"validation": -5}, "task_age_limits['validation'] must be a positive number of seconds"),
        ({"validation": "1h"}, "got '1h'"),
    ],
)
def test_bad_limits_are_refused_naming_the_stage(limits: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match="invalid app of workflow") as e:
        App(workflow, ARTIFACTS, task_age_limits=limits)  # type: ignore[arg-type]
    assert message in str(e.value)
