"""The exception tree. Everything pipeteer raises on purpose derives from `PipeteerError`, and every
class of it is defined here, drawn below as it is (`tests/unit/test_errors_tree.py` parses the drawing
and compares it with the classes, so it cannot drift). "(also a KeyError)": the class derives from
that built-in exception too, so `except KeyError` keeps working where it did.

    PipeteerError
    ├── SpecError            invalid Pipeline / Wrapped / Workflow (all reasons collected, raised once)
    ├── ValueTypeError       (also a TypeError) a value not of the type the queue or stage declares
    ├── QueueError
    │   ├── InexistentItem   (also a KeyError) an id that is not in the queue
    │   ├── RoutingError     a value that no stage accepts
    │   ├── RecordTooLarge   (also a ValueError) a value larger than the backend takes
    │   ├── CommitAborted    the transaction holding a completion was aborted: try again
    │   ├── TaskLocked       another reviewer works on (or decided) this task of a human stage
    │   └── Unavailable      the backend cannot take work now; not the item's fault: wait, retry
    │       ├── BrokerUnreachable  no Kafka broker at the bootstrap servers answers
    │       └── StorageFull  no space left where pipeteer writes (blob store, SQLite file, pull's
    │                        directory): names the path and the free space; nothing half-written
    ├── CodecError
    │   ├── SchemaError      a type that cannot become an Avro schema
    │   └── DecodeError      bytes that cannot become a value
    │       ├── BlobError    a claim-checked value's blob is missing or corrupt (names id, field, key)
    │       └── UnreadableRecord  written with a schema this reader does not know (yet) or cannot
    │                        read: held, never dropped nor dead-lettered (names the writer fingerprint)
    ├── ChangedWhileStored   a file given to the claim check changed while it was stored (nothing stored)
    ├── ConfigError          a bad backend URL, app reference or setting
    │   ├── UnknownStage     (also a KeyError) a stage the workflow or app does not have (lists those it has)
    │   └── NotABackendQueue (also a TypeError) a stage's queue made by a make_queue of one's own, where
    │                        a command needs a backend's
    ├── KafkaClientError     a Kafka client error a command met, in one line naming the brokers
    └── StageError           a stage failed; carries stage / topic / partition / offset / id
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Sequence
from typing import Any


class PipeteerError(Exception):
    """Root of every error pipeteer raises on purpose."""


class SpecError(PipeteerError):
    """A workflow description is invalid. `reasons` lists every problem found."""

    def __init__(self, subject: str, reasons: Sequence[str]) -> None:
        self.subject = subject
        self.reasons = list(reasons)
        if len(self.reasons) == 1:
            msg = f"invalid {subject}: {self.reasons[0]}"
        else:
            listed = "".join(f"\n  - {r}" for r in self.reasons)
            msg = f"invalid {subject} for {len(self.reasons)} reasons:{listed}"
        super().__init__(msg)


class QueueError(PipeteerError):
    """A queue operation could not be done."""


class InexistentItem(QueueError, KeyError):
    """The id is not in the queue (never pushed, or already popped)."""

    def __init__(self, id: str, where: str = "") -> None:
        self.id = id
        self.where = where
        super().__init__(f"no item {id!r}" + (f" in {where}" if where else ""))

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class RoutingError(QueueError):
    """A stage produced a value whose type no stage accepts."""


class RecordTooLarge(QueueError, ValueError):
    """A value encodes to a record larger than the backend takes (Kafka's `message.max.bytes`)."""


class CommitAborted(QueueError):
    """The transaction holding a completion was aborted (Kafka); the item is pending again, so retry it."""


class TaskLocked(QueueError):
    """Another reviewer holds the task: `holder` works on it until `until` (wall clock), or, when `decided`,
    decided it and the decision is applied once its undo window ends. Names `stage` and `id`.

    >>> print(TaskLocked("validation", "photo-09", "alice", 1767276187.0, False))
    task 'photo-09' of validation is being worked on by alice (locked until 14:03:07 UTC)
    >>> print(TaskLocked("validation", "photo-09", "alice", 1767276187.0, True))
    task 'photo-09' of validation was decided by alice (applied after its undo window)
    """

    def __init__(self, stage: str, id: str, holder: str, until: float, decided: bool) -> None:
        self.stage, self.id, self.holder, self.until, self.decided = stage, id, holder, until, decided
        short = id if len(id) <= 100 else id[:99] + "…"
        if decided:
            msg = f"task {short!r} of {stage} was decided by {holder} (applied after its undo window)"
        else:
            try:
                at = datetime.datetime.fromtimestamp(until, datetime.UTC).strftime("%H:%M:%S UTC")
            except (ValueError, OverflowError, OSError):  # (a time no calendar date has: said as it is)
                at = f"{until:.0f} s after the epoch"
            msg = f"task {short!r} of {stage} is being worked on by {holder} (locked until {at})"
        super().__init__(msg)

    def __reduce__(self) -> Any:  # (several arguments: pickled by hand, so a process can pass it on)
        return (TaskLocked, (self.stage, self.id, self.holder, self.until, self.decided))


class ValueTypeError(PipeteerError, TypeError):
    """A value does not have the type the queue or stage declares."""


class CodecError(PipeteerError):
    """Base of schema and encoding errors."""


class SchemaError(CodecError):
    """A Python type cannot be turned into an Avro schema."""


class DecodeError(CodecError):
    """Stored or received bytes cannot be decoded to a value.

    `source` names where the bytes came from (a topic/partition/offset or a table/id),
    `expected` the schema they should have had, `found` what they were.
    """

    def __init__(
        self, message: str, *, source: str | None = None, expected: str | None = None, found: str | None = None
    ) -> None:
        self.source, self.expected, self.found = source, expected, found
        super().__init__(message)


class BlobError(DecodeError):
    """A referenced blob is missing or corrupt. Names the item (`id`), the `field` and the blob `key`."""

    def __init__(self, message: str, *, id: str, field: str, key: str, source: str | None = None) -> None:
        self.id, self.field, self.key = id, field, key
        super().__init__(message, source=source)


class UnreadableRecord(DecodeError):
    """A record written with a schema this reader does not know, or knows and cannot read (another
    version of the workflow, mid-rollout). Not the record's fault: it is held where it is (pending,
    listed by id, reported) until a reader that knows its schema takes it, never dead-lettered.

    `writer_fingerprint` is the writer schema's fingerprint (hex), `reason` says why it cannot be read.
    """

    def __init__(self, message: str, *, writer_fingerprint: str, reason: str, source: str | None = None,
                 expected: str | None = None) -> None:
        self.writer_fingerprint = writer_fingerprint
        self.reason = reason
        super().__init__(message, source=source, expected=expected, found=reason)


class ConfigError(PipeteerError):
    """A backend URL, app reference or setting is invalid."""


class UnknownStage(ConfigError, KeyError):
    """A stage name (or '/'-joined path) that `subject`, a workflow or an app, does not have; `stages`
    lists those it has. The one message of it, wherever a stage is looked up by name.

    >>> print(UnknownStage("app 'news'", "nope", ["summarize", "review"]))
    app 'news' has no stage 'nope' (stages: summarize, review)
    >>> isinstance(UnknownStage("workflow 'calc'", "x", []), KeyError)
    True
    """

    def __init__(self, subject: str, stage: str, stages: Iterable[str]) -> None:
        self.subject, self.stage, self.stages = subject, stage, list(stages)
        super().__init__(f"{subject} has no stage {stage!r} (stages: {', '.join(self.stages) or 'none'})")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])

    def __reduce__(self) -> Any:  # (several arguments: pickled by hand)
        return (UnknownStage, (self.subject, self.stage, self.stages))


