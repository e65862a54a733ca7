"""Security of every HTTP route `pipeteer run` serves: authentication, CSRF, body limits, headers.

One pure-ASGI middleware wraps the whole service (the console, every web artifact the app
brings, `/metrics`), so a user-written FastAPI stage is covered without doing anything:

- **Authentication** (when configured): a bearer token from the file named by
  `PIPETEER_AUTH_TOKEN_FILE` (one per line, `name:token` to name the reviewer), a signed
  HttpOnly SameSite=Strict session cookie obtained once at `/login` with such a token, or a
  trusted auth-proxy header (e.g. oauth2-proxy's `X-Forwarded-User`), believed only from the
  proxy addresses configured. Otherwise 401 (a browser asking for a page is sent to `/login`; a
  browser's JSON request is told where to log in, in the answer's `login`).
  `/healthz`, `/readyz` and `/login` stay open; `/metrics` too unless `metrics_auth`.
- **CSRF**: a state-changing request (POST, PUT, PATCH, DELETE) whose `Origin` (or
  `Sec-Fetch-Site`) says it comes from another site is refused with 403, whatever its
  credentials. Clients that are not browsers send neither header and are judged by their token.
- **Limits**: a body over the limit for its content type is refused with 413 before the app sees
  the request: by `Content-Length` before it is read, or, sent chunked, by reading and counting
  it first (the app is then given the body read).
- **Headers**: a CSP with no inline script and `frame-ancestors 'none'`, `nosniff`, no referrer
  off-site, and `Server-Timing: app;dur=<ms>` (from the request's arrival to its answer's start).
- **Favicon**: a tiny built-in icon at `/favicon.ico`, open, so browsers' automatic requests for
  it are neither 401 nor 404.

Who is asking is kept in `current_reviewer` for the request's duration, so the code that
completes a task can record who did it.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from pipeteer import settings
from pipeteer.errors import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

current_reviewer: contextvars.ContextVar[str | None] = contextvars.ContextVar("pipeteer_reviewer", default=None)
"""The name of who sent the request being served (None when authentication is off)."""

SESSION_COOKIE = "pipeteer_session"
KiB, MiB = 1024, 1024 * 1024
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UPLOAD_TYPES = ("multipart/form-data", "application/octet-stream", "image/")
FAVICON_PATH = "/favicon.ico"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login", "/logout", "/static/console.css", FAVICON_PATH})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
MIN_TOKEN_LENGTH = 16
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<rect width="16" height="16" rx="3" fill="#2f5d8a"/>'
    b'<path d="M4 8.5l2.5 2.5L12 5" stroke="#fff" stroke-width="2" fill="none"/></svg>'
)
LOGIN_NEEDED = "your session has expired or you are not logged in"


@dataclass(frozen=True)
class Limits:
    """Request body caps, in bytes: uploads (multipart, octet-stream, images) and everything else (JSON, forms)."""

    body: int = 1 * MiB
    upload: int = 64 * MiB

    def for_type(self, content_type: str) -> int:
        return self.upload if content_type.startswith(UPLOAD_TYPES) else self.body


@dataclass(frozen=True)
class Security:
    """How the service authenticates. Built from the environment by `Security.from_env()`.

    >>> Security().enabled
    False
    >>> s = Security(tokens={"0123456789abcdef0123": "alice"})
    >>> s.enabled, s.name_of_token("0123456789abcdef0123"), s.name_of_token("nope")
    (True, 'alice', None)
    """

    tokens: Mapping[str, str] = field(default_factory=dict, repr=False)  # token -> reviewer name
    proxy_header: str | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    session_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    session_seconds: int = 12 * 3600
    metrics_auth: bool = False
    api_docs: bool = False
    limits: Limits = Limits()
    allowed_origins: tuple[str, ...] = ()
    no_auth: bool = False  # serving people's pages on a public address without authentication is intended

    @property
    def enabled(self) -> bool:
        return bool(self.tokens) or self.proxy_header is not None

    @property
    def token_login(self) -> bool:
        return bool(self.tokens)

    def name_of_token(self, token: str) -> str | None:
        """Whose token this is; every token is compared in constant time, so timing tells nothing."""
        found = None
        for known, name in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = name
        return found

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Security:
        """The settings from `PIPETEER_AUTH_*` and friends; `overrides` (from the command line) win.

        - `PIPETEER_AUTH_TOKEN_FILE`: bearer tokens, one per line, `name:token` (or a bare token).
        - `PIPETEER_AUTH_PROXY_HEADER` (e.g. `X-Forwarded-User`) and `PIPETEER_AUTH_TRUSTED_PROXIES`
          (comma-separated addresses or networks the header is believed from; required with it).
        - `PIPETEER_SESSION_SECRET`: signs the console's cookies; default: derived from the token
          file, so every replica with the same Secret accepts the same sessions.
        - `PIPETEER_METRICS_AUTH=1`: `/metrics` needs credentials too. `PIPETEER_API_DOCS=1`: serve `/docs`.
        - `PIPETEER_MAX_BODY_BYTES` (default 1 MiB), `PIPETEER_MAX_UPLOAD_BYTES` (default 64 MiB).
        - `PIPETEER_ALLOWED_ORIGINS`: other origins allowed to send state-changing requests.
        - `PIPETEER_NO_AUTH=1` (or `--no-auth`): people's pages on a public address without
          authentication are intended (something in front authenticates).
        """
        env = settings.environ(env)

        def setting(key: str, variable: settings.Variable) -> str | None:
            value = overrides.get(key)
            return str(value) if value not in (None, "") else (variable.get(env) or None)

        tokens: dict[str, str] = {}
        secret: bytes | None = None
        token_file = setting("token_file", settings.AUTH_TOKEN_FILE)
        if token_file:
            tokens, raw = read_token_file(Path(token_file))
            secret = hmac.new(b"pipeteer session secret", raw, hashlib.sha256).digest()
        if (explicit := settings.SESSION_SECRET.get(env)) is not None:
            if len(explicit) < MIN_TOKEN_LENGTH:
                raise ConfigError(f"PIPETEER_SESSION_SECRET is too short: give at least {MIN_TOKEN_LENGTH} characters")
            secret = explicit.encode()
        proxy_header = setting("proxy_header", settings.AUTH_PROXY_HEADER)
        proxies = _networks(setting("trusted_proxies", settings.AUTH_TRUSTED_PROXIES) or "")
        if proxy_header and not proxies:
            raise ConfigError(
                f"auth proxy header {proxy_header!r} needs the proxy's addresses: set PIPETEER_AUTH_TRUSTED_PROXIES "
                "(or --trusted-proxy) to the addresses or networks the proxy connects from"
            )
        return cls(
            tokens=tokens,
            proxy_header=proxy_header.lower() if proxy_header else None,
            trusted_proxies=proxies,
            session_secret=secret or secrets.token_bytes(32),
            metrics_auth=bool(overrides.get("metrics_auth")) or settings.METRICS_AUTH.flag(env),
            api_docs=bool(overrides.get("api_docs")) or settings.API_DOCS.flag(env),
            limits=Limits(
                body=settings.MAX_BODY_BYTES.positive(env, overrides.get("max_body_bytes")) or Limits.body,
                upload=settings.MAX_UPLOAD_BYTES.positive(env, overrides.get("max_upload_bytes")) or Limits.upload,
            ),
            allowed_origins=tuple(
                o.strip().rstrip("/") for o in (settings.ALLOWED_ORIGINS.get(env) or "").split(",") if o.strip()
            ),
            no_auth=bool(overrides.get("no_auth")) or settings.NO_AUTH.flag(env),
        )

    # --- sessions: "name.expiry.signature", the name base64url-encoded ---

    def session_cookie(self, name: str, now: float | None = None, seconds: float | None = None) -> str:
        """A signed token naming `name` until `seconds` (default: the session length) from now."""
        expiry = int((time.time() if now is None else now) + (self.session_seconds if seconds is None else seconds))
        payload = f"{base64.urlsafe_b64encode(name.encode()).decode().rstrip('=')}.{expiry}"
        return f"{payload}.{self._sign(payload)}"

    def session_name(self, cookie: str, now: float | None = None) -> str | None:
        payload, _, signature = cookie.rpartition(".")
        if not payload or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        encoded, _, expiry = payload.partition(".")
        if not expiry.isdigit() or int(expiry) < (time.time() if now is None else now):
            return None
        try:
            return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except ValueError:
            return None

    def _sign(self, payload: str) -> str:
        return hmac.new(self.session_secret, payload.encode(), hashlib.sha256).hexdigest()


def read_token_file(path: Path) -> tuple[dict[str, str], bytes]:
    """Tokens by value → reviewer name, and the file's bytes. Blank lines and `#` comments are skipped."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"auth token file {str(path)!r} cannot be read: {e.strerror}") from None
    tokens: dict[str, str] = {}
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        name, token = (name.strip(), token.strip()) if sep else (f"token-{n}", name)
        where = f"auth token file {str(path)!r}, line {n}"
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"{where}: the token is shorter than {MIN_TOKEN_LENGTH} characters")
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").replace("@", "").isalnum():
            raise ConfigError(f"{where}: the name must be letters, digits, '-', '_', '.' or '@'")
        if token in tokens:
            raise ConfigError(f"{where}: the same token is already given to {tokens[token]!r}")
        tokens[token] = name
    if not tokens:
        raise ConfigError(f"auth token file {str(path)!r} has no token (one per line, 'name:token')")
    return tokens, raw


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ConfigError(f"trusted proxy {part!r} is not an IP address or network") from None
    return tuple(nets)


