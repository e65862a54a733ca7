"""`pipeteer run APP`: an app's stages as one service (web stages at /<stage>/, the review console at /)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pipeteer import settings
from pipeteer.cli.common import add_app, add_backend
from pipeteer.errors import ConfigError


def cmd_run(args: argparse.Namespace) -> int:
    from pipeteer.runtime.app import require_app
    from pipeteer.runtime.console import ConsoleSettings
    from pipeteer.runtime.security import Security, is_loopback
    from pipeteer.runtime.service import EXIT_STALLED, STALL_SECONDS, StageService, tune_gc

    app = require_app(args.app)
    security = Security.from_env(
        token_file=args.auth_token_file,
        proxy_header=args.auth_proxy_header,
        trusted_proxies=",".join(args.trusted_proxy or ()),
        metrics_auth=args.metrics_auth,
        api_docs=args.api_docs,
        max_body_bytes=args.max_body_bytes,
        max_upload_bytes=args.max_upload_bytes,
        no_auth=args.no_auth,
    )
    web = [s for s in (args.stage or app.stages()) if s in app.stages() and app.is_web(s)]
    if web and not security.enabled and not is_loopback(args.host) and not security.no_auth:
        raise ConfigError(
            f"refusing to serve {', '.join(web)} on {args.host} without authentication: anyone who can reach it "
            "could complete tasks. Give reviewers tokens in a file (one 'name:token' per line) with --auth-token-file FILE or "
            f"{settings.AUTH_TOKEN_FILE.name}, or trust an auth proxy with --auth-proxy-header X-Forwarded-User "
            f"--trusted-proxy ADDRESS; or pass --no-auth ({settings.NO_AUTH.name}=1) if something in front of it authenticates"
        )
    console = ConsoleSettings.from_env(lease_seconds=args.lease_seconds, undo_seconds=args.undo_seconds)
    stall = settings.STALL_SECONDS.positive(override=args.stall_seconds)
    exit_on_stall = (settings.EXIT_ON_STALL.get() or "1").strip().lower() not in ("0", "false", "no", "off")
    service = StageService(app, args.backend, stages=args.stage or None, security=security, console=console,
                           stall_seconds=float(stall) if stall is not None else STALL_SECONDS,
                           exit_on_stall=exit_on_stall)
    where = f"http://{args.host}:{args.port}"
    kinds = ", ".join(
        f"{s} ({'web ' + where + '/' + s + '/' if app.is_web(s) else 'automatic'})" for s in service.stages
    )
    print(f"pipeteer: running {app.name!r} on {service.queues.backend.url}: {kinds}", file=sys.stderr)
    auth = "tokens" if security.token_login else "auth proxy" if security.enabled else "OFF"
    print(f"pipeteer: review console at {where}/ (authentication: {auth})", file=sys.stderr)
    tune_gc()
    asyncio.run(service.serve(args.host, args.port))
    if service.stalled_out:
        print(f"pipeteer: stopped by the watchdog: {'; '.join(st.describe() for st in service.stalled_out)}",
              file=sys.stderr)
        return EXIT_STALLED
    return 0


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run an app's stages as a service (web stages at /<stage>/)")
    add_app(run)
    add_backend(run)
    run.add_argument("--stage", action="append", help="run only this stage (repeatable); default: all stages")
    run.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="port for web stages and /metrics (default 8000)")
    sec = run.add_argument_group("security (see also the PIPETEER_AUTH_* variables below)")
    sec.add_argument(
        "--auth-token-file",
        help=f"reviewers' tokens, one 'name:token' per line (${settings.AUTH_TOKEN_FILE.name})",
    )
    sec.add_argument(
        "--auth-proxy-header", help="trust this header (e.g. X-Forwarded-User) from --trusted-proxy"
    )
    sec.add_argument(
        "--trusted-proxy", action="append", help="address or network of the auth proxy (repeatable)"
    )
    sec.add_argument(
        "--no-auth", action="store_true", help="serve a non-loopback address without authentication"
    )
    sec.add_argument("--metrics-auth", action="store_true", help="/metrics needs credentials too")
    sec.add_argument("--api-docs", action="store_true", help="serve /docs and /openapi.json")
    sec.add_argument("--max-body-bytes", type=int, help="cap on JSON and form bodies (default 1 MiB)")
    sec.add_argument("--max-upload-bytes", type=int, help="cap on uploads: files, images (default 64 MiB)")
    run.add_argument(
        "--lease-seconds", type=float, default=300.0, help="how long an opened task stays with its reviewer"
    )
    run.add_argument(
        "--undo-seconds",
        type=float,
        default=5.0,
        help="how long a decision can be undone before it is applied",
    )
    run.add_argument(
        "--stall-seconds",
        type=int,
        help=f"a stage with work waiting and no progress this long fails /healthz and the service exits with "
        f"status 3 (default 60; ${settings.STALL_SECONDS.name}; ${settings.EXIT_ON_STALL.name}=0 keeps it running)",
    )
    run.set_defaults(func=cmd_run)
