"""The states an image passes through, as on the project page, and what the manual stage's person gives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pipeteer.annotate import Label, Points

CORNER_NAMES = ("top-left", "top-right", "bottom-right", "bottom-left")
Photo = Annotated[bytes, Label("Photo as taken")]
"""The photo field of every state; the label is what the review console calls it (the schema is `bytes`)."""


@dataclass
class Input:
    """A photo of a document, as taken (initial state, input to automatic correction)."""

    img: bytes


@dataclass
class AutoCorrected:
    """The automatic correction worked; a person checks it (input to validation)."""

    img: Photo
    corrected: Annotated[bytes, Label("Automatic correction", help="the page as the automatic stage rectified it")]


@dataclass
class ManualInput:
    """The automatic correction failed or was rejected; a person gives the corners."""

    img: Photo


@dataclass
class Corners:
    """What a person gives for a `ManualInput`: the page's four corners on its photo, in pixels.

    Not a state (it never waits in a queue): the manual stage's `post` turns it into the
    `Output`. Its annotations tell the review console to show the photo (`ManualInput.img`) and
    take four clicks, one per named corner.
    """

    corners: Annotated[
        list[tuple[float, float]],
        Points(4, on="img", labels=CORNER_NAMES),
        Label("The page's four corners", help="Click each corner of the page, in the order asked; drag one to fix it."),
    ]


@dataclass
class Output:
    """The rectified document (final state)."""

    img: bytes
    corrected: bytes
