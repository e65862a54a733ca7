"""The compiled topology: everything a deployment needs to know about an app, derived once.

`build_topology(app)` walks the workflow graph and names every topic, consumer group and
transactional id prefix with `pipeteer.spec.names`; the result is frozen and has no I/O,
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
from pipeteer.errors import ConfigError
from pipeteer.spec import names
from pipeteer.spec.stages import OUTPUT, Stage, Workflow
from pipeteer.types import type_name

INPUT_QUEUE = ("input",)
OUTPUT_QUEUE = ("output",)
INPUT_SOURCE = "<input>"
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

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(
            f"workflow {self.workflow!r} has no stage {name!r} (stages: {', '.join(self.stage_names())})"
        )

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
    def __init__(self, app: AppLike, config: TopologyConfig) -> None:
        self.app = app
        self.root = app.workflow
        self.config = config
        self.wf = self.root.name
        self.stages: list[StageSpec] = []
        self.routes: list[RouteSpec] = []
        self.topics: dict[str, TopicSpec] = {}
        self.states: dict[str, StateSpec] = {}
        # queue path read by each (possibly nested) stage path
        self.queue_of: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.leaf_entry: dict[tuple[str, ...], tuple[str, ...]] = {}

    def _short(self, topic: str) -> str:
        base = ".".join(p for p in (self.config.prefix, self.wf) if p) + "."
        return topic[len(base) :] if topic.startswith(base) else topic

    def _topic(self, name: str, kind: str, state: str | None, **extra: Any) -> str:
        settings = self.config.resolve(kind, name, self._short(name))
        config = {
            k: str(v) for k, v in sorted(settings.items()) if k not in ("partitions", "replication.factor")
        }
        self.topics[name] = TopicSpec(
            name=name,
            kind=kind,
            short=self._short(name),
            state=state,
            partitions=int(settings["partitions"]),
            replication_factor=int(settings["replication.factor"]),
            config=config,
            **extra,
        )
        return name

    def _queue_topic(self, path: tuple[str, ...]) -> str:
        return names.queue_topic(self.wf, path, self.config.prefix)

    def _assign_queues(
        self, wf: Workflow[Any, Any], prefix: tuple[str, ...], own_queue: tuple[str, ...]
    ) -> None:
        """The entry of `wf` reads `own_queue`; every other stage reads a queue named by its path."""
        for name, stage in wf.pipelines.items():
            path = (*prefix, name)
            queue = own_queue if name == wf.entry else path
            self.queue_of[path] = queue
            if isinstance(stage, Workflow):
                self._assign_queues(stage, path, queue)

    def _entry_leaf(self, path: tuple[str, ...], stage: Stage) -> tuple[str, ...]:
        while isinstance(stage, Workflow):
            path = (*path, stage.entry)
            stage = stage.pipelines[stage.entry]
        return path

    def _destination(
        self, chain: list[tuple[tuple[str, ...], Workflow[Any, Any]]], tp: Any
    ) -> tuple[str, str]:
        """Where an item of `tp` emitted inside the innermost workflow of `chain` goes: (target, topic)."""
        wf_path, wf = chain[-1]
        target = wf.stage_for(tp)
        if target is None:  # the workflow checked its routes when it was built
            raise ConfigError(f"workflow {wf.name!r}: nothing accepts {type_name(tp)} ({wf.accepted()})")
        if target == OUTPUT:
            if len(chain) == 1:
                return OUTPUT_TARGET, self._queue_topic(OUTPUT_QUEUE)
            return self._destination(chain[:-1], wf.Tout)
        path = (*wf_path, target)
        leaf = self._entry_leaf(path, wf.pipelines[target])
        return "/".join(leaf), self._queue_topic(self.queue_of[path])

    def _visit(self, chain: list[tuple[tuple[str, ...], Workflow[Any, Any]]]) -> None:
        wf_path, wf = chain[-1]
        for name, stage in wf.pipelines.items():
            path = (*wf_path, name)
            if isinstance(stage, Workflow):
                self._visit([*chain, (path, stage)])
                continue
            self._stage(chain, path, stage)

    def _is_web(self, stage_name: str) -> bool:
        try:
            return bool(self.app.is_web(stage_name))
        except (KeyError, LookupError):
            raise ConfigError(
                f"app of workflow {self.wf!r} has no artifact for stage {stage_name!r}: "
                "add it to App(..., artifacts={...})"
            ) from None

    def _stage(
        self, chain: list[tuple[tuple[str, ...], Workflow[Any, Any]]], path: tuple[str, ...], stage: Stage
    ) -> None:
        stage_name = "/".join(path)
        state = type_name(stage.Tin)
        queue = self.queue_of[path]
        data = self._queue_topic(queue)
        changelog = names.changelog_topic(self.wf, path, self.config.prefix)
        dlq = names.dead_letter_topic(self.wf, path, self.config.prefix)
        group = names.consumer_group(self.wf, path, self.config.prefix)
        self._topic(data, "data", state, reader=stage_name, consumer_group=group, changelog=changelog)
        self._topic(changelog, "changelog", state)
        self._topic(dlq, "dead-letter", None)
        self.states.setdefault(state, StateSpec(state, _qualname(stage.Tin), data))
        routes = []
        for tp in stage.output_types() or ():
            target, topic = self._destination(chain, tp)
            routes.append(RouteSpec(stage_name, type_name(tp), target, topic))
        self.routes.extend(routes)
        self.stages.append(
            StageSpec(
                name=stage_name,
                path=path,
                web=self._is_web(stage_name),
                state=state,
                input_topic=data,
                changelog_topic=changelog,
                dead_letter_topic=dlq,
                consumer_group=group,
                transactional_id_prefix=names.stage_id(self.wf, path, self.config.prefix) + ".",
                k8s_name=names.k8s_name(self.wf, *path),
                port=DEFAULT_PORT,
                routes=tuple(routes),
                task_age_limit=self.app.task_age_limit(stage_name) if self._is_web(stage_name) else None,
            )
        )

    def build(self, app_ref: str | None) -> Topology:
        root = self.root
        self._assign_queues(root, (), INPUT_QUEUE)
        entry_leaf = self._entry_leaf((root.entry,), root.pipelines[root.entry])
        input_topic = self._queue_topic(INPUT_QUEUE)
        output_topic = self._topic(self._queue_topic(OUTPUT_QUEUE), "data", type_name(root.Tout))
        self.routes.append(RouteSpec(INPUT_SOURCE, type_name(root.Tin), "/".join(entry_leaf), input_topic))
        self._visit([((), root)])
        self.states.setdefault(
            type_name(root.Tout), StateSpec(type_name(root.Tout), _qualname(root.Tout), output_topic)
        )
        unused = self.config.unused_topic_keys([k for t in self.topics.values() for k in (t.name, t.short)])
        if unused:
            raise ConfigError(
                f"topic overrides for unknown topics: {', '.join(unused)} "
                f"(topics: {', '.join(sorted(t.short for t in self.topics.values()))})"
            )
        stage_names = [s.name for s in self.stages]
        unknown_stages = sorted(set(self.config.stages) - set(stage_names))
        if unknown_stages:
            raise ConfigError(
                f"stage settings for unknown stages: {', '.join(unknown_stages)} (stages: {', '.join(stage_names)})"
            )
        data_partitions = {t.partitions for t in self.topics.values() if t.kind != "dead-letter"}
        (partitions,) = data_partitions  # config.resolve forbids per-topic partitions for these
        return Topology(
            workflow=self.wf,
            app=app_ref,
            prefix=self.config.prefix,
            partitions=partitions,
            input_topic=input_topic,
            output_topic=output_topic,
            stages=tuple(self.stages),
            states=tuple(self.states.values()),
            topics=tuple(sorted(self.topics.values(), key=lambda t: t.name)),
            routes=tuple(self.routes),
            stage_settings=dict(self.config.stages),
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
