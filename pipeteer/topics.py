"""Kafka topic settings: one table by topic kind and profile, and the checks a topic's settings pass.
No I/O; of pipeteer, only its errors and settings.

Both sides start here: the compiler (`pipeteer.compile.config.TopologyConfig`, the manifests and
`pipeteer topics plan / apply`) and the Kafka backend (`pipeteer.queues.kafka.config`, the topics a
running backend creates when missing) take a topic's settings from `topic_defaults(kind, profile)`,
so `pipeteer describe APP --backend URL` prints what `pipeteer run APP --backend URL` creates.

>>> settings = topic_defaults("changelog", "production")
>>> settings["cleanup.policy"], settings["partitions"], settings["replication.factor"]
('compact', 6, 3)
>>> topic_configs(settings)["retention.ms"]
'-1'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pipeteer.errors import ConfigError
from pipeteer.settings import KafkaUrl

TOPIC_KINDS = ("data", "changelog", "dead-letter", "schemas")
"""Topic kinds: a queue's items, a stage's pending table (compacted), a stage's dead letters, and the
workflow's writer schemas (compacted, one partition: `pipeteer.codec.catalog`)."""

TOPIC_KEYS = (
    "partitions",
    "replication.factor",
    "cleanup.policy",
    "retention.ms",
    "max.message.bytes",
    "min.insync.replicas",
)
"""Settings a topic may be given; all but the first two are Kafka topic configs."""

_DAY_MS = 24 * 3600 * 1000

_KIND_CONFIGS: Mapping[str, Mapping[str, int | str]] = MappingProxyType(
    {
        # Values are small (large ones go through the claim-check blob store), so 1 MiB is ample.
        "data": {"cleanup.policy": "delete", "retention.ms": 7 * _DAY_MS, "max.message.bytes": 1048576},
        # The pending table must survive forever: compaction keeps the last state per id,
        # tombstones remove finished items.
        "changelog": {"cleanup.policy": "compact", "retention.ms": -1, "max.message.bytes": 1048576},
        # Every schema any version wrote with, for ever (a record of it may still wait somewhere); tiny.
        "schemas": {"cleanup.policy": "compact", "retention.ms": -1, "max.message.bytes": 1048576},
        # Dead letters wait for a person to look at them: keep them longer than data.
        "dead-letter": {
            "cleanup.policy": "delete",
            "retention.ms": 28 * _DAY_MS,
            "max.message.bytes": 1048576,
        },
    }
)

TOPIC_PROFILES: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        # A cluster of three brokers or more: a write is acknowledged by two replicas, so one broker
        # may fail without losing or refusing anything. Six partitions: up to six instances a stage.
        "production": {"partitions": 6, "replication.factor": 3, "min.insync.replicas": 2},
        # One broker (a laptop, CI): no replicas to wait for; four partitions, so several instances
        # of a stage can still be tried.
        "local": {"partitions": 4, "replication.factor": 1, "min.insync.replicas": 1},
    }
)
"""How many partitions and replicas, by where the topics live; every other setting is by kind."""

COMPILE_PROFILE = "production"
"""`pipeteer compile` / `describe` without `--profile` or `--backend`: manifests are for a production cluster."""
BACKEND_PROFILE = "local"
"""The profile of the topics a running Kafka backend creates when they are missing (`topic_profile=`,
`PIPETEER_TOPIC_PROFILE`): creating them is a development convenience, production creates them with
`pipeteer topics apply` (or Strimzi) from the compiled manifests."""


def check_profile(profile: str, where: str) -> str:
    if profile not in TOPIC_PROFILES:
        raise ConfigError(
            f"{where}: unknown topic profile {profile!r} (profiles: {', '.join(TOPIC_PROFILES)})"
        )
    return profile


