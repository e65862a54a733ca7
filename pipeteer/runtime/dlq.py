"""`pipeteer dlq list|replay` on Kafka: a stage's dead-letter topic, with where each record came from.

The CLI calls these for `kafka://` backends (other backends list their dead-letter tables).
Arguments (argparse namespace): `app`, `backend` (default `$PIPETEER_BACKEND`), `stage`;
`list` also reads `stacktrace` and `json`; `replay` reads `id` (a list) or `all`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from pipeteer.errors import ConfigError
from pipeteer.runtime.app import require_app
from pipeteer.runtime.connect import connect

T = TypeVar("T")


def _topic(args: argparse.Namespace) -> Any:
    app = require_app(args.app)
    if args.stage not in app.stages():
        raise ConfigError(f"app {app.name!r} has no stage {args.stage!r} (stages: {', '.join(app.stages())})")
    topic = getattr(connect(app, args.backend).stage_queue(args.stage), "dead_letter_topic", None)
    if topic is None:
        raise ConfigError(f"stage {args.stage!r} is not on a Kafka backend: pass --backend kafka://host:port")
    return topic()


def _clearly(call: Callable[[], T], topic: Any) -> T:
    """`call()`, with "no broker answered" said as a `BrokerUnreachable` naming the bootstrap servers."""
    from pipeteer.queues.kafka.health import translate

    try:
        return call()
    except Exception as e:
        error = translate(e, topic.settings.connection.bootstrap_servers)
        if error is e:
            raise
        raise error from None


def cmd_dlq_list(args: argparse.Namespace) -> int:
    """Print the stage's dead letters not replayed yet: id, time, error, source topic[partition]@offset."""
    topic = _topic(args)
    letters = _clearly(topic.pending, topic)
    if getattr(args, "json", False):
        rows = [{**asdict(d), "value": d.value[:64].hex()} for d in letters]
        print(json.dumps(rows, indent=2))
        return 0
    if not letters:
        print(f"no dead letters for stage {args.stage!r}")
        return 0
    for d in letters:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.failed_at)) if d.failed_at else "?"
        message = d.error_message.splitlines()[0][:160] if d.error_message else ""
        print(
            f"{d.id}\t{when}\t{d.error_class}: {message}\t"
            f"from {d.source_topic}[{d.source_partition}]@{d.source_offset}\tattempts={d.attempts}"
        )
        if getattr(args, "stacktrace", False):
            print(d.stacktrace)
    print(f"{len(letters)} dead letter(s) for stage {args.stage!r}", file=sys.stderr)
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    """Re-inject dead letters into their original topic (`--all`: exactly once; `--id`: the latest of each)."""
    if bool(args.all) == bool(args.id):
        raise ConfigError("dlq replay: give --id ID (repeatable) or --all")
    topic = _topic(args)
    replayed = _clearly(lambda: topic.replay(None if args.all else list(args.id)), topic)
    for d in replayed:
        print(f"replayed {d.id} -> {d.source_topic}")
    print(f"{len(replayed)} dead letter(s) replayed for stage {args.stage!r}", file=sys.stderr)
    return 0 if replayed else 1
