"""From a workflow to its queues: `make_queues(Qin, Qout, workflow, make_queue)`.

Every stage gets one queue holding the items waiting in it (the entry stage reads
the workflow's `Qin`), as the workflow's plan (`pipeteer.plan.Plan`) says: the same
answer the Kafka backend and the compiler get. A stage's artifact sees two ends:

- `Qin`: a read-only view of its queue (mapped by `pre` for a `Wrapped` stage);
- `Qout`: a write end. `push(id, out)` reads the item's state, applies `post`,
  routes the result by its type to the next stage's queue (or the workflow's
  output) and removes the item from this stage, as ONE atomic `move` of the
  backend. The seed's trailing `await Qin.pop(id)` is then a no-op.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from pipeteer.codec.codec import refusal
from pipeteer.errors import ConfigError, NotABackendQueue, SpecError, UnknownStage, ValueTypeError
from pipeteer.plan import INPUT, INPUT_SOURCE, OUTPUT_QUEUE, Plan
from pipeteer.queues.base import Backend, BaseQueue, Queue, ReadQueue, WriteQueue
from pipeteer.spec import OUTPUT, Pipeline, Stage, Workflow, Wrapped
from pipeteer.types import checker


class MakeQueue(Protocol):
    def __call__(self, Type: Any, path: Sequence[str], /) -> Queue[Any]: ...


class StageHooks(Protocol):
    """What the runtime observes of a stage's progress (metrics); optional."""

    def read(self, stage: str, id: str) -> None: ...

    def completing(self, stage: str, id: str) -> None:
        """Before an item of `stage` moves on: raise to refuse the move (a person's task locked by another)."""

    def moved(self, stage: str, id: str, target: str) -> None: ...


class PipelineQueues(dict[str, Any]):
    """The queues of one stage: `{'Qin': ..., 'Qout': ...}`, plus `'internal'` for a `Wrapped` stage.

    It is a dict so that `pipeline(**queues['validation']['internal'])` passes `Qin=` and `Qout=`.
    """

    @property
    def Qin(self) -> Any:
        return self["Qin"]

    @property
    def Qout(self) -> Any:
        return self["Qout"]


In = TypeVar("In", bound=Queue[Any])
Out = TypeVar("Out", bound=WriteQueue[Any])


class WorkflowQueues(dict[str, Any], Generic[In, Out]):
    """The queues of a workflow: stage name -> its `PipelineQueues` (or nested `WorkflowQueues`).

    `.Qin` and `.Qout` are the workflow's own input and output queues, so a script can
    `await queues.Qin.push(id, Input(...))` and `await queues.Qout.items()`. Made by a backend
    (`pipeteer.connect`), they are that backend's queues (`BackendQueues`), and `.backend` is it.
    """

    def __init__(self, stages: dict[str, Any], *, Qin: In, Qout: Out, workflow: Workflow[Any, Any],
                 backend: Backend | None = None):
        super().__init__(stages)
        self.Qin = Qin
        self.Qout = Qout
        self.workflow = workflow
        self._backend = backend

    @property
    def backend(self) -> Backend:
        """The backend that made the queues (`pipeteer.connect`, or `make_queues` given a backend's
        `make_queue`); `ConfigError` when another `make_queue` made them."""
        if self._backend is None:
            raise ConfigError(
                f"the queues of workflow {self.workflow.name!r} were made by no backend (make them with "
                "pipeteer.connect, or make_queues with a backend's make_queue)"
            )
        return self._backend

    def stage(self, path: str | Sequence[str]) -> PipelineQueues:
        """The queues of a stage by name or path (`'review/manual'` or `('review', 'manual')`);
        `UnknownStage` (a `KeyError` too) naming the stages there are otherwise."""
        parts = path.split("/") if isinstance(path, str) else list(path)
        node: Any = self
        for i, part in enumerate(parts):
            if not isinstance(node, WorkflowQueues) or part not in node:
                known = [name for name, _ in iter_stages(self)]
                raise UnknownStage(f"workflow {self.workflow.name!r}", "/".join(parts[: i + 1]), known)
            node = node[part]
        found: PipelineQueues = node
        return found

    def stage_queue(self, path: str | Sequence[str]) -> BaseQueue[Any]:
        """The backend queue holding the items waiting in a stage (under its `Qin` view, if any)."""
        q = self.stage(path)["Qin"]
        raw = q.queue if isinstance(q, StageInput) else q
        if not isinstance(raw, BaseQueue):
            raise NotABackendQueue(
                f"stage {path!r}: its queue {raw.describe()} is not a backend queue (make the workflow's "
                "queues with pipeteer.connect, or make_queues with a backend's make_queue)"
            )
        return raw


