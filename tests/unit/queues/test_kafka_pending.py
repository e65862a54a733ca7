"""The pending table's commit planning: what each commit writes to the changelog and which offsets it commits."""

from __future__ import annotations

from pipeteer.queues.kafka.pending import Entry, PendingTable, Record

CL = "wf.stage.s.pending"


def entry(id: str, offset: int, partition: int = 0) -> Entry:
    return Entry(id, f"v{id}", f"raw{id}".encode(), partition, offset, 0.0)


def out(id: str) -> Record:
    return Record("next", id, b"x", source=0)


def changelog(plan_records: list[Record]) -> list[tuple[str, bytes | None]]:
    return [(r.key, r.value) for r in plan_records if r.topic == CL]


def test_in_order_stage_writes_nothing_to_the_changelog() -> None:
    t = PendingTable(CL)
    t.assign(0, [])
    for i in range(5):
        t.add(entry(f"i{i}", i))
    t.finish("i0", [out("i0")])
    t.finish("i1", [out("i1")])
    plan = t.plan_commit()
    # the unfinished i2..i4 are the trailing run: left uncommitted rather than logged
    assert changelog(plan.records) == []
    assert plan.offsets == {0: 2}
    assert [r.key for r in plan.records] == ["i0", "i1"]
    assert plan.finished == 2


def test_out_of_order_finish_logs_the_pending_items_below_it_once() -> None:
    t = PendingTable(CL)
    t.assign(0, [])
    for i in range(5):
        t.add(entry(f"i{i}", 10 + i))
    t.finish("i3", [out("i3")])
    plan = t.plan_commit()
    assert changelog(plan.records) == [("i0", b"rawi0"), ("i1", b"rawi1"), ("i2", b"rawi2")]
    assert plan.offsets == {0: 14}  # i4 (offset 14) stays uncommitted and unlogged
    assert [e.id for e in t] == ["i0", "i1", "i2", "i4"]
    # finishing a logged item tombstones it; nothing is logged twice
    t.finish("i1", [out("i1")])
    plan = t.plan_commit()
    assert changelog(plan.records) == [("i1", None)]
    assert plan.offsets == {}
    assert not t.plan_commit()


def test_restored_items_are_served_and_tombstoned_when_finished() -> None:
    t = PendingTable(CL)
    t.assign(2, [entry("a", 3, 2), entry("b", 5, 2)])
    assert [e.id for e in t] == ["a", "b"]
    assert t.first_ready(0.0) is not None and t.first_ready(0.0).id == "a"  # type: ignore[union-attr]
    t.add(entry("c", 9, 2))
    t.finish("b", [Record("next", "b", b"x", source=2)])
    plan = t.plan_commit()
    assert changelog(plan.records) == [("b", None)]
    assert plan.offsets == {2: 9}  # c (offset 9) is the trailing run: committed up to, not past, it


def test_replacing_a_pending_item_keeps_one_entry() -> None:
    t = PendingTable(CL)
    t.assign(0, [])
    t.add(entry("x", 0))
    t.add(Entry("x", "new", b"new", 0, 1, 0.0))
    assert [(e.id, e.value) for e in t] == [("x", "new")]
    t.finish("x", [out("x")])
    assert t.plan_commit().offsets == {0: 2}


def test_dropping_a_partition_forgets_its_items_and_unsent_outputs() -> None:
    t = PendingTable(CL)
    t.assign(0, [])
    t.assign(1, [])
    t.add(entry("a", 0, 0))
    t.add(entry("b", 0, 1))
    t.finish("a", [Record("next", "a", b"x", source=0)])
    dropped = t.drop([0])
    assert dropped == [] and [e.id for e in t] == ["b"]
    assert t.take_outputs() == []


def test_undecodable_records_count_as_finished_with_their_dead_letter() -> None:
    t = PendingTable(CL)
    t.assign(0, [])
    t.add(entry("a", 0))
    t.consumed_done(0, 1, [Record("dlq", "bad", b"??", source=0)])
    t.finish("a", [out("a")])
    plan = t.plan_commit()
    assert plan.offsets == {0: 2}
    assert {r.topic for r in plan.records} == {"next", "dlq"}


def test_retry_backoff_skips_items_until_due() -> None:
    t = PendingTable(CL)
    t.assign(0, [])
    t.add(entry("a", 0))
    t.add(entry("b", 1))
    t.entries["a"].not_before = 10.0
    first = t.first_ready(5.0)
    assert first is not None and first.id == "b"
    again = t.first_ready(11.0)
    assert again is not None and again.id == "a"


def test_pending_bytes_follow_the_items_held() -> None:
    t = PendingTable(CL)
    t.assign(0, [entry("r", 0)])
    t.assign(1, [])
    t.add_many([entry("a", 1), entry("b", 2), entry("a", 3), entry("c", 0, partition=1)])
    assert t.bytes == len(b"rawr") + len(b"rawa") + len(b"rawb") + len(b"rawc")  # the replaced 'a' counts once
    t.finish("b", [out("b")])
    assert t.bytes == 12
    t.drop([1])
    assert t.bytes == 8
    t.clear()
    assert t.bytes == 0


def test_page_and_count_walk_the_table_in_arrival_order() -> None:
    t = PendingTable(CL)
    t.assign(0, [])
    t.add_many(Entry(f"t{i}" + ("x7" if i % 3 == 0 else ""), None, b"", 0, i, 100.0 + i) for i in range(20))
    listed = [(e.id, e.consumed_at) for e in t]
    assert t.count() == 20 and t.page() == listed and t.page(5, 3) == listed[5:8] and t.page(19, 5) == listed[19:]
    x7 = [pair for pair in listed if "x7" in pair[0]]
    assert t.count(match="x7") == 7 and t.page(1, 2, match="x7") == x7[1:3]
    assert t.count(older_than=10, now=115.0) == 6 and t.page(4, 10, older_than=10, now=115.0) == listed[4:6]
    assert t.count(match="x7", older_than=10, now=115.0) == 2
    t.finish("t1", [])
    assert t.count() == 19 and t.page(0, 2) == [listed[0], listed[2]]


def test_items_restored_older_than_those_consumed_are_put_first() -> None:
    t = PendingTable(CL)
    t.assign(0, [])
    t.add_many([Entry("new", None, b"", 0, 1, 50.0)])
    t.assign(1, [Entry("old", None, b"", 1, 3, 10.0), Entry("mid", None, b"", 1, 4, 30.0)])
    assert t.page() == [("old", 10.0), ("mid", 30.0), ("new", 50.0)]
    assert t.first_ready(0.0) is not None and t.first_ready(0.0).id == "old"  # type: ignore[union-attr]
