"""The examples in the people's side's docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["pipeteer.runtime.security", "pipeteer.runtime.media", "pipeteer.runtime.console.desk", "pipeteer.runtime.console.forms"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
