"""`pipeteer …` commands: thin over the layers; every command takes an APP as `module:attribute`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pipeteer.errors import ConfigError, PipeteerError
from pipeteer.runtime.app import App, load_app
from pipeteer.spec import Workflow

Command = Callable[[argparse.Namespace], int]


def _run(args: argparse.Namespace) -> int:
    from pipeteer.runtime.app import require_app
    from pipeteer.runtime.console import ConsoleSettings
    from pipeteer.runtime.security import Security, is_loopback
    from pipeteer.runtime.service import StageService

    app = require_app(args.app)
    security = Security.from_env(
        token_file=args.auth_token_file, proxy_header=args.auth_proxy_header,
        trusted_proxies=",".join(args.trusted_proxy or ()), metrics_auth=args.metrics_auth,
        api_docs=args.api_docs, max_body_bytes=args.max_body_bytes, max_upload_bytes=args.max_upload_bytes,
        no_auth=args.no_auth,
    )
    web = [s for s in (args.stage or app.stages()) if s in app.stages() and app.is_web(s)]
    if web and not security.enabled and not is_loopback(args.host) and not security.no_auth:
        raise ConfigError(
            f"refusing to serve {', '.join(web)} on {args.host} without authentication: anyone who can reach it "
            "could complete tasks. Give reviewers tokens in a file (one 'name:token' per line) with --auth-token-file FILE or "
            "PIPETEER_AUTH_TOKEN_FILE, or trust an auth proxy with --auth-proxy-header X-Forwarded-User "
            "--trusted-proxy ADDRESS; or pass --no-auth (PIPETEER_NO_AUTH=1) if something in front of it authenticates"
        )
    console = ConsoleSettings.from_env(lease_seconds=args.lease_seconds, undo_seconds=args.undo_seconds)
    service = StageService(app, args.backend, stages=args.stage or None, security=security, console=console)
    where = f"http://{args.host}:{args.port}"
    kinds = ", ".join(
        f"{s} ({'web ' + where + '/' + s + '/' if app.is_web(s) else 'automatic'})" for s in service.stages
    )
    print(f"pipeteer: running {app.name!r} on {service.queues.backend.url}: {kinds}", file=sys.stderr)
    auth = "tokens" if security.token_login else "auth proxy" if security.enabled else "OFF"
    print(f"pipeteer: review console at {where}/ (authentication: {auth})", file=sys.stderr)
    asyncio.run(service.serve(args.host, args.port))
    return 0


def _workflow(ref: str) -> Workflow[Any, Any]:
    obj = load_app(ref)
    return obj.workflow if isinstance(obj, App) else obj


def _schemas_export(args: argparse.Namespace) -> int:
    from pipeteer.codec.commands import export_command

    return export_command(_workflow(args.app).state_types(), args.output)


def _schemas_check(args: argparse.Namespace) -> int:
    from pipeteer.codec.commands import check_command

    return check_command(_workflow(args.app).state_types(), args.against, args.mode)


def _dlq_list(args: argparse.Namespace) -> int:
    from pipeteer.runtime.dlq import cmd_dlq_list

    return cmd_dlq_list(args)


def _dlq_replay(args: argparse.Namespace) -> int:
    from pipeteer.runtime.dlq import cmd_dlq_replay

    return cmd_dlq_replay(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeteer", description="Queue-based workflows that include people."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run an app's stages as a service (web stages at /<stage>/)")
    run.add_argument("app", help="the app, as module:attribute (e.g. topologies.perspective_correction:app)")
    run.add_argument(
        "--backend",
        default=None,
        help="memory://, sqlite:///path.db or kafka://host:port (default: $PIPETEER_BACKEND, else sqlite:///queues.db)",
    )
    run.add_argument("--stage", action="append", help="run only this stage (repeatable); default: all stages")
    run.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="port for web stages and /metrics (default 8000)")
    sec = run.add_argument_group("security (see also the PIPETEER_AUTH_* variables in the README)")
    sec.add_argument("--auth-token-file", help="reviewers' tokens, one 'name:token' per line ($PIPETEER_AUTH_TOKEN_FILE)")
    sec.add_argument("--auth-proxy-header", help="trust this header (e.g. X-Forwarded-User) from --trusted-proxy")
    sec.add_argument("--trusted-proxy", action="append", help="address or network of the auth proxy (repeatable)")
    sec.add_argument("--no-auth", action="store_true", help="serve a non-loopback address without authentication")
    sec.add_argument("--metrics-auth", action="store_true", help="/metrics needs credentials too")
    sec.add_argument("--api-docs", action="store_true", help="serve /docs and /openapi.json")
    sec.add_argument("--max-body-bytes", type=int, help="cap on JSON and form bodies (default 1 MiB)")
    sec.add_argument("--max-upload-bytes", type=int, help="cap on uploads: files, images (default 64 MiB)")
    run.add_argument("--lease-seconds", type=float, default=300.0, help="how long an opened task stays with its reviewer")
    run.add_argument("--undo-seconds", type=float, default=5.0, help="how long a decision can be undone before it is applied")
    run.set_defaults(func=_run)

    schemas = sub.add_parser("schemas", help="Avro schemas of the workflow's states").add_subparsers(
        dest="schemas_command", required=True, metavar="ACTION"
    )
    export = schemas.add_parser("export", help="write one .avsc per state")
    export.add_argument("app", help="the app or workflow, as module:attribute")
    export.add_argument("-o", "--output", default="schemas", help="directory to write to (default: schemas/)")
    export.set_defaults(func=_schemas_export)
    check = schemas.add_parser(
        "check", help="check the states against committed .avsc files; exit 1 on a break"
    )
    check.add_argument("app", help="the app or workflow, as module:attribute")
    check.add_argument("--against", default="schemas", help="directory of .avsc files (default: schemas/)")
    check.add_argument("--mode", choices=["backward", "forward", "full"], default="backward")
    check.set_defaults(func=_schemas_check)

    dlq = sub.add_parser("dlq", help="inspect and replay a stage's dead letters").add_subparsers(
        dest="dlq_command", required=True, metavar="ACTION"
    )
    for name, func, what in (
        ("list", _dlq_list, "list the dead letters of a stage"),
        ("replay", _dlq_replay, "put dead letters back in the stage"),
    ):
        p = dlq.add_parser(name, help=what)
        p.add_argument("app", help="the app, as module:attribute")
        p.add_argument(
            "--backend",
            default=None,
            help="the backend URL (default: $PIPETEER_BACKEND, else sqlite:///queues.db)",
        )
        p.add_argument("--stage", required=True, help="the stage whose dead letters to use")
        if name == "list":
            p.add_argument("--stacktrace", action="store_true", help="print each stack trace")
            p.add_argument("--json", action="store_true", help="print JSON")
        else:
            p.add_argument("--id", action="append", help="replay this item (repeatable)")
            p.add_argument("--all", action="store_true", help="replay every dead letter")
        p.set_defaults(func=func)

    from pipeteer.compile.commands import register as register_compile
    from pipeteer.runtime.batch import register as register_batch
    from pipeteer.runtime.blobs import register as register_blobs

    register_compile(sub)
    register_batch(sub)
    register_blobs(sub)
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
    if func is not _run and not args.verbose:  # a command's outcome is its one line; the service logs them
        client_log.setLevel(logging.CRITICAL)
    try:
        return func(args)
    except PipeteerError as e:
        print(f"pipeteer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        client_log.setLevel(level)  # main() called in-process (tests, scripts) leaves logging as it was


if __name__ == "__main__":
    sys.exit(main())
