"""`pipeteer dlq list|replay`: a stage's dead letters, through the one queue contract on every backend.

Each backend keeps them its own way (memory: in the queue; SQLite: a table beside the queue's;
Kafka: the stage's dead-letter topic) behind `BaseQueue.dead_letters()` and `BaseQueue.replay()`,
so every option works everywhere. Arguments (argparse namespace): `app`, `backend` (default
`$PIPETEER_BACKEND`), `stage`; `list` also reads `stacktrace` and `json`; `replay` reads `id`
(a list) or `all`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from pipeteer.errors import ConfigError
from pipeteer.queues.base import BaseQueue, DeadLetter
from pipeteer.runtime.app import require_app
from pipeteer.runtime.connect import connect


@contextmanager
def stage_queue(args: argparse.Namespace) -> Iterator[BaseQueue[Any]]:
    """The queue of `args.stage` on `args.backend`; the backend is closed after."""
    app = require_app(args.app)
    if args.stage not in app.stages():
        raise ConfigError(f"app {app.name!r} has no stage {args.stage!r} (stages: {', '.join(app.stages())})")
    queues = connect(app, args.backend)
    try:
        yield queues.stage_queue(args.stage)
    finally:
        queues.backend.close()


def as_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as a JSON object: its fields, the value as its `repr` (cut at 200 characters)."""
    return {**asdict(letter), "value": repr(letter.value)[:200]}


def as_line(letter: DeadLetter) -> str:
    """id, time, error, where it came from (when the backend says), attempts: tab-separated."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(letter.failed_at)) if letter.failed_at else "?"
    message = letter.error_message.splitlines()[0][:160] if letter.error_message else ""
    source = f"from {letter.source}\t" if letter.source else ""
    return f"{letter.id}\t{when}\t{letter.error_class}: {message}\t{source}attempts={letter.attempts}"


def cmd_dlq_list(args: argparse.Namespace) -> int:
    """Print the stage's dead letters not replayed yet (`--json`: as JSON; `--stacktrace`: with each trace)."""
    with stage_queue(args) as queue:
        letters = queue.dead_letters()
    if args.json:
        print(json.dumps([as_json(d) for d in letters], indent=2))
        return 0
    if not letters:
        print(f"no dead letters for stage {args.stage!r}")
        return 0
    for d in letters:
        print(as_line(d))
        if args.stacktrace:
            print(d.stacktrace)
    print(f"{len(letters)} dead letter(s) for stage {args.stage!r}", file=sys.stderr)
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    """Put dead letters back in the stage's queue (`--all`, or `--id ID` repeated); exit 1 when there were none."""
    if bool(args.all) == bool(args.id):
        raise ConfigError("dlq replay: give --id ID (repeatable) or --all")
    with stage_queue(args) as queue:
        replayed = queue.replay(None if args.all else list(args.id))
        where = queue.describe()
    for id in replayed:
        print(f"replayed {id} -> {where}")
    print(f"{len(replayed)} dead letter(s) replayed for stage {args.stage!r}", file=sys.stderr)
    return 0 if replayed else 1
