"""The queue contract every backend implements, and the views built on it.

A queue is a key-value store of pending items: `push(id, value)` stores an item,
`read()` waits for the oldest one, `read(id)` fetches one, `pop(id)` removes it.
Backends subclass `BaseQueue` and implement the underscored primitives; views
(`map`, `filter`, `premap`, `prefilter`) wrap any queue.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from pipeteer.codec.catalog import SchemaCatalog
from pipeteer.codec.claimcheck import ClaimCheck, has_refs
from pipeteer.codec.codec import refusal
from pipeteer.codec.framing import ValueCodec
from pipeteer.errors import CodecError, ConfigError, InexistentItem, UnreadableRecord, ValueTypeError
from pipeteer.plan import Plan
from pipeteer.queues.observe import Meters
from pipeteer.queues.progress import Stall
from pipeteer.types import checker, type_name

if TYPE_CHECKING:
    from pipeteer.queues.ledger import Ledger
    from pipeteer.queues.locks import Locks

T = TypeVar("T")
U = TypeVar("U")
T_co = TypeVar("T_co", covariant=True)

_AS_STORED: ContextVar[bool] = ContextVar("pipeteer_read_as_stored", default=False)
"""Set while `BaseQueue.read_stored` reads: `hydrate` leaves references as they are."""


TURN_SECONDS = 0.002
_turn = [time.monotonic()]


def turn_due() -> bool:
    """Whether this task has held the event loop for `TURN_SECONDS` (then `take_turn`), without a coroutine."""
    return time.monotonic() - _turn[0] >= TURN_SECONDS


async def take_turn() -> None:
    """Let the event loop run other tasks if this one has held it for `TURN_SECONDS`.

    A stage loop reading a backlog finds an item at once every time and would never suspend:
    the other stages, web pages and /healthz of the process would wait until its queue is
    empty. Reads call this before handing an item out; yielding at most every 2 ms (rather than
    every item) keeps the cost of the extra loop iterations small.
    """
    now = time.monotonic()
    if now - _turn[0] >= TURN_SECONDS:
        await asyncio.sleep(0)
        _turn[0] = time.monotonic()


class Listing(Generic[T_co]):
    """The result of `items()`, `keys()` and `values()`: iterate it with `async for`, or `await` it for a list.

    >>> async def ids(q):
    ...     return await q.keys()
    """

    def __init__(
        self,
        source: Callable[[], AsyncIterator[T_co]],
        collect: Callable[[], Awaitable[list[T_co]]] | None = None,
    ) -> None:
        self._source = source
        self._whole = collect  # a backend's faster way to the whole list, when it has one

    def __aiter__(self) -> AsyncIterator[T_co]:
        return self._source()

    async def _collect(self) -> list[T_co]:
        if self._whole is not None:
            return await self._whole()
        return [x async for x in self._source()]

    def __await__(self) -> Generator[Any, None, list[T_co]]:
        return self._collect().__await__()


class ReadQueue(ABC, Generic[T_co]):
    """The reading side: `read`, `pop`, `items`, `keys`, `values`, and the views `map` / `filter`."""

    @overload
    async def read(self) -> tuple[str, T_co]: ...
    @overload
    async def read(self, id: str) -> T_co: ...

    async def read(self, id: str | None = None) -> Any:
        """`read()` waits for the oldest pending item and returns `(id, value)`; `read(id)` returns that item's value."""
        if id is None:
            return await self._read_next()
        return await self._read(id)

    @abstractmethod
    async def _read_next(self) -> tuple[str, T_co]: ...

    @abstractmethod
    async def _read(self, id: str) -> T_co: ...

    @abstractmethod
    async def pop(self, id: str) -> None:
        """Remove the item; raises `InexistentItem` if it is not there."""

    @abstractmethod
    def _iter_items(self) -> AsyncIterator[tuple[str, T_co]]: ...

    async def has(self, id: str) -> bool:
        try:
            await self._read(id)
        except InexistentItem:
            return False
        return True

    def items(self) -> Listing[tuple[str, T_co]]:
        return Listing(self._iter_items)

    def keys(self) -> Listing[str]:
        return Listing(self._iter_keys)

    async def _iter_keys(self) -> AsyncIterator[str]:
        """Backends that can list ids without decoding values override this."""
        async for id, _ in self._iter_items():
            yield id

    def values(self) -> Listing[T_co]:
        async def gen() -> AsyncIterator[T_co]:
            async for _, v in self._iter_items():
                yield v

        return Listing(gen)

    def map(self, f: Callable[[T_co], U]) -> ReadQueue[U]:
        """A read-only view whose values are `f(value)`."""
        return MappedQueue(self, f)

    def filter(self, pred: Callable[[T_co], bool]) -> ReadQueue[T_co]:
        """A read-only view of the items whose value satisfies `pred`."""
        return FilteredQueue(self, pred)

    async def wait_change(self) -> None:
        """Return once the queue may have changed (an item pushed, popped or moved), so a view that
        looked and found nothing can look again. Backends wake at once; this default, for queues that
        cannot tell, looks again after `CHANGE_POLL_SECONDS`."""
        await asyncio.sleep(CHANGE_POLL_SECONDS)

    def describe(self) -> str:
        return type(self).__name__


