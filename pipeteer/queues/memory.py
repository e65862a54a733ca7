"""In-process queues (`MemoryQueue`) and their backend (`MemoryBackend`, `memory://`): for tests and notebooks.

Values are kept encoded, by the same codec (and claim check) as SQLite and Kafka: what a test on
`memory://` (the `TestDriver`) accepts is exactly what production accepts, and a stage reads a
copy, never the object another stage still holds.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

from pipeteer.codec import codec_for
from pipeteer.codec.claimcheck import ClaimCheck, keys_in
from pipeteer.errors import InexistentItem, UnreadableRecord
from pipeteer.queues.base import (
    NO_HOOKS,
    Backend,
    BaseQueue,
    DeadLetter,
    Held,
    Pending,
    QueueHooks,
    Retry,
    check_page,
    pending_filter,
    take_turn,
)
from pipeteer.queues.notify import Notifier

T = TypeVar("T")
U = TypeVar("U")


class MemoryQueue(BaseQueue[T]):
    """A queue in a dict; ordered by first push.

    >>> import asyncio
    >>> q = MemoryQueue(int, "numbers")
    >>> asyncio.run(q.push("a", 1)); asyncio.run(q.read())
    ('a', 1)
    """

    def __init__(self, Type: Any, name: str = "memory", *, claim: ClaimCheck | None = None,
                 retry: Retry | None = None, on_dead_letter: Callable[[str], None] | None = None) -> None:
        super().__init__(Type, name, retry=retry, on_dead_letter=on_dead_letter)
        self.claim = claim if claim is not None and claim.applies_to(Type) else None
        """With a claim check, large `bytes` are kept in its blob store and the queue holds references."""
        self.codec = codec_for(Type)
        # OrderedDict: finding the oldest item stays O(1) however many were removed before it
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._notifier = Notifier()
        self._dead: dict[str, tuple[DeadLetter, bytes]] = {}
        self._at: dict[str, float] = {}  # id -> when it arrived (for `pending`)

    async def _value(self, id: str, data: bytes) -> T:
        return await self.hydrate(id, self.codec.decode(data, source=self._source(id)))

    async def _push(self, id: str, value: T) -> None:
        self._items[id] = await self.encode(value)
        self._at.setdefault(id, time.time())
        self._notifier.notify()

    async def _read_next(self) -> tuple[str, T]:
        while True:
            deferred, due = self._deferred()
            held, held_due = self._held_now()  # records this version cannot read, until looked at again
            due = held_due if due is None else (due if held_due is None else min(due, held_due))
            for id, value in list(self._items.items()):
                if id not in deferred and id not in held:
                    self._held = id
                    await take_turn()  # stages in one process take turns under a backlog
                    try:
                        return id, await self._value(id, value)
                    except UnreadableRecord as e:
                        self._hold(id, e)
            waiter = self._notifier.waiter()
            try:
                await asyncio.wait_for(waiter, None if due is None else max(due - time.monotonic(), 0))
            except TimeoutError:
                pass

    def _dead_letter(self, id: str, error_class: str, message: str, trace: str, attempts: int) -> None:
        data = self._items.pop(id, None)
        if data is None:  # moved on meanwhile: nothing to set aside
            return
        self._at.pop(id, None)
        letter = DeadLetter(id, self.letter_value(data), error_class, message, trace, attempts, time.time())
        self._dead[id] = (letter, data)

    def dead_letters(self) -> list[DeadLetter]:
        """The items this queue's stage gave up on, oldest first."""
        return [letter for letter, _ in self._dead.values()]

    def blob_keys(self) -> set[str]:
        """The blob keys its items and dead letters reference (kept encoded: scanned as bytes)."""
        found: set[str] = set()
        for data in [*self._items.values(), *(data for _, data in self._dead.values())]:
            found |= keys_in(data)
        return found

    def replay(self, ids: Sequence[str] | None = None) -> list[str]:
        """Put dead letters back in the queue (all, or those of the ids given)."""
        back = [id for id in self._dead if ids is None or id in ids]
        for id in back:
            self._items[id] = self._dead.pop(id)[1]
            self._at[id] = time.time()
        self._notifier.notify()
        return back

    async def wait_change(self) -> None:
        await self._notifier.waiter()

    async def _read(self, id: str) -> T:
        try:
            data = self._items[id]
        except KeyError:
            raise InexistentItem(id, self.describe()) from None
        return await self._value(id, data)

    async def has(self, id: str) -> bool:
        return id in self._items

    async def pop(self, id: str) -> None:
        if self._items.pop(id, _MISSING) is _MISSING:
            raise InexistentItem(id, self.describe())
        self._at.pop(id, None)
        self._notifier.notify()

    async def _iter_items(self) -> AsyncIterator[tuple[str, T]]:
        for id, v in list(self._items.items()):
            try:
                value = self.codec.decode(v, source=self._source(id))
            except UnreadableRecord as e:  # left out of the listing (and held), never its end
                self._hold(id, e)
                continue
            yield id, await self.hydrate(id, value)

    def held(self) -> list[Held]:
        for id in [id for id in self._unreadable if id not in self._items]:  # moved on, or popped
            self._unreadable.pop(id, None)
        return super().held()

    async def _iter_keys(self) -> AsyncIterator[str]:
        for id in list(self._items):
            yield id

    async def move(self, id: str, dst: BaseQueue[U], value: U) -> None:
        if not isinstance(dst, MemoryQueue):
            return await super().move(id, dst, value)
        dst.check(id, value)
        light = await dst.encode(value)
        # No await between the check and the two writes: atomic for every other task.
        if id not in self._items:
            raise InexistentItem(id, self.describe())
        del self._items[id]
        self._at.pop(id, None)
        dst._items[id] = light
        dst._at.setdefault(id, time.time())
        self._done(id)
        self._notifier.notify()
        dst._notifier.notify()

    def __len__(self) -> int:
        return len(self._items)

    def pending_since(self) -> list[tuple[str, float]]:
        return [(id, self._at.get(id, 0.0)) for id in self._items]

    def _since(self) -> Iterator[tuple[str, float]]:
        """`pending_since`, lazily: a page walks only the items up to its end."""
        at = self._at.get
        return ((id, at(id, 0.0)) for id in self._items)

    def count(self, *, match: str | None = None, older_than: float | None = None, now: float | None = None) -> int:
        if older_than is None:
            return len(self._items) if match is None else sum(match in id for id in self._items)
        return sum(1 for _ in filter(pending_filter(match, older_than, now), self._since()))

    def page(self, offset: int = 0, limit: int = 50, *, match: str | None = None, older_than: float | None = None,
             now: float | None = None) -> list[tuple[str, float]]:
        # (no await in between: the dict does not change while it is walked)
        check_page(offset, limit)
        if match is None and older_than is None:  # the items before the page are skipped, not looked at
            at = self._at.get
            return [(id, at(id, 0.0)) for id in islice(self._items, offset, offset + limit)]
        return list(islice(filter(pending_filter(match, older_than, now), self._since()), offset, offset + limit))

    async def pending(self) -> Pending:
        oldest = next(iter(self._items), None)
        at = None if oldest is None else self._at.get(oldest)
        return Pending(len(self._items), None if at is None else max(0.0, time.time() - at))


@dataclass
class MemoryBackend(Backend):
    """Queues in this process's memory; the same path gives the same queue."""

    url: str = "memory://"
    queues: dict[tuple[str, ...], MemoryQueue[Any]] = field(default_factory=dict)
    claim: ClaimCheck | None = None
    """Large `bytes` go to this blob store (`memory://?blobs=DIR`); none by default."""
    retry: Retry = field(default_factory=Retry)
    hooks: QueueHooks = NO_HOOKS

    def make_queue(self, Type: Any, path: Sequence[str], /) -> BaseQueue[Any]:
        key = tuple(path)
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = MemoryQueue(
                Type, "-".join(key), claim=self.claim, retry=self.hooks.policy(self.retry),
                on_dead_letter=self.dead_letter_hook(key),
            )
        return q

    def claim_check(self) -> ClaimCheck | None:
        return self.claim

    def referenced_blob_keys(self) -> set[str]:
        """The blob keys of every queue's items and dead letters (in this process: one view, no await)."""
        found: set[str] = set()
        for q in self.queues.values():
            found |= q.blob_keys()
        return found


_MISSING: Any = object()