def is_loopback(host: str) -> bool:
    """Whether a listen address only takes connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SecurityMiddleware:
    """Wraps the service's ASGI app: headers, CSRF, authentication and body limits, in that order."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app, self.security = app, security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "/")
        name = self._who(scope, headers)
        if scope["type"] == "websocket":  # every handshake is checked like a state change
            if self._cross_site(headers) or (name is None and self.security.enabled and not self._open(path)):
                await send({"type": "websocket.close", "code": 1008})
                return
            token = current_reviewer.set(name)
            try:
                await self.app(scope, receive, send)
            finally:
                current_reviewer.reset(token)
            return
        send = _with_headers(send, time.perf_counter())
        method = scope.get("method", "GET")
        if path == FAVICON_PATH and method in ("GET", "HEAD"):
            await _favicon(send)
            return
        if method in UNSAFE_METHODS and (refusal := self._cross_site(headers)):
            await _error(send, 403, refusal)
            return
        if name is None and self.security.enabled and not self._open(path):
            await self._unauthenticated(scope, headers, send)
            return
        limit = self.security.limits.for_type(headers.get("content-type", "").lower())
        length = headers.get("content-length", "")
        if length.isdigit():
            # The server reads no more than Content-Length says (h11 refuses a longer body), so
            # the length is all there is to check, before a byte of the body is read.
            if int(length) > limit:
                await _error(send, 413, f"request body of {int(length)} bytes is over the limit of {limit} bytes")
                return
        elif method in UNSAFE_METHODS or "transfer-encoding" in headers:
            # Sent chunked, the body's size is known only once read, and a route that reads only
            # its query string would never read it: the whole body is read and counted here,
            # before the app runs, and given to the app afterwards.
            body = await _read_body(receive, limit)
            if body is None:
                return  # the client went away before sending all of it
            if isinstance(body, int):
                await _error(send, 413, f"request body sent without a length is over the limit of {limit} bytes")
                return
            receive = _replay(body, receive)
        token = current_reviewer.set(name)
        try:
            await self.app(scope, receive, send)
        finally:
            current_reviewer.reset(token)

    async def _unauthenticated(self, scope: Scope, headers: Mapping[str, str], send: Send) -> None:
        """No valid credentials: browsers are sent to log in (a page) or told where to (JSON); others, how."""
        path = scope.get("path", "/")
        token_login = self.security.token_login
        wants_json = "application/json" in headers.get("accept", "") or path.startswith("/console/api/")
        if token_login and wants_json and _from_browser(headers):
            # The console's page outlived its session: it is told where to log in and come back to.
            back = safe_next(self._same_origin_path(headers.get("referer", ""), headers))
            await _error(send, 401, LOGIN_NEEDED, body_fields={"login": "/login?next=" + quote(back, safe="")})
        elif token_login and scope.get("method") == "GET" and "text/html" in headers.get("accept", ""):
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            await _redirect(send, "/login?next=" + quote(target, safe=""))
        else:
            await _error(send, 401, "authentication required: send 'Authorization: Bearer <token>' or log in at /login",
                         [(b"www-authenticate", b'Bearer realm="pipeteer"')])

    @staticmethod
    def _same_origin_path(referer: str, headers: Mapping[str, str]) -> str:
        """The path (and query) of a Referer on this site, else "/"."""
        parts = urlsplit(referer)
        if not parts.netloc or parts.netloc.lower() != headers.get("host", "").lower():
            return "/"
        return parts.path + ("?" + parts.query if parts.query else "")

    def _open(self, path: str) -> bool:
        return path in OPEN_PATHS or (path == "/metrics" and not self.security.metrics_auth)

    def _cross_site(self, headers: Mapping[str, str]) -> str | None:
        """Why a state-changing request is refused as cross-site, or None."""
        origin = headers.get("origin")
        if origin is not None:
            if origin.rstrip("/") in self.security.allowed_origins:
                return None
            host = headers.get("host", "")
            if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
                return "cross-origin request refused: its Origin is not this site"
            return None
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"cross-site request refused (Sec-Fetch-Site: {site[:40]})"
        return None

    def _who(self, scope: Scope, headers: Mapping[str, str]) -> str | None:
        s = self.security
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return s.name_of_token(auth[7:].strip())
        if s.proxy_header is not None and (user := headers.get(s.proxy_header)):
            client = scope.get("client")
            if client and _trusted(client[0], s.trusted_proxies):
                return user.strip()[:200]
        peer = headers.get("x-pipeteer-peer")  # another instance acting for a reviewer (console peers)
        if peer is not None:
            return s.session_name(peer)
        cookie = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
        return s.session_name(cookie) if cookie else None