CHANGE_POLL_SECONDS = 0.05

HELD_RECHECK_SECONDS = 2.0
"""An item a process could not read (another version's record) is looked at again this often: its
writer schema may have been published meanwhile, or the item taken by a process that can read it."""


class WriteQueue(ABC, Generic[T]):
    """The writing side: `push`, `push_many`, and the views `premap` / `prefilter`."""

    @abstractmethod
    async def push(self, id: str, value: T) -> None:
        """Store `value` under `id` (replacing any pending item with the same id)."""

    async def push_many(
        self,
        items: Iterable[tuple[str, T]] | AsyncIterable[tuple[str, T]],
        *,
        concurrency: int = 8,
        done: Callable[[str], None] | None = None,
    ) -> int:
        """Push `(id, value)` pairs, `concurrency` at a time (large values are hashed and written to
        the blob store in worker threads meanwhile); `done(id)` is called as each is stored.
        Returns how many were pushed; the first failure is raised once the pushes under way end.

        >>> async def load(q, photos):
        ...     return await q.push_many((p.name, p) for p in photos)
        """
        if concurrency < 1:
            raise ValueError(f"push_many: concurrency must be >= 1, got {concurrency}")
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()
        errors: list[BaseException] = []
        count = 0

        async def one(id: str, value: T) -> None:
            try:
                await self.push(id, value)
                if done is not None:
                    done(id)
            except BaseException as e:
                errors.append(e)
            finally:
                slots.release()

        async def pairs() -> AsyncIterator[tuple[str, T]]:
            if isinstance(items, AsyncIterable):
                async for pair in items:
                    yield pair
            else:
                for pair in items:
                    yield pair

        async for id, value in pairs():
            await slots.acquire()
            if errors:
                slots.release()
                break
            task = asyncio.ensure_future(one(id, value))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            count += 1
        if tasks:
            await asyncio.gather(*tasks)
        if errors:
            raise errors[0]
        return count

    def premap(self, f: Callable[[U], T]) -> WriteQueue[U]:
        """A view that pushes `f(value)`."""
        return PremappedQueue(self, f)

    def prefilter(self, pred: Callable[[T], bool]) -> WriteQueue[T]:
        """A view that drops values not satisfying `pred`."""
        return PrefilteredQueue(self, pred)


class Queue(ReadQueue[T], WriteQueue[T]):
    """Both sides: what `make_queue` returns."""


