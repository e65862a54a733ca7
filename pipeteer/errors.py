"""The exception tree. Everything pipeteer raises on purpose derives from `PipeteerError`.

    PipeteerError
    ├── SpecError            invalid Pipeline / Wrapped / Workflow (all reasons collected, raised once)
    ├── QueueError
    │   ├── InexistentItem   (also a KeyError) an id that is not in the queue
    │   ├── RoutingError     a value that no stage accepts
    │   ├── RecordTooLarge   (also a ValueError) a value larger than the backend takes
    │   ├── CommitAborted    the transaction holding a completion was aborted: try again
    │   └── Unavailable      the backend cannot take work now; not the item's fault: wait, retry
    │       └── BrokerUnreachable no Kafka broker at the bootstrap servers answers
    ├── CodecError
    │   ├── SchemaError      a type that cannot become an Avro schema
    │   └── DecodeError      bytes that cannot become a value
    │       ├── BlobError    a claim-checked value's blob is missing or corrupt (names id, field, key)
    │       └── UnreadableRecord  written with a schema this reader does not know (yet) or cannot
    │                        read: held, never dropped nor dead-lettered (names the writer fingerprint)
    ├── ConfigError          a bad backend URL, app reference or setting
    └── StageError           a stage failed; carries stage / topic / partition / offset / id

Wrong value types are reported as `ValueTypeError`, which is both a `PipeteerError`
and a built-in `TypeError`, so `except TypeError` keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence


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
