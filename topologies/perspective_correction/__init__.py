"""The project page's example, made real: perspective correction of document photos.

    pipeteer run topologies.perspective_correction:app          # all stages, web pages at /validation/ ...
    python -m topologies.perspective_correction                 # the demo: generated photos, a simulated person
"""

from datetime import timedelta

from pipeteer import App
from topologies.perspective_correction.auto import automatic_correction
from topologies.perspective_correction.web import manual_api, manual_preview, validation_api
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
    # the console shows the rectified page before the person submits their four corners
    previews={"manual-correct": manual_preview},
    guidelines={
        "validation": (
            "Approve if the right image is the whole page, upright and flat, with nothing of the "
            "background left. Reject if a part of the page is cut off, the page is skewed or "
            "upside down, or it is not the document at all: you will then click its corners."
        ),
        "manual-correct": (
            "Click the page's four corners in the order asked: top-left, top-right, bottom-right, "
            "bottom-left, as the document reads. Drag a corner to fix it; z undoes the last. "
            "Check the preview is the whole page, straight, before you submit."
        ),
    },
    # why a correction is rejected: picked with 1-4 in the console, counted in the metrics
    reasons={"validation": ("page cut off", "skewed or upside down", "background left", "not the document")},
)

__all__ = ["app", "workflow"]
