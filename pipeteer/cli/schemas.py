"""`pipeteer schemas export|check APP`: the Avro schemas of a workflow's states.

`export_command` and `check_command` print, then return the exit code; they take the state types
(and streams, for tests), so they serve any list of types, not only an APP's. `check_command`
given the workflow too says in which order to roll its stages:

    $ pipeteer schemas check tests.unit.cli.chain_v2:workflow --against schemas/
    tests.unit.cli.chain_v2.Signed: changed, backward compatible
      - Signed.neg: type widened from long to double: long cannot read double (...) [forward]
      satisfies: backward only (not forward, full)
      roll order (readers first): 1. sum (reads Signed)  2. negate (writes Signed)
    ok: 4 schema(s) backward compatible with schemas/ (1 changed)

Backward only: new readers read old records, so the stages reading the state roll first, then
those writing it. Forward only: old readers read new records, so the writers roll first, and the
readers once no record written before is left for them (their pending tasks included). Full: any
order. When several changes constrain one release, one order for all of them is printed too (or
the constraints no order can meet).

Exit codes: 0 every change satisfies `--mode`, 1 one breaks it (or a schema is invalid), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pipeteer.cli.common import add_app, workflow_of
from pipeteer.codec.compat import Change, Mode, Roll, roll_order
from pipeteer.codec.files import (
    SUFFIX,
    export_schemas,
    missing_schema_files,
    schema_changes,
    schema_file_name,
    unused_schema_files,
)
from pipeteer.codec.schema import dumps, full_name, schema_for
from pipeteer.errors import CodecError, ConfigError, PipeteerError
from pipeteer.plan import INPUT_SOURCE, OUTPUT_QUEUE, Plan
from pipeteer.spec import Workflow
from pipeteer.spec.stages import OUTPUT


def cmd_export(args: argparse.Namespace) -> int:
    return export_command(workflow_of(args.app).state_types(), args.output)


def cmd_check(args: argparse.Namespace) -> int:
    workflow = workflow_of(args.app)
    if "://" not in str(args.against):
        return check_command(workflow.state_types(), args.against, args.mode, workflow=workflow)
    # The running version: the latest schema of each state published in the backend's catalog (the
    # SQLite file's table, the workflow's schemas topic on Kafka, or the registry), as .avsc files.
    with tempfile.TemporaryDirectory(prefix="pipeteer-running-") as directory:
        try:
            written = running_schemas(workflow, args.against, directory)
        except PipeteerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"note: {written} schema(s) of the running version, from {args.against}", file=sys.stdout)
        return check_command(workflow.state_types(), directory, args.mode, workflow=workflow)


def running_schemas(workflow: Workflow[Any, Any], url: str, directory: str) -> int:
    """Write the latest published schema of each name in the catalog of the backend `url` into `directory`
    (one `.avsc` per name, as `export` names them); returns how many."""
    from pipeteer.queues.backends import backend_from_url

    plan = Plan.of(workflow)
    backend = backend_from_url(url, plan=plan)
    try:
        for q in plan.queues:  # (a registry's subjects are those of the workflow's queues)
            backend.make_queue(q.Type, q.path)
        catalog = backend.schema_catalog()
        if catalog is None:
            raise ConfigError(f"backend {url!r} keeps no schema catalog (memory://): compare with a directory")
        latest = {p.name: p.schema for p in catalog.published()}  # (the latest last)
    finally:
        backend.close()
    for schema in latest.values():
        (Path(directory) / schema_file_name(schema)).write_text(dumps(schema), encoding="utf-8")
    return len(latest)


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
    workflow: Workflow[Any, Any] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Compare the state types with the schema files in `against`; 1 if any change breaks `mode`.

    For each changed type it prints the incompatibilities, which modes the change satisfies and in
    which order to roll: readers first (backward only), writers first (forward only), any order
    (full) or none. Given the `workflow`, the order names its stages, and one order is given for
    the whole release when several changes constrain it. New states (no file yet) and files no
    state claims any more are noted, not failures. Returns 2 for an unknown mode.
    """
    out, err = out or sys.stdout, err or sys.stderr
    try:
        mode = Mode(mode)
    except ValueError:
        print(f"error: unknown mode {mode!r} (use backward, forward or full)", file=err)
        return 2
    try:
        changes = [c for _, c in schema_changes(types, against, namespace=namespace)]
        new = missing_schema_files(types, against, namespace=namespace)
        unused = unused_schema_files(types, against, namespace=namespace)
        graph = _Graph.of(workflow, types, namespace) if workflow is not None else None
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
    if graph is not None and graph.undeclared:
        print(
            f"note: {', '.join(graph.undeclared)} declare(s) no output type (post has no return annotation): "
            "the roll orders below cannot place them as writers",
            file=out,
        )
    broken = 0
    for change in changes:
        problems = change.problems(mode)
        broken += len(problems)
        if problems:
            print(
                f"{change.type}: {len(problems)} incompatible change{'s' if len(problems) > 1 else ''} ({mode.value})",
                file=out,
            )
        else:
            print(f"{change.type}: changed, {mode.value} compatible", file=out)
        for inc in [*change.backward, *change.forward]:
            print(f"  - {inc}", file=out)
        print(f"  satisfies: {_satisfies(change)}", file=out)
        print(f"  roll order{_roll(change, graph)}", file=out)
    if graph is not None:
        _release_order(changes, graph, out)
    checked = len(types) - len(new)
    failed = [c for c in changes if not c.satisfies(mode)]
    if failed:
        print(f"FAILED: {broken} incompatible change(s) in {len(failed)} of {checked} schema(s)", file=out)
        return 1
    changed = f" ({len(changes)} changed)" if changes else ""
    print(f"ok: {checked} schema(s) {mode.value} compatible with {against}{changed}", file=out)
    return 0


