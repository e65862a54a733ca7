"""Topic and deployment settings, and the one precedence that combines them.

Every topic setting is resolved through four layers, later ones winning:

1. **library defaults**: `LIBRARY_DEFAULTS`, per topic kind (data, changelog, dead-letter);
2. **workflow**: the `workflow:` section of a topology config file, for every topic of the workflow;
3. **per-topic**: the `topics:` section, keyed by full topic name or by its short name
   (the topic name without `<prefix>.<workflow>.`, e.g. `validation` or `stage.validation.pending`);
4. **command line / profile**: the profile picked with `--profile NAME` (from the file's `profiles:`),
   then each `--set KEY=VALUE`, in order.

A topology config file (YAML), all sections optional::

    prefix: pipeteer
    workflow: {partitions: 12, retention.ms: 259200000}
    topics:
      stage.validation.dlq: {retention.ms: 2419200000}
    stages:
      auto-correct: {replicas: 3, resources: {requests: {cpu: 500m}}}
    profiles:
      local: {replication.factor: 1, min.insync.replicas: 1}

`partitions` may only be set for the whole workflow (layers 2 and 4) or for a dead-letter topic:
data and changelog topics are co-partitioned (an item id keeps its partition number across stages).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeteer.errors import ConfigError
from pipeteer.spec.names import DEFAULT_PREFIX

KINDS = ("data", "changelog", "dead-letter")
"""Topic kinds: a queue's items, a stage's pending table (compacted), a stage's dead letters."""

TOPIC_KEYS = (
    "partitions",
    "replication.factor",
    "cleanup.policy",
    "retention.ms",
    "max.message.bytes",
    "min.insync.replicas",
)
"""Settings a topology may give a topic; all but the first two are Kafka topic configs."""

_DAY_MS = 24 * 3600 * 1000

LIBRARY_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # Values are small (large ones go through the claim-check blob store), so 1 MiB is ample.
        "data": {
            "partitions": 6,
            "replication.factor": 3,
            "cleanup.policy": "delete",
            "retention.ms": 7 * _DAY_MS,
            "max.message.bytes": 1048576,
            "min.insync.replicas": 2,
        },
        # The pending table must survive forever: compaction keeps the last state per id,
        # tombstones remove finished items.
        "changelog": {
            "partitions": 6,
            "replication.factor": 3,
            "cleanup.policy": "compact",
            "retention.ms": -1,
            "max.message.bytes": 1048576,
            "min.insync.replicas": 2,
        },
        # Dead letters wait for a person to look at them: keep them longer than data.
        "dead-letter": {
            "partitions": 6,
            "replication.factor": 3,
            "cleanup.policy": "delete",
            "retention.ms": 28 * _DAY_MS,
            "max.message.bytes": 1048576,
            "min.insync.replicas": 2,
        },
    }
)

_CLEANUP = {"delete", "compact", "compact,delete", "delete,compact"}


def _normalise(key: str, value: Any, where: str) -> int | str:
    """Check one setting; numbers become int, cleanup.policy stays a string."""
    if key not in TOPIC_KEYS:
        raise ConfigError(f"{where}: unknown topic setting {key!r} (known: {', '.join(TOPIC_KEYS)})")
    if key == "cleanup.policy":
        if str(value) not in _CLEANUP:
            raise ConfigError(
                f"{where}: cleanup.policy {value!r} must be one of {', '.join(sorted(_CLEANUP))}"
            )
        return str(value)
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}") from None
    minimum = -1 if key == "retention.ms" else 1
    if number < minimum:
        raise ConfigError(f"{where}: {key} must be >= {minimum}, got {number}")
    return number


