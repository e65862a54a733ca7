"""Security of `pipeteer run` over real HTTP, with hostile requests: every route, every way in."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from fastapi.routing import APIRoute
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from pipeteer import connect
from pipeteer.runtime.security import Security, SecurityMiddleware
from pipeteer.runtime.service import StageService
from tests.apps.review import Doc, app
from tests.integration.serving import TOKENS, Served, serve, write_tokens
from tests.integration.test_sqlite_processes import ROOT

OPEN = {"/healthz", "/readyz", "/login", "/logout", "/metrics", "/static/console.css"}


def every_route() -> list[tuple[str, str]]:
    """(method, path) of every route the service serves, the app's own web stages included."""
    service = StageService(app, "memory://")
    out: list[tuple[str, str]] = []

    def walk(routes: list[object], prefix: str) -> None:
        for r in routes:
            if isinstance(r, APIRoute):
                path = re.sub(r"\{[^}]+\}", "x", prefix + r.path)
                out.extend((m, path) for m in sorted(r.methods))
            elif isinstance(r, Mount):
                walk(list(getattr(r.app, "routes", [])), prefix + r.path)
            elif hasattr(r, "original_router"):  # FastAPI's included router (no prefix here)
                walk(list(r.original_router.routes), prefix)

    walk(list(service.root.routes), "")
    return out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = {"PIPETEER_AUTH_TOKEN_FILE": str(write_tokens(tmp_path / "tokens"))}
    with serve("tests.apps.review:app", tmp_path, env, ("--undo-seconds", "0")) as s:
        yield s


def test_every_route_needs_credentials(served: Served) -> None:
    routes = every_route()
    assert ("POST", "/review/review") in routes and ("POST", "/console/api/decide") in routes
    with httpx.Client(base_url=served.base) as http:
        for method, path in routes:
            r = http.request(method, path)
            if path in OPEN:
                assert "authentication required" not in r.text, (method, path)
            else:
                assert r.status_code == 401, (method, path, r.status_code)
                assert r.headers["www-authenticate"].startswith("Bearer")
            wrong = http.request(method, path, headers={"Authorization": "Bearer not-a-token-at-all-00"})
            assert path in OPEN or wrong.status_code == 401, (method, path)


def test_tokens_name_the_reviewer_and_completions_are_recorded(served: Served) -> None:
    qs = connect(app, served.backend)
    import asyncio

    asyncio.run(qs.Qin.push("d1", Doc("headline body")))
    with httpx.Client(base_url=served.base, headers=served.auth("bob")) as http:
        for _ in range(200):
            if http.get("/review/tasks").json():
                break
        r = http.post("/review/review", params={"id": "d1", "ok": "true"})
        assert r.status_code == 200, r.text
        metrics = http.get("/metrics").text
    assert 'pipeteer_reviewer_completions_total{reviewer="bob",stage="review",workflow="news"} 1.0' in metrics


