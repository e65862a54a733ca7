"""`pipeteer schemas export|check APP`: the Avro schemas of a workflow's states."""

from __future__ import annotations

import argparse
from typing import Any

from pipeteer.cli.common import add_app, workflow_of


def cmd_export(args: argparse.Namespace) -> int:
    from pipeteer.codec.commands import export_command

    return export_command(workflow_of(args.app).state_types(), args.output)


def cmd_check(args: argparse.Namespace) -> int:
    from pipeteer.codec.commands import check_command

    return check_command(workflow_of(args.app).state_types(), args.against, args.mode)


def register(sub: Any) -> None:
    schemas = sub.add_parser("schemas", help="Avro schemas of the workflow's states").add_subparsers(
        dest="schemas_command", required=True, metavar="ACTION"
    )
    export = schemas.add_parser("export", help="write one .avsc per state")
    add_app(export, "the app or workflow, as module:attribute")
    export.add_argument("-o", "--output", default="schemas", help="directory to write to (default: schemas/)")
    export.set_defaults(func=cmd_export)
    check = schemas.add_parser(
        "check", help="check the states against committed .avsc files; exit 1 on a break"
    )
    add_app(check, "the app or workflow, as module:attribute")
    check.add_argument("--against", default="schemas", help="directory of .avsc files (default: schemas/)")
    check.add_argument("--mode", choices=["backward", "forward", "full"], default="backward")
    check.set_defaults(func=cmd_check)