class _StageMemory:
    """What one stage remembers between its `Qin` and its `Qout` (bounded, in this process only).

    - `completed`: ids it just moved on, so the seed's `pop` after `push` is a no-op, not an error;
    - `states`: the state of each item `read()` handed out, so `push` need not read it back.
      (If the item were replaced under the same id meanwhile, reading it back would not help:
      `post` would then pair the new state with an output computed from the old one.)
    """

    def __init__(self, size: int = 4096) -> None:
        self.completed: OrderedDict[str, None] = OrderedDict()
        self.states: OrderedDict[str, Any] = OrderedDict()
        self._size = size

    def remember(self, id: str, state: Any) -> None:
        self.states[id] = state
        if len(self.states) > self._size:
            self.states.popitem(last=False)

    def complete(self, id: str) -> None:
        self.states.pop(id, None)
        self.completed[id] = None
        if len(self.completed) > self._size:
            self.completed.popitem(last=False)

    def was_completed(self, id: str) -> bool:
        """True once per completed id (a second `pop` of it is an error again)."""
        return self.completed.pop(id, _MISSING) is not _MISSING


_MISSING: Any = object()


class Router(WriteQueue[Any]):
    """The write end of a (sub-)workflow: sends each value to the stage accepting its type, or to the
    workflow's output, as the plan says (`Plan.destination`)."""

    def __init__(
        self,
        plan: Plan,
        path: tuple[str, ...],
        queues: dict[tuple[str, ...], Queue[Any]],
        output: WriteQueue[Any],
    ):
        self.plan, self.path, self.queues, self.output = plan, path, queues, output
        self.workflow = plan.workflow
        self._routes: dict[type, tuple[str, WriteQueue[Any]]] = {}  # by the value's class: routing is by class

    def resolve(self, value: Any, *, source: str, id: str) -> tuple[str, WriteQueue[Any]]:
        """(name of the destination, the queue) for a value; raises `RoutingError` naming what is accepted."""
        route = self._routes.get(type(value))
        if route is None:
            target, queue = self.plan.destination(self.path, type(value), source=source, id=id)
            route = self._routes[type(value)] = (target, self.output if target == OUTPUT else self.queues[queue])
        return route

    async def push(self, id: str, value: Any) -> None:
        _, q = self.resolve(value, source=INPUT_SOURCE, id=id)
        await q.push(id, value)


class StageInput(ReadQueue[Any]):
    """A stage's `Qin`: a read-only view of its queue, mapped by `pre`."""

    def __init__(
        self,
        queue: Queue[Any],
        pre: Callable[[Any], Any] | None,
        memory: _StageMemory,
        stage: str,
        hooks: list[StageHooks],
    ):
        self.queue, self.pre, self.memory, self.stage, self.hooks = queue, pre, memory, stage, hooks

    def _f(self, v: Any) -> Any:
        return v if self.pre is None else self.pre(v)

    async def read(self, id: str | None = None) -> Any:
        # The stage loop's hot path, in one coroutine (the base class's `read` dispatches to two).
        if id is not None:
            return await self._read(id)
        id, v = await self.queue.read()
        self.memory.remember(id, v)
        for hook in self.hooks:
            hook.read(self.stage, id)
        return id, self._f(v)

    async def _read_next(self) -> tuple[str, Any]:
        item: tuple[str, Any] = await self.read()
        return item

    async def _read(self, id: str) -> Any:
        value = self._f(await self.queue.read(id))
        for hook in self.hooks:  # a page showing the item to a person: its processing time starts here
            hook.read(self.stage, id)
        return value

    async def has(self, id: str) -> bool:
        return await self.queue.has(id)

    async def pop(self, id: str) -> None:
        if self.memory.was_completed(id):
            return
        await self.queue.pop(id)
        self.memory.states.pop(id, None)  # a push of it now is a new item

    async def _iter_items(self) -> AsyncIterator[tuple[str, Any]]:
        async for id, v in self.queue.items():
            yield id, self._f(v)

    def _iter_keys(self) -> AsyncIterator[str]:
        return self.queue.keys().__aiter__()

    async def wait_change(self) -> None:
        await self.queue.wait_change()

    def describe(self) -> str:
        return f"stage {self.stage!r} input ({self.queue.describe()})"


