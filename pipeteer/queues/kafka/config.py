"""Configuration of the Kafka backend: where the cluster is, how stages commit, retry and dead-letter.

Precedence, lowest first: library defaults < the backend URL's query < environment variables
(`pipeteer.settings` names and documents each; `pipeteer --help` lists them), applied in `from_url`:

- `PIPETEER_KAFKA_<PROPERTY>`: any librdkafka client property, upper-cased with `_` for `.`
  (`PIPETEER_KAFKA_SECURITY_PROTOCOL=SASL_SSL`, `PIPETEER_KAFKA_SASL_MECHANISM=SCRAM-SHA-512`,
  `PIPETEER_KAFKA_SASL_USERNAME`, `PIPETEER_KAFKA_SASL_PASSWORD`, `PIPETEER_KAFKA_SSL_CA_LOCATION`, ...).
- `PIPETEER_TOPIC_PREFIX`, `PIPETEER_TOPIC_PROFILE` (`local`, the default, or `production`: see
  `pipeteer.topics.TOPIC_PROFILES`), `PIPETEER_PARTITIONS`, `PIPETEER_REPLICATION_FACTOR`, `PIPETEER_CREATE_TOPICS`.
- `PIPETEER_SCHEMA_REGISTRY` (Confluent wire format), `PIPETEER_SCHEMA_DIR` (older `.avsc` versions).
- `PIPETEER_BLOBS` (claim check: a blob store URL for large records, e.g. images) and
  `PIPETEER_CLAIM_CHECK_BYTES` (`bytes` values above this size go there; default 32 KiB).
- `PIPETEER_COMMIT_INTERVAL_MS`, `PIPETEER_COMMIT_RECORDS`, `PIPETEER_MAX_PENDING`,
  `PIPETEER_RETRIES`, `PIPETEER_RETRY_BACKOFF_MS`, `PIPETEER_TRANSACTION_TIMEOUT_MS` (also taken from
  the client property `transaction.timeout.ms` when not given itself).
- `PIPETEER_INSTANCE`: this instance's stable name (its transactional ids derive from it, so a
  restarted instance fences its own zombie at once). Defaults to `$HOSTNAME`-pid.
- `PIPETEER_STATIC_MEMBERSHIP=true`: join consumer groups as a static member named by the instance
  (KIP-345), so a restart under the same name takes its partitions back without a rebalance. Only for
  instances restarted under their own name (a StatefulSet's): a static member that stops keeps its
  partitions until its session times out, which stalls a rolling upgrade whose new pods have new
  names. Off by default: a stopped instance leaves its groups at once.

The URL's query takes the same settings in lower case (`?prefix=acme&partitions=8&commit_records=100`)
and client properties by their dotted names (`?security.protocol=SSL`). Secrets are masked in `repr`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from pipeteer import settings as env_settings
from pipeteer.errors import ConfigError
from pipeteer.queues.base import Retry
from pipeteer.settings import mask
from pipeteer.spec.names import DEFAULT_PREFIX
from pipeteer.topics import Topics

# librdkafka properties the backend sets itself: a user value would break exactly-once.
_RESERVED = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "transactional.id",
        "enable.idempotence",
        "isolation.level",
        "enable.auto.commit",
        "enable.auto.offset.store",
    }
)


# Client properties only one kind of client understands (librdkafka warns about the others):
# they are passed through to that kind only, so one URL or environment configures them all.
_CONSUMER_ONLY = (
    "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms", "auto.offset.reset",
    "partition.assignment.strategy", "group.", "fetch.", "max.partition.fetch.bytes", "queued.",
    "check.crcs", "auto.commit", "coordinator.query.interval.ms", "consume.callback.max.messages",
)
_PRODUCER_ONLY = (
    "acks", "request.required.acks", "linger.ms", "queue.buffering.", "batch.", "compression.",
    "message.timeout.ms", "delivery.timeout.ms", "transaction.timeout.ms", "partitioner", "retries",
    "message.send.max.retries", "retry.backoff", "sticky.partitioning.linger.ms",
)


def _for_role(key: str, role: str | None) -> bool:
    if role == "producer":
        return not key.startswith(_CONSUMER_ONLY)
    if role == "consumer":
        return not key.startswith(_PRODUCER_ONLY)
    if role == "admin":
        return not key.startswith(_CONSUMER_ONLY + _PRODUCER_ONLY)
    return True


@dataclass(frozen=True)
class KafkaConnection:
    """Where the cluster is and how to talk to it; secrets are masked in `repr`.

    >>> KafkaConnection("b:9092", {"sasl.password": "hunter2"})
    KafkaConnection(bootstrap_servers='b:9092', properties={'sasl.password': '***'}, prefix='pipeteer')
    """

    bootstrap_servers: str
    properties: Mapping[str, str] = field(default_factory=dict)
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ConfigError("Kafka backend: no bootstrap servers; write kafka://host:port")
        bad = sorted(k for k in self.properties if k in _RESERVED)
        if bad:
            raise ConfigError(
                f"Kafka client properties {bad} are set by pipeteer itself (exactly-once needs them): remove them"
            )
        object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))

    @property
    def record_limit(self) -> int:
        """The largest record the clients produce: librdkafka's `message.max.bytes` (1,000,000 by
        default), framing included."""
        return int(self.properties.get("message.max.bytes", 1_000_000))

    def __repr__(self) -> str:
        return (
            f"KafkaConnection(bootstrap_servers={self.bootstrap_servers!r}, "
            f"properties={mask(self.properties)!r}, prefix={self.prefix!r})"
        )

    def client_config(self, role: str | None = None, **overrides: Any) -> dict[str, Any]:
        """The librdkafka configuration for one client (`role`: producer, consumer or admin):
        connection properties that apply to that kind of client, then `overrides`."""
        from pipeteer.queues.kafka.health import watch

        props = {k: v for k, v in self.properties.items() if _for_role(k, role)}
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, **props}
        # librdkafka's logs and errors go through Python logging, rate-limited (pipeteer.queues.kafka.health)
        conf.update(watch(self.bootstrap_servers).client_config())
        conf.update(overrides)
        return conf


@dataclass(frozen=True)
class Transactions:
    """When a stage commits: every `interval` seconds or `records` finished items, whichever is first
    (and at once when its input runs dry and it has finished what it had)."""

    interval: float = 0.1
    records: int = 10_000
    """A bound on the work a crash makes the stage redo; the interval bounds the latency. Each commit
    costs the stage two round trips to the transaction coordinator, so at 1,000 a fast stage
    (50,000 records/s) committed five times per interval and spent a tenth of its time there."""
    timeout_ms: int = 10_000
    max_pending: int = 10_000
    """Consumption pauses while this many items are pending (and resumes at half)."""
    max_pending_bytes: int = 64 << 20
    """... or while their records hold this many bytes (large values are references, so this bounds
    the memory of a backlog of images too); a consumed batch never takes more than what is left."""


@dataclass(frozen=True)
class KafkaSettings:
    """Everything the Kafka backend is configured with."""

    connection: KafkaConnection
    topics: Topics = field(default_factory=Topics)
    transactions: Transactions = Transactions()
    retries: Retry = field(default_factory=Retry)
    """The same policy, with the same meaning, as every backend's (`pipeteer.queues.base.Retry`)."""
    instance: str = ""
    schema_registry: str | None = None
    """A schema registry URL: records use the Confluent wire format (else Avro single-object encoding)."""
    schema_dir: str | None = None
    """Where `.avsc` files of older schema versions live, so their records still decode."""
    blobs: str | None = None
    """A blob store URL (`s3://bucket/prefix?endpoint=…`, or a directory every instance shares): `bytes`
    values larger than `claim_check_bytes` go there and the records carry references (claim check)."""
    claim_check_bytes: int = 32 * 1024
    """`bytes` values above this size go to the blob store (when `blobs` is set)."""
    static_membership: bool = False
    """Join consumer groups as a static member named by `instance` (KIP-345): a restarted instance
    takes its partitions back at once, with no rebalance. Off by default (see the module's docstring)."""

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None) -> KafkaSettings:
        """Parse `kafka://host:port[,host2:port]?options`, then apply the environment (which wins): the
        URL is read by `pipeteer.settings.kafka_url`, the one parser of a kafka:// URL.

        >>> s = KafkaSettings.from_url("kafka://k1:9092,k2:9092?prefix=acme&partitions=8", env={})
        >>> s.connection.bootstrap_servers, s.connection.prefix, s.topics.partitions
        ('k1:9092,k2:9092', 'acme', 8)
        """
        parsed = env_settings.kafka_url(url, env)
        opts = parsed.options
        conn = KafkaConnection(parsed.servers, parsed.properties, prefix=opts.get("prefix", DEFAULT_PREFIX))
        topics = Topics.of_url(parsed)
        tx = Transactions(
            interval=parsed.number("commit_interval_ms", int(Transactions.interval * 1000)) / 1000,
            records=parsed.number("commit_records", Transactions.records),
            timeout_ms=parsed.number("transaction_timeout_ms", Transactions.timeout_ms),
            max_pending=parsed.number("max_pending", Transactions.max_pending),
            max_pending_bytes=parsed.number("max_pending_bytes", Transactions.max_pending_bytes),
        )
        if tx.interval * 1000 >= tx.timeout_ms:
            raise ConfigError(
                f"{parsed.where}: commit_interval_ms {round(tx.interval * 1000)} must be below "
                f"transaction_timeout_ms {tx.timeout_ms}: the brokers abort a transaction open longer than that "
                "(and fence the stage's producer)"
            )
        retries = Retry.from_options(opts, "Kafka backend options")
        host = env_settings.environ(env).get("HOSTNAME") or socket.gethostname()
        instance = opts.get("instance") or f"{host}-{os.getpid()}"
        # Dynamic by default: a stopped instance leaves its group at once, so a rolling restart (whose new
        # pods have new names) hands partitions over in seconds. A static member keeps them until its session
        # times out: only for instances restarted under the same name (a StatefulSet's).
        static = opts.get("static_membership", "false").lower() not in ("0", "false", "no", "")
        return cls(
            conn,
            topics,
            tx,
            retries,
            instance,
            schema_registry=opts.get("schema_registry") or None,
            schema_dir=opts.get("schema_dir") or None,
            blobs=opts.get("blobs") or None,
            claim_check_bytes=parsed.number("claim_check_bytes", cls.claim_check_bytes),
            static_membership=static,
        )

    def with_instance(self, instance: str) -> KafkaSettings:
        return replace(self, instance=instance)