class NotABackendQueue(ConfigError, TypeError):
    """A stage's queue is not a backend's queue (the workflow's queues were made by a `make_queue` of
    one's own) where a command or service needs one: make them with `pipeteer.connect` or a backend's
    `make_queue`."""


class KafkaClientError(PipeteerError):
    """A Kafka client error, said in one line: what was being done, the brokers, what they answered.
    `code` is the client's error code (librdkafka's `KafkaError.code()`), None when it gave none.
    Made in one place only: `pipeteer.queues.kafka.health.client_error`."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> Any:
        return (KafkaClientError, (str(self), self.code))


class ChangedWhileStored(PipeteerError):
    """A file's content was not the one hashed when it was copied (it changed meanwhile)."""

    def __init__(self, source: str | os.PathLike[str], key: str) -> None:
        super().__init__(f"{source} changed while it was stored (its hash is no longer {key})")
        self.source, self.key = source, key

    def __reduce__(self) -> Any:
        return (ChangedWhileStored, (self.source, self.key))


class StageError(PipeteerError):
    """A stage failed while processing an item."""

    def __init__(
        self,
        message: str,
        *,
        stage: str | None = None,
        id: str | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.stage = stage
        self.id = id
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(message)


class Unavailable(QueueError):
    """The backend cannot take work now (its brokers are away, its disk is full): not the item's fault.
    A stage that meets it waits and tries again, without counting an attempt against the item."""


class BrokerUnreachable(Unavailable):
    """No Kafka broker at `bootstrap` answers; the message says what to check.

    >>> print(BrokerUnreachable("127.0.0.1:19999", "Connection refused"))  # doctest: +ELLIPSIS
    cannot reach the Kafka brokers at 127.0.0.1:19999 (Connection refused): check ...
    """

    HINT = (
        "check the bootstrap servers (kafka://HOST:PORT in --backend or PIPETEER_BACKEND, --bootstrap for "
        "`topics`), that the brokers are running and reachable from this host (address, port, DNS, firewall), "
        "and the client security settings (PIPETEER_KAFKA_SECURITY_PROTOCOL, PIPETEER_KAFKA_SASL_*, "
        "PIPETEER_KAFKA_SSL_*)"
    )

    def __init__(self, bootstrap: str, error: str, *, seconds: float | None = None) -> None:
        self.bootstrap = bootstrap
        self.error = error
        since = "" if seconds is None else f" for {seconds:.0f}s"
        super().__init__(f"cannot reach the Kafka brokers at {bootstrap}{since} ({error}): {self.HINT}")


def format_size(n: int) -> str:
    """A size in bytes as people read it (decimal units, as `df -H` gives them).

    >>> format_size(512), format_size(120_000), format_size(3_100_000), format_size(12_345_678_901)
    ('512 B', '120 kB', '3.1 MB', '12 GB')
    """
    size, units = float(n), ["B", "kB", "MB", "GB", "TB"]
    while size >= 1000 and len(units) > 1:
        size /= 1000
        units.pop(0)
    unit = units[0]
    return f"{size:.0f} {unit}" if unit == "B" or size >= 10 else f"{size:.1f} {unit}"


class StorageFull(Unavailable):
    """No space left on the file system pipeteer was writing to (or a disk quota reached): the blob
    store (`PIPETEER_BLOBS`, the same on every backend), the SQLite database, the directory
    `pipeteer pull` writes to. Nothing is left half-written: no part of a blob under its key, no row
    referencing a blob that is not whole, no truncated file under its final name. Not the item's
    fault: a stage meeting it waits and tries again (no attempt counted, no dead letter) and goes on
    by itself once there is room; `pipeteer push` and `pull` stop, say how far they got, and a re-run
    goes on from there.

    `path` is what was being written, `doing` what for, `free` the bytes then free on its file system
    (None: unknown), `mount` where that file system is mounted (None: unknown), `fix` what to do.

    >>> print(StorageFull("/mnt/x/q.blobs", doing="writing blob 5d41 of 3.1 MB", free=120_000, mount="/mnt/x",
    ...                   fix="free space there"))
    no space left on /mnt/x/q.blobs (writing blob 5d41 of 3.1 MB; 120 kB free on /mnt/x): free space there
    """

    def __init__(self, path: str, *, doing: str, free: int | None, fix: str, mount: str | None = None,
                 quota: bool = False) -> None:
        self.path, self.doing, self.free, self.fix, self.mount, self.quota = path, doing, free, fix, mount, quota
        where = f" on {mount}" if mount is not None and mount != path else ""
        room = "free space unknown" if free is None else f"{format_size(free)} free{where}"
        what = "disk quota exceeded on" if quota else "no space left on"
        super().__init__(f"{what} {path} ({doing}; {room}): {fix}")

    def __reduce__(self) -> Any:  # (keyword arguments: pickled by hand, like ChangedWhileStored)
        return (_storage_full, (self.path, self.doing, self.free, self.fix, self.mount, self.quota))


def _storage_full(
    path: str, doing: str, free: int | None, fix: str, mount: str | None, quota: bool
) -> StorageFull:
    return StorageFull(path, doing=doing, free=free, fix=fix, mount=mount, quota=quota)