INPUT_WRITERS = "scripts pushing the input"
"""Who writes the workflow's input (scripts, `pipeteer push`), in roll orders."""
OUTPUT_READERS = "scripts pulling the output"
"""Who reads the workflow's output (scripts, `pipeteer pull`), in roll orders."""


@dataclass(frozen=True)
class _Graph:
    """Who reads and who writes each state (by its schema's full name), from the workflow's plan."""

    readers: dict[str, list[str]]
    writers: dict[str, list[str]]
    order: list[str]
    undeclared: list[str]
    """Stages whose output types are unknown (a `post` without a return annotation)."""

    @classmethod
    def of(cls, workflow: Workflow[Any, Any], types: Sequence[Any], namespace: str | None) -> _Graph:
        plan = Plan.of(workflow)
        by_type: dict[Any, tuple[list[str], list[str]]] = {}

        def add(tp: Any, who: str, side: int) -> None:
            found = by_type.setdefault(tp, ([], []))[side]
            if who not in found:
                found.append(who)

        queue_type = {q.path: q.Type for q in plan.queues}
        for q in plan.queues:
            if q.reader is not None:
                add(q.Type, "/".join(q.reader), 0)
            elif q.path == OUTPUT_QUEUE:
                add(q.Type, OUTPUT_READERS, 0)
        for r in plan.routes:
            who = INPUT_WRITERS if r.source == INPUT_SOURCE else r.source
            for tp in dict.fromkeys([queue_type[r.queue], r.Type]):
                add(tp, who, 1)
            add(r.Type, OUTPUT_READERS if r.target == OUTPUT else r.target, 0)
        readers: dict[str, list[str]] = {}
        writers: dict[str, list[str]] = {}
        for tp in types:
            schema = schema_for(tp, namespace=namespace)
            name = full_name(schema) or schema_file_name(schema).removesuffix(SUFFIX)
            rs, ws = by_type.get(tp, ([], []))
            readers[name], writers[name] = rs, ws
        order = [INPUT_WRITERS, *(s.name for s in plan.stages), OUTPUT_READERS]
        undeclared = [s.name for s in plan.stages if s.stage.output_types() is None]
        return cls(readers, writers, order, undeclared)


def _satisfies(change: Change) -> str:
    modes = [m.value for m in change.modes]
    nots = [m.value for m in Mode if m not in change.modes]
    if not nots:
        return "backward, forward and full"
    if not modes:
        return "none (not backward, forward or full)"
    return f"{' and '.join(modes)} only (not {', '.join(nots)})"


def _roll(change: Change, graph: _Graph | None) -> str:
    """The rest of the line `  roll order...` for one change."""
    roll = change.roll
    if roll is Roll.ANY:
        return ": any (old and new versions read each other's records)"
    if roll is Roll.NONE:
        return (
            ": none works (the new version cannot read the old records, nor the old version the new "
            "ones): make the change compatible one way, or give the state a new name"
        )
    if roll is Roll.READERS_FIRST:
        head = " (readers first)"
        bare = f"the stages that read {change.short}, then those that write it"
    else:
        head = (
            " (writers first; roll the readers once no record written before is left for them, "
            "pending tasks included)"
        )
        bare = f"the stages that write {change.short}, then those that read it"
    if graph is None:
        return f"{head}: {bare}"
    order = roll_order([change], graph.readers, graph.writers, graph.order)
    if not order.steps:
        return f"{head}: no stage of the workflow reads or writes {change.short}"
    return f"{head}: {order}"


def _release_order(changes: Sequence[Change], graph: _Graph, out: TextIO) -> None:
    """One order for the whole release, when more than one change constrains it."""
    constrained = [c for c in changes if c.roll in (Roll.READERS_FIRST, Roll.WRITERS_FIRST)]
    if len(constrained) < 2:
        return
    order = roll_order(constrained, graph.readers, graph.writers, graph.order)
    if order.conflicts:
        print(
            "warning: no single roll order works for this release: "
            f"{'; '.join(order.conflicts)}; ship these changes in separate releases",
            file=out,
        )
    else:
        print(f"release roll order: {order}", file=out)


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
    check.add_argument(
        "--against", default="schemas",
        help="directory of .avsc files (default: schemas/), or a backend URL: the running version's schemas "
        "from its catalog (sqlite:///queues.db, kafka://HOST:9092?prefix=...)",
    )
    check.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=Mode.BACKWARD.value,
        help="what every change must keep: backward (new readers read old records; roll readers first), "
        "forward (old readers read new records; roll writers first) or full (both); default: backward",
    )
    check.set_defaults(func=cmd_check)