def _trusted(host: str, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in n for n in nets)


def _cookie(header: str, key: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == key:
            return value
    return None


def _from_browser(headers: Mapping[str, str]) -> bool:
    """Whether a request comes from a browser: browsers send Sec-Fetch-*; a session cookie was set by one."""
    return "sec-fetch-mode" in headers or "sec-fetch-site" in headers or _cookie(headers.get("cookie", ""), SESSION_COOKIE) is not None


def _with_headers(send: Send, arrived: float) -> Send:
    """`send` adding the security headers, and the time since `arrived` (perf_counter) as Server-Timing."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            timing = (b"server-timing", b"app;dur=%.2f" % ((time.perf_counter() - arrived) * 1000))
            message["headers"] = [*message.get("headers", []), *(h for h in SECURITY_HEADERS if h[0] not in present),
                                  timing]
        await send(message)

    return wrapped


async def _read_body(receive: Receive, limit: int) -> list[Message] | int | None:
    """The request body's messages; or, past `limit`, the count read so far; or None if the client left."""
    messages: list[Message] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        seen += len(message.get("body", b""))
        if seen > limit:
            return seen
        messages.append(message)
        if not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` giving the body already read, then whatever comes next (the client leaving)."""
    pending = iter(messages)

    async def replayed() -> Message:
        return next(pending, None) or await receive()

    return replayed


async def _favicon(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"image/svg+xml"), (b"content-length", str(len(FAVICON)).encode()),
        (b"cache-control", b"public, max-age=2592000, immutable")]})
    await send({"type": "http.response.body", "body": FAVICON})


async def _error(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None,
                 body_fields: Mapping[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail, **(body_fields or {})}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    # the request body (if any) is never read: the connection closes rather than draining it
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (no `//host` or `scheme:`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def form_fields(body: bytes) -> dict[str, str]:
    """A urlencoded form's fields (the last value of each)."""
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", errors="replace")).items()}
