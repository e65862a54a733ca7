"""The examples in the docstrings of the monitoring modules run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "pipeteer.compile.alerts",
    "pipeteer.compile.dashboard",
    "pipeteer.runtime.metrics",
    "pipeteer.queues.kafka.health",
    "pipeteer.errors",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