class StageOutput(WriteQueue[Any]):
    """A stage's `Qout`: `push(id, out)` moves the item on to the next stage in one atomic step."""

    def __init__(
        self,
        stage: str,
        queue: Queue[Any],
        router: Router,
        expected: Any,
        post: Callable[[Any, Any], Any] | None,
        memory: _StageMemory,
        hooks: list[StageHooks],
    ):
        self.stage, self.queue, self.router, self.expected = stage, queue, router, expected
        self.post, self.memory, self.hooks = post, memory, hooks
        self._conforms = checker(expected)
        # By the class of the value pushed (routing is by class): (destination name, queue, whether
        # one `move` does it because both ends are backend queues, not views).
        self._routes: dict[type, tuple[str, WriteQueue[Any], bool]] = {}

    async def push(self, id: str, value: Any) -> None:
        # The stage loop's hot path: one coroutine, the per-class answers cached.
        if not self._conforms(value):
            raise ValueTypeError(f"stage {self.stage!r}: item {id!r} output is {refusal(self.expected, value)}")
        memory, post = self.memory, self.post
        if post is not None:
            state = memory.states.get(id, _MISSING)
            if state is _MISSING:
                state = await self.queue.read(id)  # InexistentItem if it is no longer in this stage
            value = post(state, value)
        route = self._routes.get(value.__class__)
        if route is None:
            route = self._route(id, value)
        target, dst, can_move = route
        for hook in self.hooks:
            hook.completing(self.stage, id)
        # An item this stage read and that is gone was completed elsewhere (another process of the
        # stage): the move below raises InexistentItem rather than writing a second output.
        if post is None and id not in memory.states and not await self.queue.has(id):
            await dst.push(id, value)  # a new item, not one read from this stage
        elif can_move:
            await self.queue.move(id, dst, value)  # type: ignore[attr-defined]  # a BaseQueue (checked in _route)
        else:  # a view on either side: push, then pop (idempotent by id on re-run)
            await dst.push(id, value)
            await self.queue.pop(id)
        memory.complete(id)
        for hook in self.hooks:
            hook.moved(self.stage, id, target)

    def _route(self, id: str, value: Any) -> tuple[str, WriteQueue[Any], bool]:
        target, dst = self.router.resolve(value, source=self.stage, id=id)
        route = self._routes[value.__class__] = (
            target, dst, isinstance(self.queue, BaseQueue) and isinstance(dst, BaseQueue)
        )
        return route


def make_queues(
    Qin: Queue[Any],
    Qout: WriteQueue[Any],
    pipeline: Stage,
    make_queue: MakeQueue | Backend,
    *,
    path: Sequence[str] = (),
    hooks: Sequence[StageHooks] = (),
    plan: Plan | None = None,
) -> Any:
    """Wire a pipeline's queues: a `WorkflowQueues` for a `Workflow`, a `PipelineQueues` otherwise.

    `make_queue(Type, path)` is called once per queue of the workflow's plan (`Plan.queues`) but its
    input and output, with the queue's path of names. `plan` is `Plan.of(pipeline)` when not given.

    When `make_queue` is a backend, or a backend's own `make_queue` (as the project page passes it),
    the backend is bound to the plan first (`Backend.bind`), as `pipeteer.connect` binds it: so both
    read with the same consumer groups on Kafka. A backend bound to another workflow refuses.
    """
    make = make_queue.make_queue if isinstance(make_queue, Backend) else make_queue
    backend = _backend_of(make)
    if isinstance(pipeline, Workflow):
        plan = plan if plan is not None else Plan.of(pipeline)
        if plan.workflow is not pipeline:
            raise SpecError("make_queues", [f"the plan is of workflow {plan.workflow.name!r}, not {pipeline!r}"])
        if backend is not None:
            backend.bind(plan)
        queues: dict[tuple[str, ...], Queue[Any]] = {
            q.path: make(q.Type, [*path, *q.path]) for q in plan.queues if q.path not in (INPUT, OUTPUT_QUEUE)
        }
        queues[INPUT] = Qin
        return _workflow_queues(plan, (), pipeline, Qin, Qout, queues, tuple(path), list(hooks), backend)
    if isinstance(pipeline, (Pipeline, Wrapped)):
        return PipelineQueues(Qin=Qin, Qout=Qout)
    raise SpecError("pipeline", [f"{pipeline!r} is not a Pipeline, Wrapped or Workflow"])


