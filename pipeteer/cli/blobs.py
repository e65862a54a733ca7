"""`pipeteer blobs gc APP`: remove the blobs nothing references (see `pipeteer.runtime.blobs`)."""

from __future__ import annotations

import sys
from typing import Any

from pipeteer.cli.common import add_app, add_backend
from pipeteer.errors import ConfigError
from pipeteer.runtime.blobs import DEFAULT_GRACE, gc


def cmd_gc(args: Any) -> int:
    from pipeteer.runtime.app import require_app
    from pipeteer.runtime.connect import connect

    if args.grace < 0:
        raise ConfigError(f"blobs gc: --grace must be >= 0 seconds, got {args.grace}")
    queues = connect(require_app(args.app), args.backend)
    try:
        found = gc(queues, grace=args.grace, delete=args.delete)
    finally:
        queues.backend.close()
    mb = found.unreferenced_bytes / 1e6
    if args.delete:
        print(
            f"removed {found.removed} blob(s), {found.removed_bytes / 1e6:.1f} MB; {len(found.referenced)} referenced"
        )
    else:
        print(
            f"{len(found.unreferenced)} unreferenced blob(s), {mb:.1f} MB, older than {args.grace:g}s "
            f"({len(found.referenced)} referenced); run with --delete to remove them"
        )
    sys.stdout.flush()
    return 0


def register(sub: Any) -> None:
    blobs = sub.add_parser("blobs", help="the blob store of large values").add_subparsers(
        dest="blobs_command", required=True, metavar="ACTION"
    )
    p = blobs.add_parser("gc", help="remove blobs nothing references (dry run unless --delete)")
    add_app(p, "the app, as module:attribute")
    add_backend(p)
    p.add_argument("--delete", action="store_true", help="remove them (default: only count them)")
    p.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        help=f"spare blobs written or re-used within this many seconds (default {DEFAULT_GRACE:g})",
    )
    p.set_defaults(func=cmd_gc)
