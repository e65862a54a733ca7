"""`pipeteer dlq list|replay`: inspect a stage's dead letters and inject them again.

Dead letters are the records a stage could not decode, or whose processing kept failing after
its retries; each carries headers naming the error, the stage and where it came from (see
`pipeteer.queues.kafka.engine.StageEngine.dead_letter`). Replaying one produces its original
bytes again to its original topic, keyed by its id, so the stage sees it as a new item.

`replay --all` is exactly-once itself: it reads the dead-letter topic in a consumer group of its
own and commits its progress in the same transaction as the re-injected records, so running it
twice does not inject anything twice. `replay --id X` re-injects the latest dead letter of X.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipeteer.errors import ConfigError, PipeteerError
from pipeteer.runtime.app import App, load_app
from pipeteer.spec import Workflow


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered record and what its headers say."""

    id: str
    stage: str
    error_class: str
    error_message: str
    stacktrace: str
    source_topic: str
    source_partition: int
    source_offset: int
    attempts: int
    failed_at: float
    offset: int
    partition: int
    value: bytes

    @classmethod
    def from_message(cls, m: Any) -> DeadLetter:
        h = {k: v.decode(errors="replace") for k, v in (m.headers() or ())}
        return cls(
            id=(m.key() or b"").decode(errors="replace"),
            stage=h.get("pipeteer.stage", ""),
            error_class=h.get("pipeteer.error.class", ""),
            error_message=h.get("pipeteer.error.message", ""),
            stacktrace=h.get("pipeteer.error.stacktrace", ""),
            source_topic=h.get("pipeteer.source.topic", ""),
            source_partition=int(h.get("pipeteer.source.partition", "-1")),
            source_offset=int(h.get("pipeteer.source.offset", "-1")),
            attempts=int(h.get("pipeteer.attempts", "0")),
            failed_at=float(h.get("pipeteer.failed_at", "0") or 0),
            offset=m.offset(),
            partition=m.partition(),
            value=m.value() or b"",
        )


def _stage_topics(app: App | Workflow[Any, Any] | str, url: str, stage: str) -> tuple[Any, str, str]:
    """(Kafka settings, dead-letter topic, replay consumer group) of one stage."""
    from pipeteer.queues.kafka.backend import TopicNames
    from pipeteer.queues.kafka.config import KafkaSettings

    obj = load_app(app)
    wf = obj.workflow if isinstance(obj, App) else obj
    stages = {"/".join(p) for p, s in wf.walk() if not isinstance(s, Workflow)}
    if stage not in stages:
        raise ConfigError(
            f"workflow {wf.name!r} has no stage {stage!r} (stages: {', '.join(sorted(stages))})"
        )
    if not url.startswith("kafka://"):
        raise ConfigError(f"dead letters live on Kafka: pass --backend kafka://host:port (got {url!r})")
    settings = KafkaSettings.from_url(url)
    names = TopicNames(wf.name, settings.connection.prefix)
    path = stage.split("/")
    return settings, names.dead_letters(path), names.group(path) + ".dlq-replay"