def _backend_of(make_queue: MakeQueue) -> Backend | None:
    """The backend whose own `make_queue` method `make_queue` is; None for another callable."""
    owner = make_queue.__self__ if inspect.ismethod(make_queue) else None
    return owner if isinstance(owner, Backend) else None


def _workflow_queues(
    plan: Plan,
    wf_path: tuple[str, ...],
    wf: Workflow[Any, Any],
    Qin: Queue[Any],
    Qout: WriteQueue[Any],
    queues: dict[tuple[str, ...], Queue[Any]],
    prefix: tuple[str, ...],
    hooks: list[StageHooks],
    backend: Backend | None,
) -> WorkflowQueues[Queue[Any], WriteQueue[Any]]:
    """The queues of the (sub-)workflow at `wf_path`: each stage's, from the queue the plan says it reads."""
    router = Router(plan, wf_path, queues, Qout)
    stages: dict[str, Any] = {}
    for name, stage in wf.pipelines.items():
        path = (*wf_path, name)
        q = queues[plan.queue_of[path]]
        stage_name = "/".join((*prefix, *path))
        memory = _StageMemory()
        if isinstance(stage, Workflow):
            stages[name] = _workflow_queues(plan, path, stage, q, router, queues, prefix, hooks, backend)
        elif isinstance(stage, Wrapped):
            inner = PipelineQueues(
                Qin=StageInput(q, stage.pre, memory, stage_name, hooks),
                Qout=StageOutput(stage_name, q, router, stage.inner_output_type(), stage.post, memory, hooks),
            )
            stages[name] = PipelineQueues(Qin=q, Qout=router, internal=inner)
        else:
            assert isinstance(stage, Pipeline)  # guaranteed by Workflow validation
            stages[name] = PipelineQueues(
                Qin=StageInput(q, None, memory, stage_name, hooks),
                Qout=StageOutput(stage_name, q, router, stage.Tout, None, memory, hooks),
            )
    return WorkflowQueues(stages, Qin=Qin, Qout=Qout, workflow=wf, backend=backend)


BackendQueues = WorkflowQueues[BaseQueue[Any], BaseQueue[Any]]
"""A workflow's queues made by a backend (`pipeteer.connect`): their ends are the backend's own queues,
with all a `BaseQueue` offers (`pending`, `claim`, `read_stored`, ...)."""


class QueueKV:
    """Constructors of the built-in key-value queues, as the project page calls them.

    >>> import tempfile, os
    >>> q = QueueKV.sqlite(bytes, path=os.path.join(tempfile.mkdtemp(), "queues.db"), table="input")
    """

    @staticmethod
    def sqlite(Type: Any, *, path: str, table: str) -> Queue[Any]:
        from pipeteer.queues.sqlite import SqliteQueue

        return SqliteQueue(Type, path=path, table=table)

    @staticmethod
    def memory(Type: Any, name: str = "memory") -> Queue[Any]:
        from pipeteer.queues.memory import MemoryQueue

        return MemoryQueue(Type, name)


def iter_stages(queues: WorkflowQueues[Any, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, PipelineQueues]]:
    """Every leaf stage's queues with its '/'-joined path, depth first."""
    out: list[tuple[str, PipelineQueues]] = []
    for name, q in queues.items():
        if isinstance(q, WorkflowQueues):
            out += iter_stages(q, (*prefix, name))
        else:
            out.append(("/".join((*prefix, name)), q))
    return out