def test_cross_origin_state_changes_are_refused_whatever_the_credentials(served: Served) -> None:
    with httpx.Client(base_url=served.base, headers=served.auth("alice")) as http:
        evil = {"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}
        for path in ("/review/review?id=x&ok=true", "/console/api/next?stage=review", "/login"):
            r = http.post(path, headers=evil)
            assert r.status_code == 403 and "cross-origin" in r.json()["detail"], path
        assert http.post("/review/review?id=x&ok=true", headers={"Origin": "null"}).status_code == 403
        assert http.post("/review/review?id=x&ok=true", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        host = served.base.removeprefix("http://")
        same = http.post("/console/api/next?stage=review", headers={"Origin": f"http://{host}"})
        assert same.status_code == 200  # the console's own page


def test_security_headers_and_no_api_docs(served: Served) -> None:
    with httpx.Client(base_url=served.base, headers=served.auth("alice")) as http:
        for path in ("/", "/healthz", "/review/tasks", "/nope"):
            h = http.get(path).headers
            assert "frame-ancestors 'none'" in h["content-security-policy"]
            assert "script-src 'self'" in h["content-security-policy"] and "unsafe-inline" not in h["content-security-policy"]
            assert h["x-content-type-options"] == "nosniff"
        for path in ("/docs", "/redoc", "/openapi.json", "/review/docs", "/review/openapi.json"):
            assert http.get(path).status_code == 404, path


def _rss_after_hostile_body(served: Served, path: str, headers: str, total: int) -> tuple[bytes, int]:
    """Send a request with a huge body over a raw socket until the server answers or stops reading."""
    host, port = served.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n".encode())
        s.settimeout(0.2)
        chunk, sent, answer = b"x" * (1 << 20), 0, b""
        if "chunked" in headers:
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        while sent < total:
            try:
                s.sendall(chunk)
                sent += len(chunk)
            except OSError:
                break
            try:
                answer += s.recv(65536)
                if answer:
                    break
            except TimeoutError:
                pass
        s.settimeout(10)
        try:
            while b"\r\n\r\n" not in answer:
                more = s.recv(65536)
                if not more:
                    break
                answer += more
        except OSError:
            pass
    return answer, served.rss_kib()


def test_a_200_mb_body_is_refused_before_it_is_read(served: Served) -> None:
    token = TOKENS["alice"]
    before = served.rss_kib()
    big = 200 * 1024 * 1024
    answer, after = _rss_after_hostile_body(
        served, "/console/api/decide?stage=review&id=x",
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {big}\r\n", big)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    answer, after = _rss_after_hostile_body(
        served, "/console/api/decide?stage=review&id=x",
        f"Authorization: Bearer {token}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n", big)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert after - before < 50 * 1024, (before, after)


def test_errors_never_echo_unbounded_input(served: Served) -> None:
    long_id = "A" * 60_000
    with httpx.Client(base_url=served.base, headers=served.auth("alice")) as http:
        r = http.post("/review/review", params={"id": long_id, "ok": "true"})
        assert r.status_code == 404 and len(r.content) < 1000
        r = http.post("/console/api/decide", params={"stage": "review", "id": "x"}, content=b'{"value": "' + b"B" * 500_000 + b'"}')
        assert r.status_code in (404, 422) and len(r.content) < 2000
        r = http.post("/review/review", params={"id": "x", "ok": "C" * 50_000})
        assert r.status_code == 422 and "CCCC" not in r.text


def test_browser_login_gives_a_strict_httponly_session(served: Served) -> None:
    with httpx.Client(base_url=served.base) as http:
        r = http.get("/console/?stage=review", headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fconsole%2F%3Fstage%3Dreview"
        bad = http.post("/login", content=b"token=wrong-token-000000000&next=/", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert bad.status_code == 401 and "not valid" in bad.text and "set-cookie" not in bad.headers
        r = http.post("/login", content=f"token={TOKENS['alice']}&next=//evil.example/".encode(),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 303 and r.headers["location"] == "/"  # never off-site
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert http.get("/console/api/stages").status_code == 200  # the cookie now authenticates
        forged = http.cookies["pipeteer_session"].rsplit(".", 1)[0] + ".00"
        http.cookies.clear()
        http.cookies.set("pipeteer_session", forged)
        assert http.get("/console/api/stages").status_code == 401


def test_a_trusted_proxy_header_is_believed_only_from_the_proxy(tmp_path: Path) -> None:
    env = {"PIPETEER_AUTH_PROXY_HEADER": "X-Forwarded-User", "PIPETEER_AUTH_TRUSTED_PROXIES": "127.0.0.1"}
    with serve("tests.apps.review:app", tmp_path, env) as s, httpx.Client(base_url=s.base) as http:
        assert http.get("/console/api/stages").status_code == 401
        assert http.get("/console/api/stages", headers={"X-Forwarded-User": "carol"}).status_code == 200
    env["PIPETEER_AUTH_TRUSTED_PROXIES"] = "192.0.2.10/32"  # not where the requests come from
    with serve("tests.apps.review:app", tmp_path, env) as s, httpx.Client(base_url=s.base) as http:
        assert http.get("/console/api/stages", headers={"X-Forwarded-User": "carol"}).status_code == 401


def test_run_refuses_a_public_address_without_authentication() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pipeteer", "run", "tests.apps.review:app", "--backend", "memory://", "--host", "0.0.0.0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2
    assert "refusing to serve review on 0.0.0.0 without authentication" in r.stderr and "--auth-token-file" in r.stderr
    automatic = subprocess.run(  # an automatic stage serves no people's page: it may run
        [sys.executable, "-m", "pipeteer", "run", "tests.apps.review:app", "--backend", "memory://", "--host", "0.0.0.0",
         "--stage", "summarize", "--port", "70000"],  # past the check, the bind fails at once
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert "refusing" not in automatic.stderr and automatic.returncode != 0


def test_bad_token_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "tokens"
    bad.write_text("alice:short\n")
    r = subprocess.run(
        [sys.executable, "-m", "pipeteer", "run", "tests.apps.review:app", "--backend", "memory://",
         "--auth-token-file", str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2 and f"auth token file '{bad}', line 1: the token is shorter than 16" in r.stderr


def test_websocket_handshakes_are_checked_too() -> None:
    """A user's web stage may serve a websocket: without credentials, or from another site, it is closed."""
    inner = FastAPI()

    @inner.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("hello")
        await socket.close()

    guarded = SecurityMiddleware(inner, Security(tokens={TOKENS["alice"]: "alice"}))
    bearer = {"Authorization": f"Bearer {TOKENS['alice']}"}
    for headers in ({}, {**bearer, "Origin": "http://evil.example"}):
        with pytest.raises(WebSocketDisconnect), TestClient(guarded).websocket_connect("/ws", headers=headers) as s:
            s.receive_text()
    with TestClient(guarded).websocket_connect("/ws", headers=bearer) as s:
        assert s.receive_text() == "hello"