def read_dead_letters(settings: Any, topic: str, *, start: dict[int, int] | None = None) -> list[Any]:
    """The committed records of a dead-letter topic, from `start` offsets (default: the beginning) to its end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    c = Consumer(
        settings.connection.client_config(
            "consumer",
            **{
                "group.id": f"pipeteer-dlq-list-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "enable.auto.commit": False,
            },
        )
    )
    try:
        meta = c.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), 10, False)
            begin = max((start or {}).get(p, low), low)
            if high > begin:
                ends[p] = high
        out: list[Any] = []
        if not ends:
            return out
        c.assign([TopicPartition(topic, p, (start or {}).get(p, OFFSET_BEGINNING)) for p in ends])
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            batch: list[Any] = c.consume(500, 0.5)
            for m in batch:
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        ends.pop(m.partition(), None)
                    continue
                out.append(m)
                if m.offset() + 1 >= ends.get(m.partition(), 0):
                    ends.pop(m.partition(), None)
        return out
    finally:
        c.close()


def list_dead_letters(app: App | Workflow[Any, Any] | str, url: str, stage: str) -> list[DeadLetter]:
    """Every dead letter of `stage`, oldest first per partition."""
    settings, topic, _ = _stage_topics(app, url, stage)
    return [DeadLetter.from_message(m) for m in read_dead_letters(settings, topic)]


def replay_dead_letters(
    app: App | Workflow[Any, Any] | str, url: str, stage: str, *, ids: Sequence[str] = (), all: bool = False
) -> list[DeadLetter]:
    """Re-inject dead letters into their original topics; returns the ones replayed.

    `all=True`: every dead letter not replayed before (exactly once, tracked by a consumer group).
    `ids`: the latest dead letter of each id, whether replayed before or not.
    """
    from confluent_kafka import Consumer, Producer, TopicPartition

    if bool(ids) == bool(all):
        raise ConfigError("dlq replay: give either --id (repeatable) or --all")
    settings, topic, group = _stage_topics(app, url, stage)
    if ids:
        latest = {d.id: d for d in list_dead_letters(app, url, stage) if d.id in set(ids)}
        missing = sorted(set(ids) - set(latest))
        if missing:
            raise ConfigError(f"stage {stage!r} has no dead letter for {missing}: see `pipeteer dlq list`")
        producer = Producer(
            settings.connection.client_config(
                "producer", **{"enable.idempotence": True, "partitioner": "murmur2_random"}
            )
        )
        for d in latest.values():
            producer.produce(d.source_topic, d.value, d.id.encode())
        if producer.flush(30):
            raise PipeteerError(
                f"dlq replay: {len(latest)} records not acknowledged by the broker within 30s"
            )
        return list(latest.values())
    consumer = Consumer(
        settings.connection.client_config(
            "consumer",
            **{"group.id": group, "isolation.level": "read_committed", "enable.auto.commit": False},
        )
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        committed = consumer.committed([TopicPartition(topic, p) for p in meta.partitions], 10)
        start = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        messages = read_dead_letters(settings, topic, start=start)
        if not messages:
            return []
        producer = Producer(
            settings.connection.client_config(
                "producer",
                **{"transactional.id": f"{group}.{uuid.uuid4().hex[:8]}", "partitioner": "murmur2_random"},
            )
        )
        producer.init_transactions(30)
        producer.begin_transaction()
        letters = [DeadLetter.from_message(m) for m in messages]
        for d in letters:
            producer.produce(d.source_topic, d.value, d.id.encode())
        offsets: dict[int, int] = {}
        for m in messages:
            offsets[m.partition()] = max(offsets.get(m.partition(), 0), m.offset() + 1)
        producer.send_offsets_to_transaction(
            [TopicPartition(topic, p, o) for p, o in offsets.items()], consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(60)
        return letters
    finally:
        consumer.close()


def _describe(d: DeadLetter) -> dict[str, Any]:
    out = asdict(d)
    out["value"] = d.value[:64].hex() + ("…" if len(d.value) > 64 else "")
    return out


def cmd_dlq_list(args: argparse.Namespace) -> int:
    """`pipeteer dlq list APP --backend URL --stage NAME [--json] [--stacktrace]`; exit code 0."""
    letters = list_dead_letters(args.app, _url(args), args.stage)
    if getattr(args, "json", False):
        json.dump([_describe(d) for d in letters], sys.stdout, indent=2)
        print()
        return 0
    if not letters:
        print(f"no dead letters for stage {args.stage!r}")
        return 0
    for d in letters:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.failed_at)) if d.failed_at else "?"
        message = d.error_message.splitlines()[0] if d.error_message else ""
        print(
            f"{d.id}\t{when}\t{d.error_class}: {message[:160]}\t"
            f"from {d.source_topic}[{d.source_partition}]@{d.source_offset}\tattempts={d.attempts}"
        )
        if getattr(args, "stacktrace", False):
            print(d.stacktrace)
    print(f"{len(letters)} dead letter(s) for stage {args.stage!r}", file=sys.stderr)
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    """`pipeteer dlq replay APP --backend URL --stage NAME (--id ID ... | --all)`; 0 on success, 1 if nothing replayed."""
    replayed = replay_dead_letters(args.app, _url(args), args.stage, ids=args.id or (), all=bool(args.all))
    for d in replayed:
        print(f"replayed {d.id} -> {d.source_topic}")
    print(f"{len(replayed)} dead letter(s) replayed for stage {args.stage!r}", file=sys.stderr)
    return 0 if replayed else 1


def add_dlq_parser(sub: Any) -> None:
    """Add `dlq list|replay` to the CLI's subparsers (the lead's cli.py calls this)."""
    dlq = sub.add_parser("dlq", help="inspect and replay a stage's dead letters (Kafka)")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True)
    for name, func, help in (
        ("list", cmd_dlq_list, "list the dead letters of a stage"),
        ("replay", cmd_dlq_replay, "re-inject dead letters into their original topic"),
    ):
        p = dsub.add_parser(name, help=help)
        p.add_argument("app", help="the app, as module:attribute")
        p.add_argument("--backend", default=None, help="kafka://host:port (default: $PIPETEER_BACKEND)")
        p.add_argument("--stage", required=True, help="the stage whose dead letters to use")
        if name == "list":
            p.add_argument("--json", action="store_true", help="print JSON")
            p.add_argument("--stacktrace", action="store_true", help="print each stack trace")
        else:
            p.add_argument("--id", action="append", help="replay this item's latest dead letter (repeatable)")
            p.add_argument("--all", action="store_true", help="replay every dead letter not replayed before")
        p.set_defaults(func=func)


def _url(args: argparse.Namespace) -> str:
    import os

    url = args.backend or os.environ.get("PIPETEER_BACKEND")
    if not url:
        raise ConfigError("dlq: pass --backend kafka://host:port or set PIPETEER_BACKEND")
    return str(url)
