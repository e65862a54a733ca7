"""The examples in the codec's docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["codec", "schema", "files", "model", "framing", "registry", "compat", "__init__"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module("pipeteer.codec" if name == "__init__" else f"pipeteer.codec.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
