"""`pipeteer dlq list|replay APP --stage NAME`: a stage's dead letters, through the one interface every
backend's queues declare (a table on SQLite, a list in memory, a topic on Kafka; see `pipeteer.runtime.dlq`)."""

from __future__ import annotations

import argparse
from typing import Any

from pipeteer.cli.common import add_app, add_backend
from pipeteer.errors import ConfigError


def cmd_list(args: argparse.Namespace) -> int:
    """`pipeteer dlq list APP --stage NAME [--json] [--stacktrace]`."""
    from pipeteer.runtime.dlq import list_dead_letters, stage_queue

    with stage_queue(args.app, args.backend, args.stage) as queue:
        return list_dead_letters(queue, args.stage, as_json=args.json, stacktrace=args.stacktrace)


def cmd_replay(args: argparse.Namespace) -> int:
    """`pipeteer dlq replay APP --stage NAME (--all | --id ID...)`."""
    from pipeteer.runtime.dlq import replay_dead_letters, stage_queue

    if bool(args.all) == bool(args.id):
        raise ConfigError("dlq replay: give --id ID (repeatable) or --all")
    with stage_queue(args.app, args.backend, args.stage) as queue:
        return replay_dead_letters(queue, args.stage, None if args.all else list(args.id))


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
