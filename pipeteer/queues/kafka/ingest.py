"""Consumed records into pending entries: the engine thread's per-record path, pure (no lock, no client call).

Every record of a consumed batch becomes one of three things, in the order consumed:
- an `Entry` for the pending table, its value decoded;
- a held `Entry`: another version's record this instance cannot read yet (`UnreadableRecord`). It is
  pending like any other and read again later (`reread`), never a dead letter: a newer version
  upstream may be publishing its writer schema right now;
- a dead letter on arrival: no key, no value, or bytes no version reads (`dead_on_arrival` says why).

Decoding happens before the engine takes its lock (the stage loop takes it for every item), so a
batch costs the event loop nothing while its records are decoded.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeteer.codec import ValueCodec, kafka_source
from pipeteer.errors import DecodeError, UnreadableRecord
from pipeteer.queues.kafka.pending import Entry


@dataclass
class Batch:
    """A consumed batch, decoded."""

    decoded: list[Any] = field(default_factory=list)
    """In the order consumed: an `Entry`, or a record (`confluent_kafka.Message`) that cannot be decoded."""
    records: int = 0
    """Records in the batch (errors aside), those of partitions no longer assigned included."""
    errors: list[Any] = field(default_factory=list)
    """The `KafkaError`s `consume` returned in place of records."""
    dead: int = 0
    """Records that cannot be decoded (each a dead letter)."""


def decode_batch(msgs: Sequence[Any], codec: ValueCodec[Any], topic: str, assigned: Collection[int],
                 now: float) -> Batch:
    """Decode the records of `assigned` partitions; records of others are dropped (a rebalance took them)."""
    batch = Batch()
    add = batch.decoded.append
    decode = codec.decode
    for m in msgs:
        error = m.error()
        if error is not None:
            batch.errors.append(error)
            continue
        batch.records += 1
        p = m.partition()
        if p not in assigned:
            continue
        key, raw = m.key(), m.value()
        try:
            add(Entry(key.decode(), decode(raw), raw, p, m.offset(), now))
        except UnreadableRecord:  # another version's record: pending and held, never a dead letter
            if key is not None:
                add(held_entry(m, codec, topic, now))
            else:
                add(m)
                batch.dead += 1
        except Exception:
            add(m)
            batch.dead += 1
    return batch


def held_entry(m: Any, codec: ValueCodec[Any], topic: str, now: float) -> Entry:
    """The pending entry of an input record this instance cannot read (decoded again, naming where it
    is: the record is counted once and said in the error)."""
    p, o, raw = m.partition(), m.offset(), m.value()
    try:
        return Entry(m.key().decode(), codec.decode(raw, source=kafka_source(topic, p, o)), raw, p, o, now)
    except UnreadableRecord as e:
        return Entry(m.key().decode(), None, raw, p, o, now, held=e)


def dead_on_arrival(m: Any, codec: ValueCodec[Any], topic: str) -> tuple[str, BaseException]:
    """The item id of an input record that cannot be decoded, and the error its dead letter carries."""
    p, o, key, raw = m.partition(), m.offset(), m.key(), m.value()
    id = key.decode(errors="replace") if key is not None else ""
    if key is None:
        return id, DecodeError(f"record {topic}/{p}/{o} has no key (pipeteer keys records by item id)")
    if raw is None:
        return id, DecodeError(f"record {topic}/{p}/{o} (item {id!r}) has no value")
    try:
        key.decode()
        codec.decode(raw, source=kafka_source(topic, p, o))
    except Exception as e:  # the decoder's own error, naming the record
        return id, e
    return id, DecodeError(f"record {topic}/{p}/{o} (item {id!r}) could not be read")


def reread(held: Sequence[Entry], codec: ValueCodec[Any], topic: str) -> list[tuple[Entry, Any]]:
    """The held entries that can be read now (their writer schema was published since), with their
    values; an entry whose bytes no version reads keeps its error, said on the pages."""
    readable = []
    for e in held:
        try:
            value = codec.decode(e.raw, source=kafka_source(topic, e.partition, e.offset))
        except UnreadableRecord:
            continue
        except Exception as exc:  # (bytes no version can read: they stay held, and say so)
            e.held = exc
            continue
        readable.append((e, value))
    return readable
