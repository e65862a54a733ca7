"""Waking the readers that wait on a queue (`Notifier`): every backend's queues and the Kafka engine use it."""

from __future__ import annotations

import asyncio


class Notifier:
    """Wakes the readers waiting on one queue. Safe across event loops in one process."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def waiter(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(self._waiters) >= 64:  # waiters given up (cancelled) while nothing was notified
            self._waiters = [w for w in self._waiters if not w.done()]
        self._waiters.append(fut)
        return fut

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                loop = fut.get_loop()
                try:
                    running = asyncio.get_running_loop()
                except RuntimeError:
                    running = None
                if running is loop:
                    fut.set_result(None)
                elif not loop.is_closed():
                    loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
