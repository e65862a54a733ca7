"""A TCP proxy for fault tests: one listening port in front of one upstream, with network faults on demand.

`tests/kafka_cluster.py` puts one in front of each Kafka node's PROXIED listener, so that a client
bootstrapped at the proxies (and told the proxies' ports by the brokers' metadata) can be cut off,
slowed or black-holed while the rest of the test, which talks to the nodes directly, is not. The
faults, from test code (any thread; each call returns once it has taken effect):

- `cut()`: every open connection is reset (RST), and every new one is accepted and reset at once,
  as a client sees a node that went away (connection reset / refused) — the port stays bound, so no
  other process can take it before `heal()`;
- `blackhole()`: connections stay open and new ones are accepted, but nothing is forwarded either way
  (nor connected upstream), as a client sees a partition that drops packets without refusing; bytes
  are held, not dropped, so a connection that outlives the black hole goes on intact (TCP would
  retransmit them);
- `latency(seconds)`: each chunk is delayed that long in each direction, in order;
- `heal()`: back to plain forwarding (no cut, no black hole, no latency).

It runs an asyncio loop in a thread of its own and needs nothing outside the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

CONTROL_TIMEOUT = 10.0
"""A control call that has not taken effect in this long means the proxy's loop is stuck."""
CHUNK = 65536

log = logging.getLogger(__name__)
T = TypeVar("T")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection with a RST (SO_LINGER 0), not a FIN: the peer sees "connection reset"."""
    with contextlib.suppress(OSError, AttributeError):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: the client's side, the upstream side once connected, and its pump tasks."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def close(self, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for t in self.tasks:
            t.cancel()
        if reset:
            _reset(self.client)
        else:
            self.client.close()
        if self.upstream is not None:
            self.upstream.transport.abort()


class Proxy:
    """Forwards `host:port` (a free loopback port by default: see `.port`) to `upstream_host:upstream_port`."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", host: str = "127.0.0.1",
                 port: int = 0, name: str = "") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name or f"proxy->{upstream_port}"
        self.accepted = 0
        """Connections accepted so far (those reset by a cut included)."""
        self.refused = 0
        """Connections reset on arrival because the proxy was cut."""
        self._cut = False
        self._latency = 0.0
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"netproxy {self.name}", daemon=True)
        self._thread.start()
        self._flowing = self._call(self._make_event())
        self._server = self._call(asyncio.start_server(self._handle, host, port))
        self.port: int = self._server.sockets[0].getsockname()[1]

    def __repr__(self) -> str:
        state = "cut" if self._cut else "black hole" if not self._flowing.is_set() else "forwarding"
        return f"Proxy({self.name} :{self.port} -> {self.upstream[1]}, {state}, latency {self._latency}s)"

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # --- controls (any thread) ----------------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection, and every new one as it arrives, until `heal()`."""
        self._call(self._set_cut())

    def blackhole(self) -> None:
        """Forward nothing (connections stay open, new ones are accepted and held) until `heal()`."""
        self._call(self._set_flowing(False))

    def latency(self, seconds: float) -> None:
        """Delay each chunk by `seconds` in each direction from now on (0: none)."""
        if seconds < 0:
            raise ValueError(f"latency must be >= 0, not {seconds}")
        self._call(self._set_latency(seconds))

    def heal(self) -> None:
        """Plain forwarding again: no cut, no black hole, no latency."""
        self._call(self._heal())

    def close(self) -> None:
        """Stop listening, reset every connection and stop the proxy's thread."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT)

    # --- on the proxy's loop ------------------------------------------------------------------

    async def _make_event(self) -> asyncio.Event:
        event = asyncio.Event()
        event.set()
        return event

    async def _set_cut(self) -> None:
        self._cut = True
        for link in list(self._links):
            link.close(reset=True)
        self._links.clear()

    async def _set_flowing(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _set_latency(self, seconds: float) -> None:
        self._latency = seconds

    async def _heal(self) -> None:
        self._cut = False
        self._latency = 0.0
        self._flowing.set()

    async def _shutdown(self) -> None:
        self._server.close()
        for link in list(self._links):
            link.close(reset=True)
        self._links.clear()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await asyncio.sleep(0.01)  # the aborted transports close their sockets on the next turns of the loop

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._cut:
            self.refused += 1
            _reset(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._flowing.wait()  # a black hole holds a new connection too, unconnected
            if link.closed:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                link.close(reset=True)  # as the node itself would refuse
                return
            if link.closed:
                up_writer.transport.abort()
                return
            link.upstream = up_writer
            link.tasks = [asyncio.create_task(self._pump(reader, up_writer)),
                          asyncio.create_task(self._pump(up_reader, writer))]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
            link.close(reset=False)
        except asyncio.CancelledError:
            link.close(reset=True)
        except Exception:
            log.exception("%s: a connection failed", self.name)
            link.close(reset=True)
        finally:
            self._links.discard(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: read chunks (while not black-holed), each due `latency` after it was read, and
        write them in order (when due, and not black-holed). Ends at EOF or a connection error."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                await queue.put((time.monotonic() + self._latency, data))
                if not data:
                    return

        async def write() -> None:
            while True:
                due, data = await queue.get()
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._flowing.wait()
                if not data:
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(read()), asyncio.create_task(write())]
        try:
            # until the writer has written the EOF the reader met, or either fails (the connection broke)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
