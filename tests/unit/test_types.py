"""`conforms` / `checker`: what a queue accepts under a declared type (every push and move asks)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import pytest

from pipeteer.types import checker, conforms


@dataclass
class Base:
    n: int


@dataclass
class Child(Base):
    pass


CASES: list[tuple[Any, Any, bool]] = [
    (int, 3, True),
    (int, True, False),  # a bool is not an int state
    (int, 3.0, False),
    (float, 3, True),
    (float, 2.5, True),
    (float, False, False),
    (str, "x", True),
    (str, b"x", False),
    (bytes, b"x", True),
    (bytes, bytearray(b"x"), True),
    (bytes, memoryview(b"x"), True),
    (bytes, "x", False),
    (type(None), None, True),
    (None, 0, False),
    (Optional[int], None, True),  # noqa: UP045 (the spelling users write)
    (Optional[int], 1, True),  # noqa: UP045
    (Union[int, str], "a", True),  # noqa: UP007
    (int | str, 2.0, False),
    (Literal["a", "b"], "b", True),
    (Literal["a", "b"], "c", False),
    (list[int], [1, 2], True),
    (list[int], [1, "2"], False),  # checked deeply
    (list[int], (1, 2), False),
    (dict[str, int], {"a": 1}, True),
    (dict[str, int], {"a": "1"}, False),
    (dict[str, int], {1: 1}, False),
    (tuple[int, int], (1, 2), True),
    (tuple[int, int], [1, 2], False),
    (tuple[int, int], (1, "2"), False),
    (datetime.date, datetime.date(2026, 1, 1), True),
    (datetime.date, datetime.datetime(2026, 1, 1), False),
    (datetime.datetime, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), True),
    (datetime.datetime, datetime.datetime(2026, 1, 1), False),  # naive: the codec would refuse it
    (int, 2**63, False),  # beyond Avro's long
    (Base, Base("1"), False),  # fields are checked too
    (Base, Base(1), True),
    (Base, Child(1), True),  # subclasses are their base's states
    (Child, Base(1), False),
    (Any, object(), True),
]


@pytest.mark.parametrize(("tp", "value", "expected"), CASES)
def test_conforms(tp: Any, value: Any, expected: bool) -> None:
    assert conforms(value, tp) is expected
    assert checker(tp)(value) is expected


def test_a_checker_is_made_once_per_type() -> None:
    assert checker(list[int]) is checker(list[int])
    assert checker(Base) is checker(Base)


def test_an_unhashable_annotation_is_checked_without_the_cache() -> None:
    weird: Any = [int]  # not a type at all: nothing to check against
    assert conforms("anything", weird) is True