@dataclass(frozen=True)
class Retry:
    """How an item whose stage keeps failing is retried: `attempts` in all, waiting `initial`
    seconds after the first failure, doubling up to `maximum`; then it becomes a dead letter."""

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.initial * 2 ** (attempt - 1), self.maximum))

    def next_try(self, failures: int, now: float) -> float | None:
        """When an item whose stage has failed on it `failures` times is tried again; None: never, it
        becomes a dead letter. The one decision of every backend (`BaseQueue.fail`, the Kafka engine's).

        >>> Retry(attempts=3, initial=0.5).next_try(1, now=100.0)
        100.5
        >>> Retry(attempts=3, initial=0.5).next_try(2, now=100.0)
        101.0
        >>> Retry(attempts=3).next_try(3, now=100.0) is None
        True
        """
        return now + self.delay(failures) if failures < self.attempts else None

    @classmethod
    def from_options(cls, options: Mapping[str, str], where: str) -> Retry:
        """The policy every backend reads from its URL query or environment (same names, same meaning):
        `retries` (after the first attempt: `attempts` = retries + 1), `retry_backoff_ms`, `retry_backoff_max_ms`.

        >>> Retry.from_options({"retries": "2", "retry_backoff_ms": "10"}, "test")
        Retry(attempts=3, initial=0.01, maximum=30.0)
        """
        def number(key: str, default: int) -> int:
            raw = options.get(key)
            if raw is None or raw == "":
                return default
            if not raw.isdigit():
                raise ConfigError(f"{where}: {key}={raw!r} is not a whole number >= 0")
            return int(raw)

        return cls(
            attempts=number("retries", cls.attempts - 1) + 1,
            initial=number("retry_backoff_ms", int(cls.initial * 1000)) / 1000,
            maximum=number("retry_backoff_max_ms", int(cls.maximum * 1000)) / 1000,
        )


@dataclass(frozen=True)
class QueueHooks:
    """What a service gives a backend for the stages' queues it makes: each queue receives it when it
    is made (`Backend.make_queue`), nothing is set on a queue afterwards.

    >>> QueueHooks(retry=Retry(attempts=2)).policy(Retry()).attempts, QueueHooks().policy(Retry()).attempts
    (2, 5)
    """

    retry: Retry | None = None
    """The stages' retry policy, over the backend's own (its URL's `retries=`, ...); None: the backend's."""
    on_dead_letter: Callable[[str, str], None] | None = None
    """Told `(stage, id)` of each item a stage's queue sets aside as a dead letter, by the backends that
    do not count dead letters themselves (`Backend.reports_metrics` False): so a service counts them."""

    def policy(self, backend: Retry) -> Retry:
        """The retry policy of a queue whose backend's own is `backend`."""
        return backend if self.retry is None else self.retry


NO_HOOKS = QueueHooks()
"""A backend's hooks when no service gives it any (scripts, commands, tests)."""


@dataclass(frozen=True)
class Pending:
    """What waits in a queue: how many items, and for how long the oldest has (None: unknown, or empty)."""

    count: int
    oldest_age: float | None


def check_page(offset: int, limit: int) -> None:
    """Refuse a page that cannot be: a negative `offset` or `limit` (a caller's bug, said at once)."""
    if offset < 0 or limit < 0:
        raise ValueError(f"page: offset and limit must be >= 0, got offset={offset}, limit={limit}")


def pending_filter(
    match: str | None, older_than: float | None, now: float | None
) -> Callable[[tuple[str, float]], bool]:
    """Whether an `(id, since)` pair passes `count`'s and `page`'s filters: `match` a literal part of
    the id, `older_than` seconds waited at `now` (default `time.time()`).

    >>> keep = pending_filter("x7", 10, now=100.0)
    >>> keep(("ax7b", 90.0)), keep(("ax7b", 95.0)), keep(("ab", 0.0))
    (True, False, False)
    """
    if older_than is None:
        if match is None:
            return _keep_all
        part: str = match
        return lambda pair: part in pair[0]
    cutoff: float = (time.time() if now is None else now) - older_than
    if match is None:
        return lambda pair: pair[1] <= cutoff
    text: str = match
    return lambda pair: text in pair[0] and pair[1] <= cutoff


def _keep_all(pair: tuple[str, float]) -> bool:
    return True


def error_name(error: BaseException) -> str:
    """How a dead letter names its error on every backend: as a traceback does (built-ins bare).

    >>> error_name(ValueError("x")), error_name(InexistentItem("a", "q"))
    ('ValueError', 'pipeteer.errors.InexistentItem')
    """
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


