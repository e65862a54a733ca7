"""What a stage does about each error its Kafka clients report: the one place that decides it.

A stage instance meets client errors in four places: the consumer (`consume` results and its
`error_cb`), the transactional producer (`init_transactions`, `send_offsets_to_transaction`,
`commit_transaction`, `abort_transaction`, and its `error_cb`), the restorer reading a changelog, and
requests for offsets or metadata. Whatever the place, the answer is one of `Fault`:

- `RETRY`: the cluster is passing through a state it leaves by itself (a partition leader or a
  coordinator moving or loading, one broker away, a request that timed out): ask again, patiently,
  with the same clients; nothing is aborted and the stage is not restarted.
- `ABORT`: the open transaction cannot commit (`txn_requires_abort`, or an error of unknown meaning):
  abort it and rewind the input to the committed offsets; the clients stay.
- `PRODUCER`: the producer is dead (a fatal error: fenced by a newer instance, INVALID_TXN_STATE,
  INVALID_PRODUCER_EPOCH): make a new one (which fences the old), then abort and rewind.
- `CONSUMER`: the consumer is dead (`_FATAL`, or fenced as a static member whose session expired):
  make a new one, which rejoins the group; its partitions are restored from the changelog as on
  any assignment.
- `UNREACHABLE`: no broker answers at all: wait (the instance says so on `/readyz`), then retry.

Nothing is lost or duplicated whatever the answer: outputs, changelog writes and input offsets are
committed together or not at all, and every answer but RETRY rewinds to the last commit.

>>> from confluent_kafka import KafkaError
>>> classify(KafkaError(KafkaError.NOT_COORDINATOR), "producer")
<Fault.RETRY: 'retry'>
>>> classify(KafkaError(KafkaError._FATAL, fatal=True), "consumer")
<Fault.CONSUMER: 'consumer'>
>>> classify(KafkaError(KafkaError.INVALID_TXN_STATE, fatal=True), "producer")
<Fault.PRODUCER: 'producer'>
>>> classify(KafkaError(KafkaError.FENCED_INSTANCE_ID), "producer")  # (from send_offsets_to_transaction)
<Fault.CONSUMER: 'consumer'>
>>> classify(KafkaError(KafkaError._ALL_BROKERS_DOWN), "consumer")
<Fault.UNREACHABLE: 'unreachable'>
"""

from __future__ import annotations

import enum
from typing import Literal

from confluent_kafka import KafkaError, KafkaException

Client = Literal["producer", "consumer", "restorer"]


class Fault(enum.Enum):
    RETRY = "retry"
    ABORT = "abort"
    PRODUCER = "producer"
    CONSUMER = "consumer"
    UNREACHABLE = "unreachable"


TRANSIENT = frozenset({
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.CONCURRENT_TRANSACTIONS,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE,
    KafkaError._WAIT_COORD,
    KafkaError._RESOLVE,
    KafkaError._NOENT,
    KafkaError._OUTDATED,
    KafkaError.OFFSET_NOT_AVAILABLE,  # (a new leader's high watermark not caught up yet, just after an election)
    KafkaError._DESTROY_BROKER,  # (the client dropped a broker that left the cluster's metadata)
    KafkaError._NODE_UPDATE,
})
"""States a cluster leaves by itself: a leader or coordinator moving (a broker restarted, killed or
stalled), a topic just created, fewer in-sync replicas for a moment, a request that timed out."""

PRODUCER_FENCED = frozenset({
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.INVALID_TXN_STATE,
    KafkaError.TRANSACTION_COORDINATOR_FENCED,
    KafkaError.INVALID_PRODUCER_ID_MAPPING,
})
"""The producer is fenced or its transactional state is lost, whichever client call reported it."""

CONSUMER_FENCED = frozenset({KafkaError.FENCED_INSTANCE_ID})
"""The consumer's static membership was taken over (its session expired and it was removed, or another
member joined with its `group.instance.id`): it never consumes again, whichever call reported it (the
producer's `send_offsets_to_transaction` too)."""

UNREACHABLE = frozenset({KafkaError._ALL_BROKERS_DOWN})
"""No broker of the cluster answers (a single broker away is `_TRANSPORT`: transient)."""


def classify(err: KafkaError, client: Client) -> Fault:
    """What to do about `err`, met by `client` (see the module docstring)."""
    code = err.code()
    if code in CONSUMER_FENCED:
        return Fault.CONSUMER
    if code in PRODUCER_FENCED:
        return Fault.PRODUCER
    if err.fatal() or code in (KafkaError._FATAL, KafkaError._FENCED):
        return Fault.PRODUCER if client == "producer" else Fault.CONSUMER
    if code in UNREACHABLE:
        return Fault.UNREACHABLE
    if err.txn_requires_abort():
        return Fault.ABORT
    if err.retriable() or code in TRANSIENT:
        return Fault.RETRY
    return Fault.ABORT


def error_of(e: BaseException) -> KafkaError | None:
    """The `KafkaError` a client exception carries (None for other exceptions)."""
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0]
    return None


def classify_exception(e: BaseException, client: Client) -> Fault:
    """`classify` for an exception a client call raised; other exceptions abort and rewind."""
    err = error_of(e)
    return Fault.ABORT if err is None else classify(err, client)
