"""`pipeteer schemas export|check APP`: the Avro schemas of a workflow's states.

`export_command` and `check_command` print, then return the exit code; they take the state types
(and streams, for tests), so they serve any list of types, not only an APP's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pipeteer.cli.common import add_app, workflow_of
from pipeteer.codec.compat import Mode
from pipeteer.codec.files import check_schemas, export_schemas, missing_schema_files, unused_schema_files
from pipeteer.errors import CodecError


def cmd_export(args: argparse.Namespace) -> int:
    return export_command(workflow_of(args.app).state_types(), args.output)


def cmd_check(args: argparse.Namespace) -> int:
    return check_command(workflow_of(args.app).state_types(), args.against, args.mode)


def export_command(
    types: Sequence[Any],
    outdir: str | os.PathLike[str],
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Write one `.avsc` per state type into `outdir`; prints each path. 0 on success, 1 on a schema error."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        paths = export_schemas(types, outdir)
    except CodecError as exc:
        print(f"error: {exc}", file=err)
        return 1
    for path in paths:
        print(f"wrote {path}", file=out)
    return 0


def check_command(
    types: Sequence[Any],
    against: str | os.PathLike[str],
    mode: Mode | str = Mode.BACKWARD,
    *,
    namespace: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Compare the state types with the schema files in `against`; 1 if any change breaks `mode`.

    New states (no file yet) and files no state claims any more are noted, not failures.
    Returns 2 for an unknown mode.
    """
    out, err = out or sys.stdout, err or sys.stderr
    try:
        mode = Mode(mode)
    except ValueError:
        print(f"error: unknown mode {mode!r} (use backward, forward or full)", file=err)
        return 2
    try:
        found = check_schemas(types, against, mode, namespace=namespace)
        new = missing_schema_files(types, against, namespace=namespace)
        unused = unused_schema_files(types, against, namespace=namespace)
    except CodecError as exc:
        print(f"error: {exc}", file=err)
        return 1
    for name in new:
        print(f"note: no {name} in {against} (a new state: nothing to be compatible with)", file=out)
    for name in unused:
        print(
            f"note: {name} in {against} is no state's schema any more (records of it may still be queued)",
            file=out,
        )
    by_type: dict[str, list[str]] = {}
    for inc in found:
        by_type.setdefault(inc.type, []).append(str(inc))
    for type_label, lines in by_type.items():
        print(
            f"{type_label}: {len(lines)} incompatible change{'s' if len(lines) > 1 else ''} ({mode.value})",
            file=out,
        )
        for line in lines:
            print(f"  - {line}", file=out)
    checked = len(types) - len(new)
    if found:
        print(
            f"FAILED: {len(found)} incompatible change(s) in {len(by_type)} of {checked} schema(s)", file=out
        )
        return 1
    print(f"ok: {checked} schema(s) {mode.value} compatible with {against}", file=out)
    return 0


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
