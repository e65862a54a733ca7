"""The plan of a workflow: its queues, which stage reads each, where each state type goes, and the
Kafka names derived from them. Built once from a `Workflow`, frozen, no I/O.

Every consumer asks the plan instead of walking the graph itself: the wiring (`make_queues`) makes
one queue per `QueuePlan` and routes by `Plan.destination`; the Kafka backend names a queue's
consumer group and side topics by `Plan.reader`; the compiler (`build_topology`) lists the same
topics and routes (both take each topic's settings from `pipeteer.topics`). So there is one answer
to "which stage reads which queue", and `pipeteer describe --backend URL` says what `run` creates.

>>> from pipeteer.spec import Pipeline, Workflow
>>> wf = Workflow(int, str, pipelines={"square": Pipeline(int, float), "fmt": Pipeline(float, str)}, name="calc")
>>> plan = Plan.of(wf)
>>> [q.path for q in plan.queues], plan.reader(("input",))
([('input',), ('fmt',), ('output',)], ('square',))
>>> plan.destination((), float)
('fmt', ('fmt',))
>>> [(t.name, t.kind) for t in plan.topics("acme")][:2]
[('acme.calc.input', 'data'), ('acme.calc.stage.square.pending', 'changelog')]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

from pipeteer.errors import ConfigError, RoutingError, UnknownStage
from pipeteer.spec import names
from pipeteer.spec.names import DEFAULT_PREFIX
from pipeteer.spec.stages import OUTPUT, Stage, Workflow
from pipeteer.types import type_name

QueuePath = tuple[str, ...]
StagePath = tuple[str, ...]

INPUT: QueuePath = ("input",)
"""The workflow's input queue (read by the entry stage)."""
OUTPUT_QUEUE: QueuePath = ("output",)
"""The workflow's output queue (read by no stage: scripts and `pipeteer pull` take items from it)."""
INPUT_SOURCE = "<input>"
"""The source of the route into the entry stage."""


@dataclass(frozen=True)
class QueuePlan:
    """One queue: its path (the name `make_queue` gets), its value type and the leaf stage reading it."""

    path: QueuePath
    Type: Any
    reader: StagePath | None
    """None for the workflow's output queue."""


@dataclass(frozen=True)
class RoutePlan:
    """Items of `Type` emitted by `source` go to the leaf stage `target` (or `OUTPUT`) through `queue`."""

    source: str
    Type: Any
    target: str
    queue: QueuePath


@dataclass(frozen=True)
class StagePlan:
    """One runnable (leaf) stage: the queue it reads and the routes of its declared output types."""

    path: StagePath
    stage: Stage
    queue: QueuePath
    routes: tuple[RoutePlan, ...]

    @property
    def name(self) -> str:
        """The stage's name as commands and apps spell it: `'review/manual'` for a nested one."""
        return "/".join(self.path)


@dataclass(frozen=True)
class TopicPlan:
    """One Kafka topic of the workflow: a queue's items, a stage's pending table or its dead letters."""

    name: str
    kind: str
    """`data`, `changelog`, `dead-letter` or `schemas` (see `pipeteer.topics.TOPIC_KINDS`)."""
    Type: Any
    """The type of the values (None for dead letters, which carry any state with its error)."""
    stage: StagePath | None
    """The stage reading a data topic, or owning a changelog / dead-letter topic (None: the output)."""