def topic_defaults(kind: str, profile: str) -> dict[str, int | str]:
    """The library's settings of a topic of `kind` under `profile`, before any override.

    >>> topic_defaults("changelog", "local")["cleanup.policy"], topic_defaults("data", "production")["partitions"]
    ('compact', 6)
    """
    if kind not in TOPIC_KINDS:
        raise ConfigError(f"unknown topic kind {kind!r} (known: {', '.join(TOPIC_KINDS)})")
    check_profile(profile, "topic settings")
    return fixed(kind, {**TOPIC_PROFILES[profile], **_KIND_CONFIGS[kind]})


FIXED: Mapping[str, Mapping[str, int | str]] = MappingProxyType({"schemas": {"partitions": 1}})
"""Settings of a topic kind that no profile or override changes: the schemas topic is tiny and read
whole by every process, so it keeps one partition whatever partition count the data topics get."""


def fixed(kind: str, settings: dict[str, int | str]) -> dict[str, int | str]:
    """`settings` with what `FIXED` says of `kind` put back (after every override layer).

    >>> fixed("schemas", {"partitions": 8, "replication.factor": 3})["partitions"]
    1
    """
    settings.update(FIXED.get(kind, {}))
    return settings


def check_topic_settings(
    subject: str, settings: Mapping[str, int | str], fix: str = "lower min.insync.replicas"
) -> None:
    """Raise `ConfigError` for settings no write could succeed with; `subject` says whose they are."""
    if int(settings["min.insync.replicas"]) > int(settings["replication.factor"]):
        raise ConfigError(
            f"{subject}: min.insync.replicas {settings['min.insync.replicas']} exceeds replication.factor "
            f"{settings['replication.factor']}: no write could ever succeed; {fix}"
        )


def topic_configs(settings: Mapping[str, int | str]) -> dict[str, str]:
    """The Kafka topic configs of resolved settings (all but partitions and replication factor), as strings."""
    return {k: str(v) for k, v in sorted(settings.items()) if k not in ("partitions", "replication.factor")}


@dataclass(frozen=True)
class Topics:
    """How a running Kafka backend creates missing topics (`pipeteer topics apply` is the production
    way): the settings of `topic_defaults(kind, profile)`, with the partitions and replication factor
    the URL or environment give, if any. `pipeteer describe APP --backend URL` prints the same settings.

    >>> Topics().settings("changelog", "t")["cleanup.policy"], Topics(partitions=8).settings("data", "t")["partitions"]
    ('compact', 8)
    """

    profile: str = BACKEND_PROFILE
    partitions: int | None = None
    replication_factor: int | None = None
    create_missing: bool = True

    @classmethod
    def of_url(cls, url: KafkaUrl) -> Topics:
        """The topic options of a kafka:// URL (`topic_profile`, `partitions`, `replication_factor`,
        `create_topics`), checked now rather than at the first push: `ConfigError` for settings no
        write could succeed with.

        >>> from pipeteer.settings import kafka_url
        >>> topics = Topics.of_url(kafka_url("kafka://b:9092?topic_profile=production&partitions=12", env={}))
        >>> topics.profile, topics.overrides()
        ('production', {'partitions': 12})
        """
        topics = cls(
            profile=check_profile(url.options.get("topic_profile") or BACKEND_PROFILE, url.where),
            partitions=url.positive("partitions"),
            replication_factor=url.positive("replication_factor"),
            create_missing=url.options.get("create_topics", "true").lower() not in ("0", "false", "no"),
        )
        for kind in TOPIC_KINDS:
            topics.settings(kind, f"{url.where} ({kind} topics, topic_profile {topics.profile})")
        return topics

    def overrides(self) -> dict[str, int | str]:
        """What the URL or environment set over the profile."""
        given = {"partitions": self.partitions, "replication.factor": self.replication_factor}
        return {k: v for k, v in given.items() if v is not None}

    def settings(self, kind: str, subject: str) -> dict[str, int | str]:
        """Every setting of a topic of `kind` this backend creates (`ConfigError` naming `subject` if they cannot work)."""
        out = fixed(kind, {**topic_defaults(kind, self.profile), **self.overrides()})
        check_topic_settings(subject, out, "raise replication_factor, or use topic_profile=local (one broker)")
        return out
