"""`pipeteer dlq list|replay APP --stage NAME`: a stage's dead letters (a table on SQLite and in memory,
a topic on Kafka, see `pipeteer.runtime.dlq`)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from pipeteer.cli.common import add_app, add_backend, backend_url
from pipeteer.errors import ConfigError


def _stage_queue(args: argparse.Namespace) -> Any:
    from pipeteer.runtime.app import require_app
    from pipeteer.runtime.connect import connect

    app = require_app(args.app)
    if args.stage not in app.stages():
        raise ConfigError(f"app {app.name!r} has no stage {args.stage!r} (stages: {', '.join(app.stages())})")
    return connect(app, args.backend).stage_queue(args.stage)


def _is_kafka(args: argparse.Namespace) -> bool:
    return (backend_url(args) or "").startswith("kafka://")


def cmd_list(args: argparse.Namespace) -> int:
    if _is_kafka(args):  # dead letters are a topic there, with their error in the headers
        from pipeteer.runtime.dlq import cmd_dlq_list

        return cmd_dlq_list(args)
    letters = _stage_queue(args).dead_letters()
    if args.json:  # the same fields as on Kafka, less where a record came from (there is no topic)
        import json

        rows = [
            {
                "id": d.id,
                "error_class": d.error_class,
                "error_message": d.error_message,
                "stacktrace": d.stacktrace,
                "attempts": d.attempts,
                "failed_at": d.failed_at,
                "value": repr(d.value)[:200],
            }
            for d in letters
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not letters:
        print(f"no dead letters for stage {args.stage!r}")
        return 0
    for d in letters:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.failed_at))
        print(
            f"{d.id}\t{when}\t{d.error_class}: {d.error_message.splitlines()[0][:160] if d.error_message else ''}\tattempts={d.attempts}"
        )
        if args.stacktrace:
            print(d.stacktrace)
    print(f"{len(letters)} dead letter(s) for stage {args.stage!r}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    if _is_kafka(args):
        from pipeteer.runtime.dlq import cmd_dlq_replay

        return cmd_dlq_replay(args)
    if not args.all and not args.id:
        raise ConfigError("dlq replay: give --id ID (repeatable) or --all")
    replayed = _stage_queue(args).replay(None if args.all else args.id)
    for id in replayed:
        print(f"replayed {id}")
    print(f"{len(replayed)} dead letter(s) replayed for stage {args.stage!r}", file=sys.stderr)
    return 0 if replayed else 1


def register(sub: Any) -> None:
    dlq = sub.add_parser("dlq", help="inspect and replay a stage's dead letters").add_subparsers(
        dest="dlq_command", required=True, metavar="ACTION"
    )
    for name, func, what in (
        ("list", cmd_list, "list the dead letters of a stage"),
        ("replay", cmd_replay, "put dead letters back in the stage"),
    ):
        p = dlq.add_parser(name, help=what)
        add_app(p, "the app, as module:attribute")
        add_backend(p)
        p.add_argument("--stage", required=True, help="the stage whose dead letters to use")
        if name == "list":
            p.add_argument("--stacktrace", action="store_true", help="print each stack trace")
            p.add_argument("--json", action="store_true", help="print JSON")
        else:
            p.add_argument("--id", action="append", help="replay this item (repeatable)")
            p.add_argument("--all", action="store_true", help="replay every dead letter")
        p.set_defaults(func=func)
