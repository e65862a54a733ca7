"""The other instances of a human stage, for a console that shows every task whichever instance serves it.

On Kafka a human stage may run as several instances, each holding the pending tasks of the
partitions it was assigned. A reviewer's browser talks to one of them (through a Service); that
instance lists the tasks of all of them, and sends an action on a task it does not hold to the
instance that does, where the decision is applied inside that instance's exactly-once
transaction (its lease, its undo window). Nothing is routed by partition arithmetic: every peer
answers for the tasks it holds now, so a rebalance is followed at the next request.

Peers are named by `PIPETEER_CONSOLE_PEERS`: base URLs (`http://10.0.0.7:8000`), or
`dns:HOST:PORT` for every address a name resolves to (a Kubernetes headless Service). An
instance finds itself in the list by its own id and skips it. Requests between peers carry the
reviewer's name in a short-lived signed header (`X-Pipeteer-Peer`), signed with the session
secret every replica shares (derived from the token file, or `PIPETEER_SESSION_SECRET`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

log = logging.getLogger("pipeteer.console")

PEER_HEADER = "x-pipeteer-peer"
INSTANCE_HEADER = "x-pipeteer-instance"
PEER_TIMEOUT = 3.0
RESOLVE_EVERY = 5.0
PEER_TOKEN_SECONDS = 60


def parse_peers(spec: str) -> tuple[str, ...]:
    """The entries of `PIPETEER_CONSOLE_PEERS`, checked.

    >>> parse_peers("http://10.0.0.7:8000/, dns:validation-peers:8000")
    ('http://10.0.0.7:8000', 'dns:validation-peers:8000')
    """
    from pipeteer.errors import ConfigError

    out = []
    for part in (p.strip().rstrip("/") for p in spec.split(",")):
        if not part:
            continue
        if part.startswith("dns:"):
            host, _, port = part[4:].rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"console peer {part!r}: write dns:HOST:PORT")
        elif not part.startswith(("http://", "https://")):
            raise ConfigError(f"console peer {part!r}: give a base URL (http://HOST:PORT) or dns:HOST:PORT")
        out.append(part)
    return tuple(out)


class Peers:
    """The other instances, asked concurrently; an instance that does not answer is left out (and logged once)."""

    def __init__(self, spec: Sequence[str], sign: Any) -> None:
        self.spec = tuple(spec)
        self.instance = uuid.uuid4().hex
        self._sign = sign  # reviewer name -> a short-lived token the peers accept
        self._resolved: tuple[float, list[str]] = (0.0, [])
        self._self: set[str] = set()
        self._down: set[str] = set()
        self._client: httpx.AsyncClient | None = None

    def __bool__(self) -> bool:
        return bool(self.spec)

    async def urls(self) -> list[str]:
        at, urls = self._resolved
        if time.monotonic() - at < RESOLVE_EVERY:
            return [u for u in urls if u not in self._self]
        found: list[str] = []
        for entry in self.spec:
            if entry.startswith("dns:"):
                host, _, port = entry[4:].rpartition(":")
                try:
                    infos = await asyncio.get_running_loop().getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
                except OSError as e:
                    log.warning("console peers: cannot resolve %s: %s", host, e)
                    continue
                for info in infos:
                    address = str(info[4][0])
                    found.append(f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}")
            else:
                found.append(entry)
        self._resolved = (time.monotonic(), sorted(set(found)))
        return [u for u in self._resolved[1] if u not in self._self]

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=PEER_TIMEOUT)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _one(self, url: str, method: str, path: str, params: dict[str, Any], reviewer: str,
                   body: bytes | None, content_type: str | None) -> httpx.Response | None:
        headers = {PEER_HEADER: self._sign(reviewer), INSTANCE_HEADER: self.instance}
        if content_type:
            headers["content-type"] = content_type
        try:
            r = await self._http().request(method, url + path, params={**params, "local": "true"},
                                           content=body, headers=headers)
        except httpx.HTTPError as e:
            if url not in self._down:
                log.warning("console peer %s does not answer: %s", url, e)
                self._down.add(url)
            return None
        self._down.discard(url)
        if r.headers.get(INSTANCE_HEADER) == self.instance:
            self._self.add(url)  # that is this very instance
            return None
        return r

    async def ask_all(self, method: str, path: str, params: dict[str, Any], reviewer: str) -> list[Any]:
        """Every other instance's JSON answer (those that answered 200)."""
        urls = await self.urls()
        answers = await asyncio.gather(*(self._one(u, method, path, params, reviewer, None, None) for u in urls))
        return [r.json() for r in answers if r is not None and r.status_code == 200]

    async def forward(self, method: str, path: str, params: dict[str, Any], reviewer: str,
                      body: bytes | None = None, content_type: str | None = None) -> httpx.Response | None:
        """Send an action on one task to every other instance: the answer of the one that holds it, or None."""
        urls = await self.urls()
        answers = await asyncio.gather(*(self._one(u, method, path, params, reviewer, body, content_type) for u in urls))
        held = [r for r in answers if r is not None and r.status_code != 404]
        return held[0] if held else None
