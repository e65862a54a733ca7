"""`pipeteer push|pull|status APP`: batches of files in and out of a workflow (see `pipeteer.runtime.batch`).

`push` and `pull` that stop on an error (a full disk: `StorageFull`) first say how far they got,
then the error, and exit non-zero; the same command run again goes on from there.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pipeteer.cli.common import add_app, add_backend
from pipeteer.runtime.app import App
from pipeteer.runtime.batch import (
    MANIFEST,
    PullReport,
    PushReport,
    expand_sources,
    format_status,
    pull_outputs,
    push_files,
    status,
)
from pipeteer.runtime.connect import connect
from pipeteer.wiring import BackendQueues


def _queues(args: Any) -> tuple[App, BackendQueues]:
    from pipeteer.runtime.app import require_app

    app = require_app(args.app)
    return app, connect(app, args.backend)


R = TypeVar("R")


def run_io(main: Coroutine[Any, Any, R], concurrency: int) -> R:
    """Run a command whose work is file I/O: its worker threads are enough for every item under way
    to read and to write at once (Python's default, 6 threads on 2 cores, left items waiting for a
    thread while others sat in fsync; fsyncs under way together are what makes durable writes fast)."""

    async def with_threads() -> R:
        threads = ThreadPoolExecutor(2 * concurrency + 2, thread_name_prefix="pipeteer-io")
        asyncio.get_running_loop().set_default_executor(threads)
        return await main

    return asyncio.run(with_threads())


def at_least_one(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def cmd_push(args: Any) -> int:
    app, queues = _queues(args)
    files = expand_sources(args.sources)
    ledger = Path(args.ledger or Path(".pipeteer") / f"pushed-{app.name}.ids")
    started = time.monotonic()
    report = PushReport()
    try:
        run_io(
            push_files(
                app,
                queues,
                files,
                ledger=ledger,
                concurrency=args.concurrency,
                quiet=args.quiet,
                link=args.link,
                report=report,
            ),
            args.concurrency,
        )
    except Exception:
        left = len(files) - report.pushed - report.skipped
        print(
            f"pipeteer push: stopped after pushing {report.pushed} item(s) ({report.bytes / 1e6:.1f} MB); "
            f"{report.skipped} already pushed, {left} not pushed (ledger {ledger}): "
            "run the same command again to push the rest",
            file=sys.stderr,
        )
        raise
    finally:
        queues.backend.close()
    took = max(time.monotonic() - started, 1e-9)
    print(
        f"pushed {report.pushed} item(s) ({report.bytes / 1e6:.1f} MB, {report.bytes / 1e6 / took:.1f} MB/s); "
        f"{report.skipped} already pushed (ledger {ledger})",
        file=sys.stderr,
    )
    return 0


def cmd_pull(args: Any) -> int:
    app, queues = _queues(args)
    report = PullReport()
    try:
        n = run_io(
            pull_outputs(
                app,
                queues,
                Path(args.dest),
                follow=args.follow,
                until_empty=args.until_empty,
                expect=args.expect,
                concurrency=args.concurrency,
                quiet=args.quiet,
                link=args.link,
                report=report,
            ),
            args.concurrency,
        )
    except Exception:
        print(
            f"pipeteer pull: stopped after writing {report.written} output(s) into {args.dest} "
            f"({report.listed + report.written} in {MANIFEST}); the others are still queued: "
            "run the same command again to go on",
            file=sys.stderr,
        )
        raise
    finally:
        queues.backend.close()
    print(f"pulled {n} output(s) into {args.dest} ({MANIFEST})", file=sys.stderr)
    return 0


def cmd_status(args: Any) -> int:
    app, queues = _queues(args)
    try:
        rows = asyncio.run(status(app, queues))
    finally:
        queues.backend.close()
    print(format_status(rows))
    return 0


def register(sub: Any) -> None:
    """Add `push`, `pull` and `status` to the `pipeteer` command."""

    push = sub.add_parser("push", help="push files as input items (ids from content; resumable)")
    add_app(push, "the app, as module:attribute")
    push.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="files, directories, glob patterns or @LIST files"
    )
    add_backend(push)
    push.add_argument("--concurrency", type=at_least_one, default=8, help="pushes under way at once (default 8)")
    push.add_argument(
        "--ledger", default=None, help="file of pushed ids (default .pipeteer/pushed-WORKFLOW.ids)"
    )
    push.add_argument(
        "--link",
        action="store_true",
        help="store large files as hard links in the blob store (local, same file system) instead of copies; "
        "do not modify them in place afterwards",
    )
    push.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    push.set_defaults(func=cmd_push)

    pull = sub.add_parser("pull", help="write outputs as files plus a JSONL manifest, then pop them")
    add_app(pull, "the app, as module:attribute")
    pull.add_argument("dest", help="directory to write to (manifest.jsonl inside)")
    add_backend(pull)
    until = pull.add_mutually_exclusive_group()
    until.add_argument("--follow", action="store_true", help="keep waiting for outputs until interrupted")
    until.add_argument("--until-empty", action="store_true", help="until no stage holds an item")
    until.add_argument("--expect", type=int, default=None, help="until the manifest lists this many outputs")
    pull.add_argument("--concurrency", type=at_least_one, default=8, help="outputs written at once (default 8)")
    pull.add_argument(
        "--link",
        action="store_true",
        help="hard-link files to their blobs (local blob store, same file system) instead of copying; "
        "do not modify them in place",
    )
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    pull.set_defaults(func=cmd_pull)

    st = sub.add_parser("status", help="items pending per stage (and age of the oldest); outputs waiting")
    add_app(st, "the app, as module:attribute")
    add_backend(st)
    st.set_defaults(func=cmd_status)
