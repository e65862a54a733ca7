"""The states an image passes through, as on the project page."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Input:
    """A photo of a document, as taken (initial state, input to automatic correction)."""

    img: bytes


@dataclass
class AutoCorrected:
    """The automatic correction worked; a person checks it (input to validation)."""

    img: bytes
    corrected: bytes


@dataclass
class ManualInput:
    """The automatic correction failed or was rejected; a person gives the corners."""

    img: bytes


@dataclass
class Output:
    """The rectified document (final state)."""

    img: bytes
    corrected: bytes