class TopicNames:
    """Every Kafka name of one workflow, derived by `pipeteer.spec.names` (never invented elsewhere).

    >>> TopicNames("wf", "acme").group(("review", "manual"))
    'acme.wf.stage.review.manual'
    """

    def __init__(self, workflow: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.workflow, self.prefix = workflow, prefix

    def queue(self, path: Sequence[str]) -> str:
        return names.queue_topic(self.workflow, path, self.prefix)

    def changelog(self, stage: Sequence[str]) -> str:
        return names.changelog_topic(self.workflow, stage, self.prefix)

    def dead_letters(self, stage: Sequence[str]) -> str:
        return names.dead_letter_topic(self.workflow, stage, self.prefix)

    def schemas(self) -> str:
        return names.schemas_topic(self.workflow, self.prefix)

    def group(self, stage: Sequence[str]) -> str:
        return names.consumer_group(self.workflow, stage, self.prefix)

    def transactional_id(self, stage: Sequence[str], instance: str) -> str:
        return names.transactional_id(self.workflow, stage, instance, self.prefix)


@dataclass(frozen=True)
class Plan:
    """A workflow's queues, stages and routes; build with `Plan.of(workflow)`."""

    workflow: Workflow[Any, Any]
    queues: tuple[QueuePlan, ...]
    """The input queue first, then the queue of every stage that is no workflow's entry, then the output."""
    stages: tuple[StagePlan, ...]
    """Every leaf stage, depth first, in the order the workflows list them."""
    routes: tuple[RoutePlan, ...]
    """The route into the entry stage, then each stage's declared routes."""
    queue_of: Mapping[StagePath, QueuePath]
    """The queue every stage reads, nested workflows included (a workflow's entry reads its workflow's queue)."""

    @classmethod
    def of(cls, workflow: Workflow[Any, Any]) -> Plan:
        if not isinstance(workflow, Workflow):
            raise ConfigError(f"a plan is made of a Workflow, not {workflow!r}")
        return _build(workflow)

    def reader(self, queue: Sequence[str]) -> StagePath | None:
        """The leaf stage reading the queue at `queue` (None for the output queue).

        Unknown paths raise `ConfigError`, naming the queues there are."""
        found = self._queues.get(tuple(queue))
        if found is None:
            raise ConfigError(
                f"workflow {self.workflow.name!r} has no queue {'/'.join(queue)!r} "
                f"(queues: {', '.join('/'.join(q.path) for q in self.queues)})"
            )
        return found.reader

    def readers(self) -> dict[QueuePath, StagePath]:
        """Queue path -> the leaf stage reading it, for every queue a stage reads."""
        return {q.path: q.reader for q in self.queues if q.reader is not None}

    def stage(self, name: str | Sequence[str]) -> StagePlan:
        """A leaf stage by name (`'review/manual'`) or path; otherwise `UnknownStage` (a `ConfigError`)
        naming the stages there are."""
        path = tuple(name.split("/")) if isinstance(name, str) else tuple(name)
        for s in self.stages:
            if s.path == path:
                return s
        raise UnknownStage(f"workflow {self.workflow.name!r}", "/".join(path), [s.name for s in self.stages])

    def destination(
        self, workflow_path: Sequence[str], tp: Any, *, source: str | None = None, id: str | None = None
    ) -> tuple[str, QueuePath]:
        """Where an item of class `tp` emitted inside the (sub-)workflow at `workflow_path` goes:
        (the leaf stage reading it, or `OUTPUT`; the queue). Raises `RoutingError` if nothing accepts
        it, naming the `source` stage and the item's `id` when given."""
        chain = self._chain(tuple(workflow_path))
        while True:
            path, wf = chain[-1]
            target = wf.stage_for(tp)
            if target is None:
                subject = f"stage {source!r}: item {id!r} became a" if source is not None else "an item of"
                raise RoutingError(
                    f"{subject} {type_name(tp)}, which no stage of workflow {wf.name!r} accepts ({wf.accepted()})"
                )
            if target != OUTPUT:
                stage_path = (*path, target)
                return "/".join(self._entry_leaf(stage_path)), self.queue_of[stage_path]
            if len(chain) == 1:
                return OUTPUT, OUTPUT_QUEUE
            chain = chain[:-1]

    def topics(self, prefix: str = DEFAULT_PREFIX) -> tuple[TopicPlan, ...]:
        """Every topic of the workflow on Kafka, sorted by name."""
        derived = self.names(prefix)
        out = [TopicPlan(derived.queue(q.path), "data", q.Type, q.reader) for q in self.queues]
        for s in self.stages:
            out.append(TopicPlan(derived.changelog(s.path), "changelog", s.stage.Tin, s.path))
            out.append(TopicPlan(derived.dead_letters(s.path), "dead-letter", None, s.path))
        out.append(TopicPlan(derived.schemas(), "schemas", None, None))
        return tuple(sorted(out, key=lambda t: t.name))

    def names(self, prefix: str = DEFAULT_PREFIX) -> TopicNames:
        return TopicNames(self.workflow.name, prefix)

    @cached_property
    def _queues(self) -> dict[QueuePath, QueuePlan]:
        return {q.path: q for q in self.queues}

    def _chain(self, workflow_path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Workflow[Any, Any]]]:
        chain: list[tuple[tuple[str, ...], Workflow[Any, Any]]] = [((), self.workflow)]
        for i, name in enumerate(workflow_path):
            inner = chain[-1][1].pipelines.get(name)
            if not isinstance(inner, Workflow):
                raise ConfigError(
                    f"workflow {self.workflow.name!r} has no sub-workflow {'/'.join(workflow_path[: i + 1])!r}"
                )
            chain.append((workflow_path[: i + 1], inner))
        return chain

    def _entry_leaf(self, path: StagePath) -> StagePath:
        """The leaf stage that first receives items sent to the stage at `path` (itself, unless a workflow)."""
        stage = self._chain(path[:-1])[-1][1].pipelines[path[-1]]
        while isinstance(stage, Workflow):
            path = (*path, stage.entry)
            stage = stage.pipelines[stage.entry]
        return path


def _build(root: Workflow[Any, Any]) -> Plan:
    queue_of: dict[StagePath, QueuePath] = {}
    queues: list[QueuePlan] = [QueuePlan(INPUT, root.Tin, None)]
    leaves: list[tuple[StagePath, Stage]] = []

    def assign(wf: Workflow[Any, Any], prefix: StagePath, own: QueuePath) -> None:
        # The entry of a (sub-)workflow reads that workflow's own queue; every other stage reads a
        # queue named by its path (the names `make_queue` gets, and so the tables and topics).
        for name, stage in wf.pipelines.items():
            path = (*prefix, name)
            queue = own if name == wf.entry else path
            queue_of[path] = queue
            if queue == path:
                if path in (INPUT, OUTPUT_QUEUE):
                    raise ConfigError(
                        f"workflow {root.name!r}: stage {name!r} would read the queue named {name!r}, which is the "
                        f"workflow's {name} queue: rename the stage"
                    )
                queues.append(QueuePlan(path, stage.Tin, None))
            if isinstance(stage, Workflow):
                assign(stage, path, queue)
            else:
                leaves.append((path, stage))

    assign(root, (), INPUT)
    queues.append(QueuePlan(OUTPUT_QUEUE, root.Tout, None))
    readers = {queue_of[path]: path for path, _ in leaves}
    queues = [QueuePlan(q.path, q.Type, readers.get(q.path)) for q in queues]
    draft = Plan(root, tuple(queues), (), (), MappingProxyType(queue_of))
    entry = draft._entry_leaf((root.entry,))
    routes = [RoutePlan(INPUT_SOURCE, root.Tin, "/".join(entry), INPUT)]
    stages = []
    for path, stage in leaves:
        own = tuple(
            RoutePlan("/".join(path), tp, *draft.destination(path[:-1], tp))
            for tp in stage.output_types() or ()
        )
        routes += own
        stages.append(StagePlan(path, stage, queue_of[path], own))
    return Plan(root, tuple(queues), tuple(stages), tuple(routes), MappingProxyType(queue_of))

