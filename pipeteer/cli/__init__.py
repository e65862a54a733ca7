"""`pipeteer …` commands: thin over the layers; every command takes an APP as `module:attribute`.

This package is the one owner of the command line: `build_parser` is the only argparse parser, and
each module of the package adds its commands to it through one hook, `register(subparsers)`
(`COMMANDS` lists them, in `--help` order). Environment variables are not read here but asked of
`pipeteer.settings`, which `pipeteer --help` lists in full.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeteer import settings
from pipeteer.cli import batch, blobs, deploy, dlq, run, schemas
from pipeteer.cli.common import Command, translate_kafka_error
from pipeteer.errors import PipeteerError

COMMANDS = (run, schemas, dlq, deploy, batch, blobs)
"""The modules whose `register(subparsers)` add their commands, in `--help` order."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeteer",
        description="Queue-based workflows that include people.",
        epilog=settings.help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    func: Command = args.func
    client_log = logging.getLogger("pipeteer.kafka.client")
    level = client_log.level
    # A command's outcome is its one line (the service logs the client's messages).
    if func is not run.cmd_run and not args.verbose:
        client_log.setLevel(logging.CRITICAL)
    try:
        return func(args)
    except PipeteerError as e:
        print(f"pipeteer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        error = translate_kafka_error(e, args)
        if error is None:
            raise
        print(f"pipeteer: error: {error}", file=sys.stderr)
        return 2
    finally:
        client_log.setLevel(level)  # main() called in-process (tests, scripts) leaves logging as it was


if __name__ == "__main__":
    sys.exit(main())
