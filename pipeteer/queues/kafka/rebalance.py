"""Partitions handed to and taken from a stage instance by its consumer group (on the engine's thread).

The consumer calls these from inside `consume`. On assignment the instance restores the partitions'
pending items from the changelog (read_committed, to its end) before any new input of theirs is read:
the items consumed and not finished by the partition's previous owner are pending here now. On
revocation it commits first (what it finished reaches downstream, and its offsets move on), then
forgets the partitions; their items a stage loop is still working on stay known (`engine.dropped`),
so that finishing one is dropped rather than refused (the new owner processes it). A lost partition
(the session expired: another member may own it already) is not committed: the open transaction is
aborted, and the new owner redoes it from the changelog.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipeteer.errors import CommitAborted
from pipeteer.queues.kafka.changelog import read_changelog

if TYPE_CHECKING:
    from pipeteer.queues.kafka.thread import EngineThread

log = logging.getLogger("pipeteer.kafka")


class Rebalance:
    """The assignment of one engine's consumer, and what each change of it asks (written on the engine's
    thread; the event loop reads `ever_assigned` and `restoring` for the probes)."""

    def __init__(self, thread: EngineThread) -> None:
        self.thread = thread
        self.engine = thread.engine
        self.name = thread.name
        self.reassigned = False
        """Partitions were assigned since flow control last applied its pause (applied to them again)."""
        self.ever_assigned = False
        """The group gave this instance partitions (and they were restored) at least once."""
        self.restoring = False
        """Partitions are being restored from the changelog now."""

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        e = self.engine
        log.info("stage %r: assigned %s partitions %s", self.name, e.topic, ps)
        self.reassigned = True
        if e.metrics is not None:
            e.metrics.rebalances.inc()
        try:
            self.restore(ps)
        except Exception:
            # The partitions stay assigned (the client assigns them whatever this callback does):
            # the error reaches the loop, whose recovery restores them again (`EngineThread.recover`).
            log.exception("stage %r: restoring the pending table failed", self.name)
            raise
        self.ever_assigned = True
        self.thread.progress.made(time.monotonic())
        e.wake()

    def restore(self, partitions: list[int]) -> None:
        """Read the changelog partitions to their end (read_committed) into the pending table."""
        e = self.engine
        self.restoring = True
        self.thread.progress.waiting(f"the restore of partitions {sorted(partitions)} from {e.changelog}",
                                     time.monotonic())
        try:
            restored = read_changelog(self.thread.restorer, e.changelog, partitions, e.queue.codec, self.name)
            with e.lock:
                for p in partitions:
                    e.table.assign(p, restored.get(p, {}).values())
                e.assigned.update(partitions)
        finally:
            self.restoring = False

    def on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        e = self.engine
        log.info("stage %r: revoked %s partitions %s", self.name, e.topic, ps)
        try:
            self.thread.commit()
        except KafkaException as exc:
            log.warning("stage %r: commit on revocation failed (%s); aborting", self.name, exc)
            err = exc.args[0] if exc.args else None
            e.close_transaction()
            e.txn.abort(isinstance(err, KafkaError) and err.fatal())
            self.thread.reset_state(CommitAborted(f"{e.queue.describe()}: partitions revoked before the commit; try again"))
            with e.lock:
                e.assigned.difference_update(ps)
            return
        self._forget(ps)

    def on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        e = self.engine
        log.warning("stage %r: lost partitions %s", self.name, ps)
        e.close_transaction()
        e.txn.abort(False)
        self.thread.reset_state(CommitAborted(f"{e.queue.describe()}: partitions lost; try again"))
        with e.lock:
            e.assigned.difference_update(ps)
        self.thread.signals.waiting = []

    def _forget(self, ps: list[int]) -> None:
        e = self.engine
        with e.lock:
            e.remember_dropped(e.table.drop(ps))
            keep = [(f, p) for f, p in e.waiters if p not in ps]
            lost = [(f, p) for f, p in e.waiters if p in ps]
            e.waiters = keep
            e.assigned.difference_update(ps)
        e.settle(lost, CommitAborted(f"{e.queue.describe()}: partition moved to another instance; try again"))
