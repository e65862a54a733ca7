"""The ledger of decisions (`pipeteer.queues.ledger`), the same checks on both implementations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeteer.queues.backends import backend_from_url
from pipeteer.queues.ledger import Decided, Ledger, MemoryLedger
from pipeteer.queues.sqlite import SqliteStore
from pipeteer.queues.sqlite import review as ledger_module
from pipeteer.queues.sqlite.review import RETAIN_SECONDS, SqliteLedger


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "memory":
        yield MemoryLedger()
    else:
        yield SqliteLedger(str(tmp_path / "queues.db"))
        SqliteStore.at(tmp_path / "queues.db").close()


def decided(i: int, stage: str = "validation", reviewer: str = "alice", at: float | None = None) -> Decided:
    return Decided(stage, f"t{i}", reviewer, "approved" if i % 2 else "rejected",
                   100.0 + i if at is None else at, None if i % 3 == 0 else i / 4, "blurry" if i % 5 == 0 else None)


def test_between_recent_count(ledger: Ledger) -> None:
    entries = [decided(i, stage="validation" if i % 2 else "review", reviewer="alice" if i < 6 else "bob")
               for i in range(10)]
    for entry in entries:
        ledger.record(entry)
    assert ledger.between(0.0, 1000.0) == entries  # oldest first, every field kept
    assert ledger.between(102.0, 105.0) == entries[2:5]  # start included, end excluded
    assert ledger.between(0.0, 1000.0, stage="review") == entries[0::2]
    assert ledger.between(200.0, 300.0) == []
    assert ledger.recent("alice") == entries[5::-1]  # newest first
    assert ledger.recent("alice", limit=2) == [entries[5], entries[4]]
    assert ledger.recent("alice", stage="review") == [entries[4], entries[2], entries[0]]
    assert ledger.recent("carol") == [] and ledger.recent("alice", limit=0) == []
    assert ledger.count("validation", 0.0, 1000.0) == 5 and ledger.count("validation", 101.0, 103.0) == 1
    assert ledger.count("nope", 0.0, 1000.0) == 0


def test_decisions_of_one_instant_keep_their_order(ledger: Ledger) -> None:
    entries = [decided(i, at=500.0) for i in range(4)]
    for entry in entries:
        ledger.record(entry)
    assert ledger.between(500.0, 501.0) == entries and ledger.recent("alice") == entries[::-1]


def test_threads_record_together(ledger: Ledger) -> None:
    def work(n: int) -> None:
        for i in range(50):
            ledger.record(decided(i, reviewer=f"r{n}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.count("validation", 0.0, 1000.0) == 200 and ledger.count("review", 0.0, 1000.0) == 0
    assert len(ledger.between(0.0, 1000.0)) == 200 and len(ledger.recent("r3", limit=100)) == 50


def test_memory_ledger_keeps_the_last_entries() -> None:
    ledger = MemoryLedger(capacity=3)
    for i in range(5):
        ledger.record(decided(i))
    assert [d.id for d in ledger.between(0.0, 1000.0)] == ["t2", "t3", "t4"]


def test_sqlite_ledger_forgets_decisions_past_30_days_now_and_then(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "queues.db")
    ledger = SqliteLedger(path)
    ledger.record(decided(1, at=1000.0))
    ledger.record(decided(2, at=1000.0 + RETAIN_SECONDS + 1))  # within the hour: nothing deleted yet
    assert ledger.count("validation", 0.0, 1e12) == 2
    monkeypatch.setattr(ledger_module, "PRUNE_SECONDS", 0.0)
    ledger.record(decided(3, at=1000.0 + RETAIN_SECONDS + 2))
    assert [d.id for d in SqliteLedger(path).between(0.0, 1e12)] == ["t2", "t3"]  # in the file
    SqliteStore.at(path).close()


def test_each_backend_gives_one_ledger(tmp_path: Path) -> None:
    memory = backend_from_url("memory://", workflow_name="wf", env={})
    assert isinstance(memory.ledger(), MemoryLedger) and memory.ledger() is memory.ledger()
    sqlite = backend_from_url(f"sqlite:///{tmp_path / 'q.db'}", workflow_name="wf", env={})
    assert isinstance(sqlite.ledger(), SqliteLedger) and sqlite.ledger() is sqlite.ledger()
    sqlite.ledger().record(decided(1))
    other = backend_from_url(f"sqlite:///{tmp_path / 'q.db'}", workflow_name="wf", env={})
    assert other.ledger().recent("alice") == [decided(1)]  # the file's, not the object's
    sqlite.close()
