"""Topic and deployment settings, and the one precedence that combines them.

Every topic setting is resolved through four layers, later ones winning:

1. **library defaults**: `pipeteer.topics.topic_defaults(kind, profile)`: per topic kind (data,
   changelog, dead-letter) and per built-in profile (`production`, the default here; `local`, one
   broker; see `pipeteer.topics.TOPIC_PROFILES`). `--profile local` picks the built-in `local` one;
2. **workflow**: the `workflow:` section of a topology config file, for every topic of the workflow;
3. **per-topic**: the `topics:` section, keyed by full topic name or by its short name
   (the topic name without `<prefix>.<workflow>.`, e.g. `validation` or `stage.validation.pending`);
4. **command line / profile**: the file's profile of the name given with `--profile NAME` (from its
   `profiles:`), then each `--set KEY=VALUE`, in order.

A topology config file (YAML), all sections optional::

    prefix: pipeteer
    workflow: {partitions: 12, retention.ms: 259200000}
    topics:
      stage.validation.dlq: {retention.ms: 2419200000}
    stages:
      auto-correct: {replicas: 3, resources: {requests: {cpu: 500m}}}
    profiles:
      local: {partitions: 2}

`partitions` may only be set for the whole workflow (layers 2 and 4) or for a dead-letter topic:
data and changelog topics are co-partitioned (an item id keeps its partition number across stages).

`TopologyConfig.of_backend(url)` is the configuration a running Kafka backend creates topics with,
so that `pipeteer describe APP --backend URL` prints what `pipeteer run APP --backend URL` creates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeteer.errors import ConfigError
from pipeteer.settings import kafka_url
from pipeteer.spec.names import DEFAULT_PREFIX
from pipeteer.topics import (
    COMPILE_PROFILE,
    TOPIC_KEYS,
    TOPIC_KINDS,
    TOPIC_PROFILES,
    Topics,
    check_topic_settings,
    fixed,
    topic_defaults,
)

LIBRARY_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {kind: MappingProxyType(topic_defaults(kind, COMPILE_PROFILE)) for kind in TOPIC_KINDS}
)
"""The settings of each topic kind when no profile is chosen (`pipeteer.topics` holds the one table)."""

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
    profile: str = COMPILE_PROFILE
    """The built-in profile of the library defaults (`pipeteer.topics.TOPIC_PROFILES`)."""

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
        if not isinstance(profiles, Mapping):
            raise ConfigError(f"{source}: 'profiles' must map profile names to topic settings")
        command_line: dict[str, int | str] = {}
        if profile is not None:
            if profile not in profiles and profile not in TOPIC_PROFILES:
                known = ", ".join(sorted({*profiles, *TOPIC_PROFILES}))
                raise ConfigError(f"{source}: no profile {profile!r} (profiles: {known})")
            command_line.update(_settings(profiles.get(profile), f"{source}: profiles.{profile}"))
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
            profile=profile if profile is not None and profile in TOPIC_PROFILES else COMPILE_PROFILE,
        )

    @classmethod
    def of_backend(cls, url: str, env: Mapping[str, str] | None = None) -> TopologyConfig:
        """The topic settings the Kafka backend at `url` creates missing topics with (its prefix,
        `topic_profile`, `partitions` and `replication_factor`, from the URL and the environment), read
        as the backend reads them (`pipeteer.settings.kafka_url`, `pipeteer.topics.Topics.of_url`)."""
        parsed = kafka_url(url, env)
        topics = Topics.of_url(parsed)
        return cls(
            prefix=parsed.options.get("prefix", DEFAULT_PREFIX),
            profile=topics.profile,
            command_line=topics.overrides(),
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
        out = topic_defaults(kind, self.profile)
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
        fixed(kind, out)
        check_topic_settings(f"topic {topic!r}", out)
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
