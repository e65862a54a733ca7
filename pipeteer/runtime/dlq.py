"""A stage's dead letters, through the one queue contract on every backend (`pipeteer dlq list|replay`).

Each backend keeps them its own way (memory: in the queue; SQLite: a table beside the queue's;
Kafka: the stage's dead-letter topic) behind `BaseQueue.dead_letters()` and `BaseQueue.replay()`,
so every option works everywhere.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from pipeteer.errors import UnknownStage
from pipeteer.queues.base import BaseQueue, DeadLetter
from pipeteer.runtime.app import require_app
from pipeteer.runtime.connect import connect


@contextmanager
def stage_queue(app_ref: str, backend: str | None, stage: str) -> Iterator[BaseQueue[Any]]:
    """The queue of `stage` of the app `module:attribute` on `backend` (None: `$PIPETEER_BACKEND`);
    the backend is closed after."""
    app = require_app(app_ref)
    if stage not in app.stages():
        raise UnknownStage(f"app {app.name!r}", stage, app.stages())
    queues = connect(app, backend)
    try:
        yield queues.stage_queue(stage)
    finally:
        queues.backend.close()


def json_row(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as a JSON object: its fields, the value as its `repr` (cut at 200 characters)."""
    return {**asdict(letter), "value": repr(letter.value)[:200]}


def line(letter: DeadLetter) -> str:
    """id, time, error, where it came from (when the backend says), attempts: tab-separated."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(letter.failed_at)) if letter.failed_at else "?"
    message = letter.error_message.splitlines()[0][:160] if letter.error_message else ""
    source = f"from {letter.source}\t" if letter.source else ""
    return f"{letter.id}\t{when}\t{letter.error_class}: {message}\t{source}attempts={letter.attempts}"


def list_dead_letters(
    queue: BaseQueue[Any], stage: str, *, as_json: bool = False, stacktrace: bool = False
) -> int:
    """Print the dead letters of `queue` (read by `stage`) not replayed yet: a line each (`stacktrace`:
    with its trace), or JSON."""
    letters = queue.dead_letters()
    if as_json:
        print(json.dumps([json_row(d) for d in letters], indent=2))
        return 0
    if not letters:
        print(f"no dead letters for stage {stage!r}")
        return 0
    for d in letters:
        print(line(d))
        if stacktrace:
            print(d.stacktrace)
    print(f"{len(letters)} dead letter(s) for stage {stage!r}", file=sys.stderr)
    return 0


def replay_dead_letters(queue: BaseQueue[Any], stage: str, ids: Sequence[str] | None) -> int:
    """Put dead letters back in `queue` (all: None); exit status 1 when there were none to put back."""
    replayed = queue.replay(ids)
    for id in replayed:
        print(f"replayed {id} -> {queue.describe()}")
    print(f"{len(replayed)} dead letter(s) replayed for stage {stage!r}", file=sys.stderr)
    return 0 if replayed else 1
