"""The examples in the docstrings of the example's modules run and give what they show."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from topologies.perspective_correction import imaging, samples


@pytest.mark.parametrize("module", [imaging, samples], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module.__name__}"


def test_similarity_rejects_bytes_that_are_not_an_image() -> None:
    page = samples.make_sample(0).page
    with pytest.raises(ValueError, match="similarity"):
        samples.similarity(page, b"garbage")
    with pytest.raises(ValueError, match="similarity"):
        samples.similarity(b"", page)
