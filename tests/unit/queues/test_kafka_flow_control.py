"""Flow control of a Kafka stage engine (`queues/kafka/flow.py`, pure): a full pending table stops the
input without dropping the client's prefetched records (no pause), and pauses the partitions only
when it stays full; bytes bound it as items do."""

from __future__ import annotations

from pipeteer.queues.kafka.flow import BATCH, HOLD, FlowControl, Intake, batch_size


def test_a_table_drained_within_the_hold_never_pauses() -> None:
    flow = FlowControl(max_pending=4, max_pending_bytes=1 << 20)
    assert flow.intake(4, 4, now=0.0) == Intake(consume=False, pause=None)  # full: the prefetch kept
    assert flow.intake(2, 2, now=0.5) == Intake(consume=False, pause=None)  # not below half yet
    assert flow.intake(1, 1, now=0.9) == Intake(consume=True, pause=None)
    assert not flow.holding


def test_a_table_full_past_the_hold_pauses_then_resumes_at_half() -> None:
    flow = FlowControl(max_pending=4, max_pending_bytes=1 << 20)
    assert flow.intake(4, 4, now=0.0).consume is False
    assert flow.intake(4, 4, now=HOLD) == Intake(consume=True, pause=True)  # consume serves the group
    assert flow.intake(4, 4, now=HOLD + 1) == Intake(consume=True, pause=None)  # paused already
    assert flow.intake(1, 1, now=HOLD + 2) == Intake(consume=True, pause=False)
    assert not flow.holding


def test_bytes_stop_the_input_as_items_do() -> None:
    flow = FlowControl(max_pending=10_000, max_pending_bytes=1000)
    assert flow.intake(3, 1000, now=0.0).consume is False
    assert flow.intake(2, 600, now=0.1).consume is False  # above half of the bytes
    assert flow.intake(2, 400, now=0.2).consume is True


def test_a_pause_is_applied_again_after_an_assignment() -> None:
    """The client keeps a partition's pause across a revoke and re-assign: the decision is repeated."""
    flow = FlowControl(max_pending=4, max_pending_bytes=1 << 20)
    assert flow.intake(0, 0, now=0.0, reassigned=True) == Intake(consume=True, pause=False)
    flow.intake(4, 4, now=1.0)
    assert flow.intake(4, 4, now=1.0 + HOLD, reassigned=True).pause is True
    assert flow.intake(4, 4, now=2.0 + HOLD, reassigned=True).pause is True


def test_a_batch_takes_what_is_left_of_both_budgets() -> None:
    assert batch_size(0, 0, 10_000, 64 << 20) == BATCH
    assert batch_size(9_990, 9_990, 10_000, 64 << 20) == 10
    assert batch_size(10, 100_000, 10_000, 150_000) == 5  # 10 KB records, 50 KB of room
    assert batch_size(10, 200_000, 10_000, 150_000) == 1  # over: one, which flow control keeps out
