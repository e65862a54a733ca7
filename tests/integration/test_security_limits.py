"""The middleware's limits and answers over real HTTP: bodies sent chunked, Server-Timing, 401s, the favicon."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeteer import connect
from pipeteer.runtime.security import MiB, Security
from tests.apps.review import Doc, app
from tests.integration.serving import TOKENS, Served, serve, write_tokens

TIMING = re.compile(r"^app;dur=\d+\.\d\d$")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokens(tmp_path_factory.mktemp("tokens") / "tokens")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tokens: Path) -> Iterator[Served]:
    env = {"PIPETEER_AUTH_TOKEN_FILE": str(tokens)}
    with serve("tests.apps.review:app", tmp_path_factory.mktemp("limits"), env, ("--undo-seconds", "0")) as s:
        yield s


def pending_review(served: Served, id: str) -> None:
    """Push `id` and wait until it waits in the human stage."""
    asyncio.run(connect(app, served.backend).Qin.push(id, Doc(f"{id} body")))
    with httpx.Client(base_url=served.base, headers=served.auth("alice")) as http:
        for _ in range(400):
            if any(t["id"] == id for t in http.get("/review/tasks").json()):
                return
        raise TimeoutError(id)


def review_ids(served: Served) -> set[str]:
    with httpx.Client(base_url=served.base, headers=served.auth("alice")) as http:
        return {t["id"] for t in http.get("/review/tasks").json()}


def send_chunked(served: Served, path: str, content_type: str, total: int, chunk: int = MiB) -> tuple[bytes, int]:
    """POST `total` bytes chunked over a raw socket, stopping once the server answers: (answer, bytes sent)."""
    host, port = served.base.removeprefix("http://").split(":")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer, sent = b"", 0
    with socket.create_connection((host, int(port))) as s:
        s.sendall(head.encode())
        s.settimeout(0.05)
        while sent < total:
            size = min(chunk, total - sent)
            try:
                s.sendall(b"%x\r\n%s\r\n" % (size, b"x" * size))
            except OSError:  # the server answered and closed: the rest is refused
                break
            sent += size
            try:
                answer += s.recv(65536)
                if answer:
                    break
            except TimeoutError:
                pass
        else:
            s.sendall(b"0\r\n\r\n")
        s.settimeout(10)
        try:
            while more := s.recv(65536):  # the answer closes the connection
                answer += more
        except OSError:
            pass
    return answer, sent


@pytest.mark.parametrize(("content_type", "limit"), [("application/json", MiB), ("image/png", 64 * MiB)])
def test_a_chunked_body_just_over_the_limit_is_refused_before_the_app_runs(
    served: Served, content_type: str, limit: int
) -> None:
    """The route reads only its query string: were the body not read first, the decision would be applied."""
    pending_review(served, f"just-over-{content_type}")
    path = f"/review/review?id=just-over-{content_type}&ok=true"
    answer, _ = send_chunked(served, path, content_type, limit + 1)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert f"over the limit of {limit} bytes".encode() in answer
    assert f"just-over-{content_type}" in review_ids(served)  # still pending: the app never saw it


def test_a_200_mb_chunked_body_is_refused_as_soon_as_it_passes_the_limit(served: Served) -> None:
    pending_review(served, "big")
    before = served.rss_kib()
    answer, sent = send_chunked(served, "/review/review?id=big&ok=true", "application/json", 200 * MiB)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert sent < 50 * MiB, sent  # answered once past 1 MiB, not after the whole body
    assert "big" in review_ids(served)
    assert served.rss_kib() - before < 50 * 1024


def test_a_chunked_body_under_the_limit_is_given_to_the_app(served: Served) -> None:
    pending_review(served, "small")
    with httpx.Client(base_url=served.base, headers=served.auth("alice")) as http:
        opened = http.post("/console/api/open", params={"stage": "review", "id": "small"})
        assert opened.status_code == 200, opened.text

        def body() -> Iterator[bytes]:  # an iterator: httpx sends it chunked, without a length
            yield b'{"val'
            yield b'ue": true}'

        r = http.post("/console/api/decide", params={"stage": "review", "id": "small"}, content=body(),
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json()["state"] == "applied", r.text
        no_body = http.post("/review/review", params={"id": "nope", "ok": "true"})  # a POST with no body at all
        assert no_body.status_code == 404
    assert "small" not in review_ids(served)


def test_every_answer_says_its_server_time(served: Served) -> None:
    with httpx.Client(base_url=served.base) as http:
        answers = [http.get("/healthz"), http.get("/console/api/stages"), http.get("/nope", headers=served.auth("bob")),
                   http.post("/review/review?id=x&ok=true", headers={"Origin": "http://evil.example"}),
                   http.get("/favicon.ico")]
    for r in answers:
        assert TIMING.match(r.headers["server-timing"]), (r.request.url, r.headers.get("server-timing"))
        assert float(r.headers["server-timing"].split("=")[1]) >= 0


def test_an_expired_session_on_a_json_request_says_where_to_log_in(served: Served, tokens: Path) -> None:
    security = Security.from_env({"PIPETEER_AUTH_TOKEN_FILE": str(tokens)})  # the secret `pipeteer run` derives
    expired = security.session_cookie("alice", seconds=-60)
    host = served.base.removeprefix("http://")
    browser = {"Cookie": f"pipeteer_session={expired}", "Accept": "application/json"}
    with httpx.Client(base_url=served.base) as http:
        assert http.get("/console/api/stages",
                        headers={"Cookie": f"pipeteer_session={security.session_cookie('alice')}"}).status_code == 200
        r = http.get("/console/api/tasks?stage=review", headers={**browser, "Referer": f"http://{host}/console/?stage=review"})
        assert r.status_code == 401
        assert r.json() == {"detail": "your session has expired or you are not logged in",
                            "login": "/login?next=%2Fconsole%2F%3Fstage%3Dreview"}
        r = http.post("/console/api/next?stage=review", headers={**browser, "Referer": "http://evil.example/console/"})
        assert r.status_code == 401 and r.json()["login"] == "/login?next=%2F"  # another site's page: home
        r = http.get("/review/tasks", headers={"Accept": "application/json", "Sec-Fetch-Mode": "cors"})  # no session at all
        assert r.status_code == 401 and r.json()["login"] == "/login?next=%2F"
        script = http.get("/console/api/tasks?stage=review", headers={"Accept": "application/json"})  # not a browser
        assert script.status_code == 401 and "Authorization: Bearer <token>" in script.json()["detail"]
        assert "login" not in script.json() and script.headers["www-authenticate"].startswith("Bearer")
        page = http.get("/console/?stage=review", headers={"Accept": "text/html", "Cookie": browser["Cookie"]})
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fconsole%2F%3Fstage%3Dreview"


def test_the_favicon_is_served_without_credentials(served: Served) -> None:
    with httpx.Client(base_url=served.base) as http:
        r = http.get("/favicon.ico")
        head = http.head("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    assert r.content.startswith(b"<svg") and b"<script" not in r.content
    assert "max-age=" in r.headers["cache-control"] and r.headers["x-content-type-options"] == "nosniff"
    assert head.status_code == 200

