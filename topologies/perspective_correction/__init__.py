"""The project page's example, made real: perspective correction of document photos.

    pipeteer run topologies.perspective_correction:app          # all stages, web pages at /validation/ ...
    python -m topologies.perspective_correction                 # the demo: generated photos, a simulated person
"""

from datetime import timedelta

from pipeteer import App
from topologies.perspective_correction.auto import automatic_correction
from topologies.perspective_correction.web import manual_api, validation_api
from topologies.perspective_correction.workflow import workflow

app = App(
    workflow,
    {
        "auto-correct": automatic_correction,
        "validation": validation_api,
        "manual-correct": manual_api,
    },
    # a photo should not wait for a person longer than this (alert PipeteerHumanTaskTooOld)
    task_age_limits={"validation": timedelta(hours=4), "manual-correct": timedelta(hours=8)},
)

__all__ = ["app", "workflow"]