@dataclass(frozen=True)
class DeadLetter:
    """An item taken out of a stage because its processing kept failing (the same fields on every backend)."""

    id: str
    value: Any
    error_class: str
    error_message: str
    stacktrace: str
    attempts: int
    failed_at: float
    source: str | None = None
    """Where the item was read from, when the backend can say more than the stage (Kafka: `topic[partition]@offset`)."""


@dataclass(frozen=True)
class Held:
    """A pending item this process cannot read: written by another version of the workflow, with a schema
    it does not know (yet) or cannot read. It stays pending, is listed by id and reported, and is taken
    by a process that can read it; it is never dropped nor dead-lettered for it."""

    id: str
    reason: str
    writer_fingerprint: str
    since: float
    """When this process first met it (wall clock)."""


class BaseQueue(Queue[T]):
    """What backends subclass: a typed queue with a name, a type check on push, an atomic `move`,
    and the retry bookkeeping of the automatic stage reading it (`fail`)."""

    retry: Retry = Retry()
    on_dead_letter: Callable[[str], None] | None = None
    """Told the id of each item this queue sets aside as a dead letter (the service counts them); given
    when the queue is made, as `retry` is (`QueueHooks`)."""
    claim: ClaimCheck | None = None
    """Where this queue's large `bytes` go (None: kept inline); see `pipeteer.codec.claimcheck`."""

    def __init__(self, Type: Any, name: str, *, retry: Retry | None = None,
                 on_dead_letter: Callable[[str], None] | None = None) -> None:
        self.Type = Type
        self.name = name
        if retry is not None:
            self.retry = retry
        self.on_dead_letter = on_dead_letter
        self._conforms = checker(Type)
        self._held: str | None = None  # the item `read()` last handed out
        self._failures: dict[str, tuple[int, float]] = {}  # id -> (attempts, retry not before)
        self._unreadable: dict[str, tuple[Held, float]] = {}
        """Items this process met and could not read (another version's records), by id, with the monotonic
        time each is looked at again (backends that keep values encoded: `_hold`)."""

    def _deferred(self) -> tuple[set[str], float | None]:
        """Ids waiting out their retry delay, and the monotonic time the first of them is due."""
        now = time.monotonic()
        waiting = {id: due for id, (_, due) in self._failures.items() if due > now}
        return set(waiting), min(waiting.values(), default=None)

    def fail(self, error: BaseException) -> str | None:
        """The stage failed on the item `read()` last handed out: retry it after a backoff (other
        items go first meanwhile), or after `retry.attempts` failures make it a dead letter.
        Returns the item's id, or None when no item was in progress."""
        id, self._held = self._held, None
        if id is None:
            return None
        attempts = self._failures.get(id, (0, 0.0))[0] + 1
        again = self.retry.next_try(attempts, time.monotonic())
        if again is not None:
            self._failures[id] = (attempts, again)
            return id
        self._failures.pop(id, None)
        trace = "".join(traceback.format_exception(error))
        self._dead_letter(id, error_name(error), str(error), trace, attempts)
        if self.on_dead_letter is not None:
            self.on_dead_letter(id)
        return id

    def letter_value(self, data: bytes) -> Any:
        """A dead letter's value as stored (references, not blobs), or its bytes when they cannot be
        decoded: a record of an unknown schema is listed (and kept) like any other."""
        try:
            return self.codec.decode(data)
        except CodecError:
            return data

    def _dead_letter(self, id: str, error_class: str, message: str, trace: str, attempts: int) -> None:
        """Set the item aside as a dead letter (backends that let `fail` decide implement this)."""
        raise NotImplementedError(f"{self.describe()} decides its dead letters itself")

    @abstractmethod
    def dead_letters(self) -> list[DeadLetter]:
        """The items the stage reading this queue gave up on and that were not replayed, oldest first
        (blocking: for commands and tests, not for the event loop of a stage)."""

    @abstractmethod
    def replay(self, ids: Sequence[str] | None = None) -> list[str]:
        """Put dead letters back in this queue: all of them (None), or the latest of each id given.
        Returns the ids put back; each is then pending again, with its attempts counted from zero.
        Replayed dead letters are no longer listed, except those replayed by id on Kafka (its
        dead-letter topic is append-only: they stay listed until all are replayed, exactly once)."""

    @abstractmethod
    async def pending(self) -> Pending:
        """How many items wait here and the age of the oldest (for `pipeteer status` and the metrics)."""

    @abstractmethod
    def __len__(self) -> int:
        """How many items wait here, as far as this process knows without waiting (a metrics gauge asks)."""

    @abstractmethod
    def pending_since(self) -> list[tuple[str, float]]:
        """The items waiting here, each with when it arrived (wall clock, so comparable across
        processes), oldest first: what a review console lists and merges across instances."""

    def count(self, *, match: str | None = None, older_than: float | None = None, now: float | None = None) -> int:
        """How many items wait here; `match`: only ids containing this text (case-sensitive, literal: no
        wildcards); `older_than`: only items that have waited at least this many seconds (at `now`,
        default `time.time()`). Without a filter, as `len()`. This default reads `pending_since()`
        (every item); backends answer from their index.

        >>> import asyncio; from pipeteer.queues.memory import MemoryQueue
        >>> q = MemoryQueue(int); asyncio.run(q.push("a-x7", 1)); asyncio.run(q.push("b", 2))
        >>> q.count(), q.count(match="x7"), q.count(older_than=60)
        (2, 1, 0)
        """
        if match is None and older_than is None:
            return len(self)
        keep = pending_filter(match, older_than, now)
        return sum(1 for pair in self.pending_since() if keep(pair))

    def page(self, offset: int = 0, limit: int = 50, *, match: str | None = None, older_than: float | None = None,
             now: float | None = None) -> list[tuple[str, float]]:
        """(id, since) of the pending items, oldest first (the order of `pending_since()`), items `offset`
        to `offset + limit` of those matching (`match`, `older_than`, `now`: as `count`); `since` is the
        wall-clock time the item arrived (as in `pending_since`). What a review console shows of a
        queue of 100,000 tasks: backends read only the page (and the items before it), not the values.

        >>> import asyncio; from pipeteer.queues.memory import MemoryQueue
        >>> q = MemoryQueue(int); asyncio.run(q.push_many((f"t{i}", i) for i in range(5)))
        5
        >>> [id for id, _ in q.page(1, 2)]
        ['t1', 't2']
        """
        check_page(offset, limit)
        keep = pending_filter(match, older_than, now)
        return list(islice(filter(keep, self.pending_since()), offset, offset + limit))

    @abstractmethod
    async def wait_change(self) -> None: ...

    def open(self) -> None:
        """Start serving this queue now rather than at its first read (a service calls it for every
        stage it runs, so a web stage is ready before its first request). Nothing to do by default."""

    def unavailable(self) -> str | None:
        """Why the stage reading this queue cannot serve a request now, in words (None: it can)."""
        return None

    def held(self) -> list[Held]:
        """The pending items here that this process met and cannot read (another version's records,
        see `Held`), oldest first."""
        return sorted((held for held, _ in self._unreadable.values()), key=lambda h: h.since)

    def backlog(self) -> int:
        """Items waiting for this stage that are not listed yet (`count`/`page` list the rest): on Kafka, the
        records a stage instance's flow control leaves in its input topic (approximate). 0 elsewhere."""
        return 0

    def unreadable(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` (a page of a listing) this process holds because it cannot read them: O(len(ids))."""
        return {id for id in ids if id in self._unreadable}

    def _hold(self, id: str, error: UnreadableRecord) -> None:
        """Note an item this process cannot read: it stays where it is, is skipped until it is looked at
        again in `HELD_RECHECK_SECONDS` (its writer schema may be published by then), and is listed by
        `held()`. Never a failure of the stage: no retry is counted, no dead letter made."""
        known = self._unreadable.get(id)
        since = known[0].since if known is not None else time.time()
        self._unreadable[id] = (Held(id, error.reason, error.writer_fingerprint, since),
                                time.monotonic() + HELD_RECHECK_SECONDS)
        if self._held == id:
            self._held = None

    def _held_now(self) -> tuple[set[str], float | None]:
        """Ids held until they are looked at again, and the monotonic time the first of them is due."""
        if not self._unreadable:
            return set(), None
        now = time.monotonic()
        waiting = {id: at for id, (_, at) in self._unreadable.items() if at > now}
        return set(waiting), min(waiting.values(), default=None)

    def lost(self, error: BaseException) -> str | None:
        """Whether `error` says the item this stage was working on was completed elsewhere (another
        process of the same stage won the race for it): then forget it and return its id, else None."""
        if isinstance(error, InexistentItem) and error.id is not None and error.id == self._held:
            self._done(error.id)
            return error.id
        return None

    def _done(self, id: str) -> None:
        """Bookkeeping after an item left this queue by a move."""
        self._failures.pop(id, None)
        self._unreadable.pop(id, None)
        if self._held == id:
            self._held = None

    def describe(self) -> str:
        return f"{type(self).__name__} {self.name!r} of {type_name(self.Type)}"

    codec: ValueCodec[T]
    """The state type's codec (each backend sets it): the same bytes on every backend."""

    def _source(self, id: str) -> str:
        return f"{self.describe()} item {id!r}"

    async def encode(self, value: Any) -> bytes:
        """The stored form of a value, on every backend: large `bytes` written to the claim check's
        blob store first (hashing and I/O in a worker thread), then the codec."""
        if self.claim is not None and self.claim.is_heavy(value):
            value = await asyncio.to_thread(self.claim.dehydrate, value)
        data: bytes = self.codec.encode(value)
        return data

    async def hydrate(self, id: str, value: T) -> T:
        """The value a stage sees: blob references replaced by their verified bytes, in a worker
        thread (never on the event loop, nor under a lock the loop needs)."""
        if self.claim is None or _AS_STORED.get() or not has_refs(value):
            return value
        hydrated: T = await asyncio.to_thread(self.claim.hydrate, value, id=id, source=self._source(id))
        return hydrated

    async def read_stored(self, id: str) -> T:
        """`read(id)`, with large `bytes` left as blob references (`parse_ref` tells them): for code
        that moves blobs itself, as `pipeteer pull` copies them to files (`ClaimCheck.export`)."""
        token = _AS_STORED.set(True)
        try:
            value: T = await self._read(id)
        finally:
            _AS_STORED.reset(token)
        return value

    def check(self, id: str, value: Any) -> None:
        if not isinstance(id, str) or not id:
            raise ValueTypeError(f"{self.describe()}: ids are non-empty strings, got {id!r}")
        if not self._conforms(value):
            raise ValueTypeError(f"{self.describe()}: item {id!r} is {refusal(self.Type, value)}")

    async def push(self, id: str, value: T) -> None:
        self.check(id, value)
        await self._push(id, value)

    @abstractmethod
    async def _push(self, id: str, value: T) -> None: ...

    async def move(self, id: str, dst: BaseQueue[U], value: U) -> None:
        """Atomically remove `id` from this queue and push `value` under `id` to `dst`.

        Raises `InexistentItem` (and changes nothing) if `id` is not here. Backends make
        this one transaction when both queues live in the same store. Across stores the
        push comes first and the pop second: a crash in between leaves the item in both,
        and re-running the stage pushes the same id again, which replaces rather than
        duplicates, since queues are keyed by id.
        """
        dst.check(id, value)
        if not await self.has(id):
            raise InexistentItem(id, self.describe())
        await dst._push(id, value)
        await self.pop(id)
        self._done(id)


class MappedQueue(ReadQueue[U]):
    def __init__(self, inner: ReadQueue[Any], f: Callable[[Any], U]) -> None:
        self.inner, self.f = inner, f

    async def _read_next(self) -> tuple[str, U]:
        id, v = await self.inner.read()
        return id, self.f(v)

    async def _read(self, id: str) -> U:
        return self.f(await self.inner.read(id))

    async def pop(self, id: str) -> None:
        await self.inner.pop(id)

    async def has(self, id: str) -> bool:
        return await self.inner.has(id)

    async def _iter_items(self) -> AsyncIterator[tuple[str, U]]:
        async for id, v in self.inner.items():
            yield id, self.f(v)

    def _iter_keys(self) -> AsyncIterator[str]:
        return self.inner.keys().__aiter__()

    async def wait_change(self) -> None:
        await self.inner.wait_change()

    def describe(self) -> str:
        return self.inner.describe()


class FilteredQueue(ReadQueue[T]):
    def __init__(self, inner: ReadQueue[T], pred: Callable[[T], bool]) -> None:
        self.inner, self.pred = inner, pred

    async def _read_next(self) -> tuple[str, T]:
        # Items that fail the predicate are skipped, not consumed: wait for a matching one.
        while True:
            async for id, v in self.inner.items():
                if self.pred(v):
                    return id, v
            await self.inner.wait_change()

    async def _read(self, id: str) -> T:
        v = await self.inner.read(id)
        if not self.pred(v):
            raise InexistentItem(id, f"filtered view of {self.inner.describe()}")
        return v

    async def pop(self, id: str) -> None:
        await self._read(id)
        await self.inner.pop(id)

    async def _iter_items(self) -> AsyncIterator[tuple[str, T]]:
        async for id, v in self.inner.items():
            if self.pred(v):
                yield id, v

    async def wait_change(self) -> None:
        await self.inner.wait_change()

    def describe(self) -> str:
        return f"filtered view of {self.inner.describe()}"


class PremappedQueue(WriteQueue[U]):
    def __init__(self, inner: WriteQueue[Any], f: Callable[[U], Any]) -> None:
        self.inner, self.f = inner, f

    async def push(self, id: str, value: U) -> None:
        await self.inner.push(id, self.f(value))


class PrefilteredQueue(WriteQueue[T]):
    def __init__(self, inner: WriteQueue[T], pred: Callable[[T], bool]) -> None:
        self.inner, self.pred = inner, pred

    async def push(self, id: str, value: T) -> None:
        if self.pred(value):
            await self.inner.push(id, value)


_LAZY = threading.Lock()
"""Guards the first call of `Backend.locks()` / `ledger()` (console requests may run in threads)."""


class Backend(ABC):
    """The contract of a backend, beside its queues': what `pipeteer.connect` and the runtime use of
    it, declared here (with defaults where a backend has nothing to say) so nothing probes for it.

    A backend makes the queues of one workflow (`make_queue`: the same path, the same items, each
    given a service's `hooks` when it is made), learns the workflow's plan (`bind`), reports to a
    service's metrics (`use_metrics`), says whether it can serve (`unready_reasons`), which blobs its
    items reference (`claim_check`, `referenced_blob_keys`) and releases what it holds (`close`).
    """

    url: str
    """The backend URL, as printed and logged (secrets masked)."""

    plan: Plan | None = None
    """The workflow's plan, once bound (`bind`): which stage reads each queue."""

    hooks: QueueHooks = NO_HOOKS
    """What a service gives the queues this backend makes (`QueueHooks`), given when the backend is made."""

    _locks: Locks | None = None  # (made by `locks()` on first use)
    _ledger: Ledger | None = None  # (made by `ledger()` on first use)

    reports_metrics: ClassVar[bool] = False
    moves_back: ClassVar[bool] = True
    """Whether an item waiting in one queue can be moved back to another by any process (`move`, atomic
    where the store allows): a review console then lets a reviewer take back an applied decision. Not
    on Kafka, where a pending item belongs to the instance owning its partition."""
    """True when the backend, once given the metrics (`use_metrics`), measures the oldest pending age
    and counts dead letters itself; otherwise the service does, from `pending()` and `on_dead_letter`."""

    @abstractmethod
    def make_queue(self, Type: Any, path: Sequence[str], /) -> BaseQueue[Any]: ...

    def bind(self, plan: Plan, /) -> None:
        """Learn the workflow's plan before its queues are read (Kafka names consumer groups and side
        topics by the stage reading each queue). `pipeteer.connect`, `make_queues` and
        `backend_from_url(url, plan=...)` bind; binding again to an equal plan does nothing, to the
        plan of another workflow (or another version of it) raises `ConfigError`."""
        if self.plan is not None and self.plan != plan:
            served, new = self.plan.workflow.name, plan.workflow.name
            raise ConfigError(
                f"backend {self.url!r} serves another version of workflow {new!r}: make one backend per version"
                if served == new
                else f"backend {self.url!r} serves workflow {served!r}: it cannot serve workflow {new!r} too; "
                "make one backend per workflow"
            )
        self.plan = plan

    def dead_letter_hook(self, path: Sequence[str]) -> Callable[[str], None] | None:
        """What the queue at `path` tells of each item it sets aside as a dead letter: `hooks.on_dead_letter`
        with the name of the stage reading it ('/'-joined); None when there is no hook, or no stage of the
        bound plan reads that queue."""
        tell = self.hooks.on_dead_letter
        reader = None if tell is None or self.plan is None else self.plan.readers().get(tuple(path))
        return None if tell is None or reader is None else functools.partial(tell, "/".join(reader))

    def claim_check(self) -> ClaimCheck | None:
        """Where this backend's queues put large `bytes` (`pipeteer.codec.claimcheck`): the blob store
        `pipeteer blobs gc` cleans. None when values are kept inline (no `blobs=` configured)."""
        return None

    @abstractmethod
    def referenced_blob_keys(self) -> set[str]:
        """Every blob key that an item of this backend still references (pending in a queue, waiting
        in the output, or a dead letter), read in one consistent view, so that an item moving
        meanwhile is found in one place or the other: what `pipeteer blobs gc` keeps. Records are
        scanned as bytes (`pipeteer.codec.claimcheck.keys_in`), whatever their schema. Blocking."""

    def schema_catalog(self) -> SchemaCatalog | None:
        """Where this backend's processes publish the schemas they write with, and find the others'
        (`pipeteer.codec.catalog`); None where no other process reads what this one writes (memory)."""
        return None

    def use_metrics(self, metrics: Meters) -> None:  # noqa: B027 (a hook with nothing to do by default)
        """Report to a service's metrics (`pipeteer.runtime.metrics.Metrics`: rebalances, commit latency,
        lag, ...), through the calls `pipeteer.queues.observe.Meters` declares. Nothing by default."""

    def unready_reasons(self) -> list[str]:
        """Why the queues this process serves cannot serve now, in words (empty: they can)."""
        return []

    def stalls(self) -> list[Stall]:
        """The stage instances of this process with work waiting and no progress on it, and for how long
        (`pipeteer.queues.progress`; the service's watchdog judges them). None by default."""
        return []

    def ready(self) -> bool:
        return not self.unready_reasons()

    def locks(self) -> Locks:
        """The task locks of this backend's human stages, shared by every process that serves them
        (`pipeteer.queues.locks`): the same object on every call, made by `_new_locks` on the first."""
        with _LAZY:
            if self._locks is None:
                self._locks = self._new_locks()
            return self._locks

    def ledger(self) -> Ledger:
        """Where the reviewers' decisions are recorded (`pipeteer.queues.ledger`), for the console's
        statistics: the same object on every call, made by `_new_ledger` on the first."""
        with _LAZY:
            if self._ledger is None:
                self._ledger = self._new_ledger()
            return self._ledger

    def _new_ledger(self) -> Ledger:
        """By default a `MemoryLedger`: the decisions made in this process."""
        from pipeteer.queues.ledger import MemoryLedger

        return MemoryLedger()

    def _new_locks(self) -> Locks:
        """By default a `MemoryLocks`: a backend whose tasks are each served by one process (memory,
        Kafka: the owner of the task's partition) needs no more."""
        from pipeteer.queues.locks import MemoryLocks

        return MemoryLocks()

    def close(self) -> None:  # noqa: B027 (a hook with nothing to do by default)
        """Release connections, clients and claims this process holds. Nothing to release by default."""