def _settings(raw: Any, where: str) -> dict[str, int | str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping of topic settings, got {type(raw).__name__}")
    return {str(k): _normalise(str(k), v, where) for k, v in raw.items()}


@dataclass(frozen=True)
class StageSettings:
    """Deployment settings of one stage (Helm values); everything optional."""

    replicas: int = 1
    resources: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TopologyConfig:
    """Overrides of the library defaults, by layer (see the module docstring for the precedence)."""

    prefix: str = DEFAULT_PREFIX
    workflow: Mapping[str, int | str] = field(default_factory=dict)
    topics: Mapping[str, Mapping[str, int | str]] = field(default_factory=dict)
    command_line: Mapping[str, int | str] = field(default_factory=dict)
    stages: Mapping[str, StageSettings] = field(default_factory=dict)

    @classmethod
    def from_mapping(
        cls,
        raw: Mapping[str, Any] | None,
        *,
        profile: str | None = None,
        sets: Sequence[str] = (),
        source: str = "config",
    ) -> TopologyConfig:
        """Build from a parsed config file, a profile name and `KEY=VALUE` strings."""
        raw = dict(raw or {})
        unknown = set(raw) - {"prefix", "workflow", "topics", "stages", "profiles"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown section(s) {', '.join(sorted(unknown))} "
                "(known: prefix, workflow, topics, stages, profiles)"
            )
        topics_raw = raw.get("topics") or {}
        if not isinstance(topics_raw, Mapping):
            raise ConfigError(f"{source}: 'topics' must map topic names to settings")
        topics = {str(t): _settings(s, f"{source}: topics.{t}") for t, s in topics_raw.items()}
        profiles = raw.get("profiles") or {}
        command_line: dict[str, int | str] = {}
        if profile is not None:
            if profile not in profiles:
                known = ", ".join(sorted(profiles)) or "none defined"
                raise ConfigError(f"{source}: no profile {profile!r} (profiles: {known})")
            command_line.update(_settings(profiles[profile], f"{source}: profiles.{profile}"))
        for item in sets:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set replication.factor=1")
            command_line[key.strip()] = _normalise(key.strip(), value.strip(), f"--set {item}")
        stages_raw = raw.get("stages") or {}
        if not isinstance(stages_raw, Mapping):
            raise ConfigError(f"{source}: 'stages' must map stage names to settings")
        stages = {str(name): _stage_settings(s, f"{source}: stages.{name}") for name, s in stages_raw.items()}
        prefix = raw.get("prefix", DEFAULT_PREFIX)
        if not isinstance(prefix, str):
            raise ConfigError(f"{source}: prefix must be a string, got {prefix!r}")
        return cls(
            prefix=prefix,
            workflow=_settings(raw.get("workflow"), f"{source}: workflow"),
            topics=topics,
            command_line=command_line,
            stages=stages,
        )

    @classmethod
    def load(
        cls, path: str | Path | None, *, profile: str | None = None, sets: Sequence[str] = ()
    ) -> TopologyConfig:
        """Read a topology config file (or none), then apply a profile and `--set` items."""
        import yaml

        raw: Any = None
        if path is not None:
            try:
                raw = yaml.safe_load(Path(path).read_text())
            except OSError as e:
                raise ConfigError(f"cannot read topology config {str(path)!r}: {e.strerror}") from None
            except yaml.YAMLError as e:
                raise ConfigError(f"topology config {str(path)!r} is not valid YAML: {e}") from None
            if raw is not None and not isinstance(raw, Mapping):
                raise ConfigError(f"topology config {str(path)!r} must be a mapping at the top level")
        return cls.from_mapping(raw, profile=profile, sets=sets, source=str(path or "config"))

    def resolve(self, kind: str, topic: str, short: str) -> dict[str, int | str]:
        """The settings of one topic after all four layers."""
        if kind not in KINDS:
            raise ConfigError(f"unknown topic kind {kind!r} (known: {', '.join(KINDS)})")
        out: dict[str, int | str] = dict(LIBRARY_DEFAULTS[kind])
        out.update(self.workflow)
        for key in (short, topic):
            own = self.topics.get(key, {})
            if "partitions" in own and kind != "dead-letter":
                raise ConfigError(
                    f"topics.{key}: partitions cannot be set per topic for a {kind} topic: data and changelog "
                    "topics of a workflow share one partition count so an item keeps its partition across "
                    "stages; set it under 'workflow:' or with --set partitions=N"
                )
            out.update(own)
        out.update(self.command_line)
        if int(out["min.insync.replicas"]) > int(out["replication.factor"]):
            raise ConfigError(
                f"topic {topic!r}: min.insync.replicas {out['min.insync.replicas']} exceeds replication.factor "
                f"{out['replication.factor']}: no write could ever succeed; lower min.insync.replicas"
            )
        return out

    def unused_topic_keys(self, known: Iterable[str]) -> list[str]:
        """Per-topic override keys that match no topic (typos), for an error message."""
        known = set(known)
        return sorted(k for k in self.topics if k not in known)


def _stage_settings(raw: Any, where: str) -> StageSettings:
    if raw is None:
        return StageSettings()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping (replicas, resources)")
    unknown = set(raw) - {"replicas", "resources"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))} (known: replicas, resources)"
        )
    replicas = raw.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ConfigError(f"{where}: replicas must be a non-negative integer, got {replicas!r}")
    resources = raw.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise ConfigError(f"{where}: resources must be a mapping (requests, limits)")
    return StageSettings(replicas=replicas, resources=dict(resources))
