"""The compiled topology: everything a deployment needs to know about an app, derived once.

`build_topology(app)` names every queue, stage and route of the workflow's plan
(`pipeteer.plan.Plan`, which the wiring and the Kafka backend read too) as topics, consumer
groups and transactional id prefixes, and resolves each topic's settings (`TopologyConfig`); the result is frozen and has no I/O,
so it can be described, diffed and emitted as manifests without a broker.

>>> topo = build_topology(app)  # doctest: +SKIP
>>> [s.name for s in topo.stages]  # doctest: +SKIP
['auto-correct', 'validation', 'manual-correct']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeteer.compile.config import TopologyConfig
from pipeteer.errors import ConfigError, UnknownStage
from pipeteer.plan import INPUT, OUTPUT_QUEUE, Plan, RoutePlan, StagePlan, TopicPlan
from pipeteer.spec import names
from pipeteer.spec.stages import OUTPUT, Workflow
from pipeteer.topics import COMPILE_PROFILE, topic_configs
from pipeteer.types import type_name

OUTPUT_TARGET = OUTPUT
DEFAULT_PORT = 8000
"""Every stage service listens here: /metrics, /healthz, /readyz, and a web stage's app under /<stage>/."""


class AppLike(Protocol):
    """What the compiler needs of an app (`pipeteer.App` satisfies it)."""

    @property
    def workflow(self) -> Workflow[Any, Any]: ...

    def is_web(self, stage: str) -> bool: ...

    def task_age_limit(self, stage: str) -> float: ...


