"""When a Kafka stage puts off a due commit (`pipeteer.queues.kafka.pace`): only when the stage
will have finished what it has before a commit begun now would end, judged from its measured pace."""

from __future__ import annotations

import pytest

from pipeteer.queues.kafka.pace import LONGEST, WINDOW, Pace


def paced(rate: float, commit: float) -> Pace:
    """A pace that saw the stage finish `rate` items per second and commits take `commit` seconds."""
    pace = Pace()
    pace.finished(0.0, 0, busy=True)
    pace.finished(1.0, int(rate), busy=True)
    pace.committed(commit)
    return pace


def test_the_rate_is_measured_over_busy_windows_only() -> None:
    pace = Pace()
    pace.finished(0.0, 0, busy=True)
    pace.finished(WINDOW / 2, 5, busy=True)  # shorter than a window: not a sample yet
    assert pace.rate == 0.0
    pace.finished(WINDOW, 5, busy=True)  # 10 items in one window
    assert pace.rate == 10 / WINDOW
    pace.finished(10.0, 1, busy=False)  # idle: says nothing about speed
    pace.finished(20.0, 0, busy=True)  # (a new window begins)
    pace.finished(20.0 + 2 * WINDOW, 30, busy=True)
    assert pace.rate == pytest.approx((10 / WINDOW + 30 / (2 * WINDOW)) / 2)  # a moving average of the two


def test_a_commit_is_put_off_only_for_less_work_than_a_commit_takes() -> None:
    pace = paced(rate=10_000, commit=0.05)  # 10,000 items/s, commits of 50 ms
    assert pace.expected_commit() == 0.05
    assert pace.finishing_first(300)  # 30 ms of work: done before the commit would be
    assert not pace.finishing_first(600)  # 60 ms of work: commit now
    assert not pace.finishing_first(0)  # nothing left: the engine commits at once


def test_the_slowest_recent_commit_is_expected_and_the_wait_is_bounded() -> None:
    pace = paced(rate=1_000, commit=0.01)
    for took in (0.2, 0.01, 0.01):
        pace.committed(took)
    assert pace.expected_commit() == 0.2
    assert pace.finishing_first(150)  # 150 ms < the slowest recent commit
    pace.committed(5.0)  # a commit that took 5 s (a broker away) does not put one off for 5 s
    assert not pace.finishing_first(int(LONGEST * 1_000) + 1)


def test_nothing_is_put_off_before_the_pace_is_known() -> None:
    pace = Pace()
    pace.committed(0.05)
    assert not pace.finishing_first(1)  # no rate measured yet
    assert not paced(rate=1_000, commit=0.0).finishing_first(1)  # (no commit slower than nothing)