@dataclass(frozen=True)
class TopicSpec:
    """One Kafka topic, its resolved settings and what it carries."""

    name: str
    kind: str  # "data" | "changelog" | "dead-letter"
    short: str  # the name without `<prefix>.<workflow>.`; the per-topic override key
    state: str | None  # type name of the values (data and changelog topics)
    partitions: int
    replication_factor: int
    config: Mapping[str, str]  # Kafka topic configs, as strings
    reader: str | None = None  # stage that consumes it (data topics)
    consumer_group: str | None = None
    changelog: str | None = None  # the reader's pending-table topic

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "short": self.short,
            "partitions": self.partitions,
            "replication.factor": self.replication_factor,
            "config": dict(self.config),
        }
        for key, value in (
            ("state", self.state),
            ("reader", self.reader),
            ("consumer_group", self.consumer_group),
            ("changelog", self.changelog),
        ):
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TopicSpec:
        try:
            return cls(
                name=str(raw["name"]),
                kind=str(raw["kind"]),
                short=str(raw.get("short", raw["name"])),
                state=raw.get("state"),
                partitions=int(raw["partitions"]),
                replication_factor=int(raw["replication.factor"]),
                config={str(k): str(v) for k, v in (raw.get("config") or {}).items()},
                reader=raw.get("reader"),
                consumer_group=raw.get("consumer_group"),
                changelog=raw.get("changelog"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"topic entry {dict(raw)!r} is incomplete or malformed ({e}): regenerate topics.yaml"
            ) from None


@dataclass(frozen=True)
class RouteSpec:
    """Items of `state` produced by `source` go to `target` through `topic`."""

    source: str
    state: str
    target: str
    topic: str


@dataclass(frozen=True)
class StateSpec:
    """A state type and the topic holding its items."""

    name: str
    qualname: str  # module.qualname: where the class lives
    topic: str


@dataclass(frozen=True)
class StageSpec:
    """One runnable stage: its queues, Kafka identities and how it is served."""

    name: str
    path: tuple[str, ...]
    web: bool
    state: str
    input_topic: str
    changelog_topic: str
    dead_letter_topic: str
    consumer_group: str
    transactional_id_prefix: str
    k8s_name: str
    port: int
    routes: tuple[RouteSpec, ...]
    task_age_limit: float | None = None
    """Web stages: seconds a person's task may wait before it is alerted on (`App(task_age_limits=...)`)."""

    @property
    def kind(self) -> str:
        return "web" if self.web else "coroutine"


@dataclass(frozen=True)
class Topology:
    """An app compiled for deployment. Immutable; build with `build_topology`."""

    workflow: str
    app: str | None
    prefix: str
    partitions: int
    input_topic: str
    output_topic: str
    stages: tuple[StageSpec, ...]
    states: tuple[StateSpec, ...]
    topics: tuple[TopicSpec, ...]
    routes: tuple[RouteSpec, ...]
    stage_settings: Mapping[str, Any] = field(default_factory=dict)
    profile: str = COMPILE_PROFILE
    """The built-in topic profile of the library defaults (`pipeteer.topics.TOPIC_PROFILES`)."""

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise UnknownStage(f"workflow {self.workflow!r}", name, self.stage_names())

    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def topic(self, name: str) -> TopicSpec:
        for t in self.topics:
            if t.name == name:
                return t
        raise ConfigError(f"topology {self.workflow!r} has no topic {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable graph written as topology.json."""
        return {
            "workflow": self.workflow,
            "app": self.app,
            "prefix": self.prefix,
            "profile": self.profile,
            "partitions": self.partitions,
            "input_topic": self.input_topic,
            "output_topic": self.output_topic,
            "stages": [
                {
                    "name": s.name,
                    "path": list(s.path),
                    "kind": s.kind,
                    "state": s.state,
                    "input_topic": s.input_topic,
                    "changelog_topic": s.changelog_topic,
                    "dead_letter_topic": s.dead_letter_topic,
                    "consumer_group": s.consumer_group,
                    "transactional_id_prefix": s.transactional_id_prefix,
                    "k8s_name": s.k8s_name,
                    "port": s.port,
                }
                for s in self.stages
            ],
            "states": [{"name": s.name, "qualname": s.qualname, "topic": s.topic} for s in self.states],
            "routes": [
                {"source": r.source, "state": r.state, "target": r.target, "topic": r.topic}
                for r in self.routes
            ],
            "topics": [t.to_dict() for t in self.topics],
        }


def _qualname(tp: Any) -> str:
    return f"{getattr(tp, '__module__', '?')}.{getattr(tp, '__qualname__', type_name(tp))}"


class _Builder:
    """Names and settings for every part of the plan (`pipeteer.plan.Plan`); the graph itself is the plan's."""

    def __init__(self, app: AppLike, config: TopologyConfig) -> None:
        self.app = app
        self.plan = Plan.of(app.workflow)
        self.config = config
        self.wf = self.plan.workflow.name
        self.names = self.plan.names(config.prefix)
        self.topics: dict[str, TopicSpec] = {}

    def _short(self, topic: str) -> str:
        base = ".".join(p for p in (self.config.prefix, self.wf) if p) + "."
        return topic[len(base) :] if topic.startswith(base) else topic

    def _topic(self, planned: TopicPlan) -> TopicSpec:
        name, short = planned.name, self._short(planned.name)
        settings = self.config.resolve(planned.kind, name, short)
        reader = planned.stage if planned.kind == "data" else None
        return TopicSpec(
            name=name,
            kind=planned.kind,
            short=short,
            state=None if planned.Type is None else type_name(planned.Type),
            partitions=int(settings["partitions"]),
            replication_factor=int(settings["replication.factor"]),
            config=topic_configs(settings),
            reader=None if reader is None else "/".join(reader),
            consumer_group=None if reader is None else self.names.group(reader),
            changelog=None if reader is None else self.names.changelog(reader),
        )

    def _is_web(self, stage_name: str) -> bool:
        try:
            return bool(self.app.is_web(stage_name))
        except (KeyError, LookupError):
            raise ConfigError(
                f"app of workflow {self.wf!r} has no artifact for stage {stage_name!r}: "
                "add it to App(..., artifacts={...})"
            ) from None

    def _route(self, r: RoutePlan) -> RouteSpec:
        return RouteSpec(r.source, type_name(r.Type), r.target, self.names.queue(r.queue))

    def _stage(self, s: StagePlan) -> StageSpec:
        web = self._is_web(s.name)
        return StageSpec(
            name=s.name,
            path=s.path,
            web=web,
            state=type_name(s.stage.Tin),
            input_topic=self.names.queue(s.queue),
            changelog_topic=self.names.changelog(s.path),
            dead_letter_topic=self.names.dead_letters(s.path),
            consumer_group=self.names.group(s.path),
            transactional_id_prefix=names.stage_id(self.wf, s.path, self.config.prefix) + ".",
            k8s_name=names.k8s_name(self.wf, *s.path),
            port=DEFAULT_PORT,
            routes=tuple(self._route(r) for r in s.routes),
            task_age_limit=self.app.task_age_limit(s.name) if web else None,
        )

    def build(self, app_ref: str | None) -> Topology:
        plan, root = self.plan, self.plan.workflow
        topics = {t.name: self._topic(t) for t in plan.topics(self.config.prefix)}
        stages = [self._stage(s) for s in plan.stages]
        states: dict[str, StateSpec] = {}
        for s in plan.stages:
            state = type_name(s.stage.Tin)
            states.setdefault(state, StateSpec(state, _qualname(s.stage.Tin), self.names.queue(s.queue)))
        output_topic = self.names.queue(OUTPUT_QUEUE)
        states.setdefault(type_name(root.Tout), StateSpec(type_name(root.Tout), _qualname(root.Tout), output_topic))
        unused = self.config.unused_topic_keys([k for t in topics.values() for k in (t.name, t.short)])
        if unused:
            raise ConfigError(
                f"topic overrides for unknown topics: {', '.join(unused)} "
                f"(topics: {', '.join(sorted(t.short for t in topics.values()))})"
            )
        stage_names = [s.name for s in stages]
        unknown_stages = sorted(set(self.config.stages) - set(stage_names))
        if unknown_stages:
            raise ConfigError(
                f"stage settings for unknown stages: {', '.join(unknown_stages)} (stages: {', '.join(stage_names)})"
            )
        data_partitions = {t.partitions for t in topics.values() if t.kind in ("data", "changelog")}
        (partitions,) = data_partitions  # config.resolve forbids per-topic partitions for these
        return Topology(
            workflow=self.wf,
            app=app_ref,
            prefix=self.config.prefix,
            partitions=partitions,
            input_topic=self.names.queue(INPUT),
            output_topic=output_topic,
            stages=tuple(stages),
            states=tuple(states.values()),
            topics=tuple(sorted(topics.values(), key=lambda t: t.name)),
            routes=tuple(self._route(r) for r in plan.routes),
            stage_settings=dict(self.config.stages),
            profile=self.config.profile,
        )


def build_topology(
    app: AppLike, config: TopologyConfig | None = None, *, app_ref: str | None = None
) -> Topology:
    """Compile an app (workflow + artifacts) into its deployment topology.

    `app_ref` is the `module:attribute` users deploy (it goes into stage commands).
    Raises `ConfigError` for settings that cannot work (unknown topics or stages in
    overrides, per-topic partitions on co-partitioned topics, min.insync.replicas above
    the replication factor, missing artifacts).
    """
    return _Builder(app, config or TopologyConfig()).build(app_ref)
