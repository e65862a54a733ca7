"""An app binds a workflow to its artifacts, by stage name, and is referenced as `module:attribute`."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeteer.codec import codec_for
from pipeteer.errors import ConfigError, SchemaError, SpecError
from pipeteer.spec import Stage, Workflow, Wrapped
from pipeteer.wiring import PipelineQueues, WorkflowQueues

ArtifactFactory = Callable[..., Any]

DEFAULT_TASK_AGE_LIMIT = 24 * 3600.0
"""How long a person's task may wait (seconds) before the compiled alerts say so, unless the app says otherwise."""


@dataclass(frozen=True)
class App:
    """A workflow and, for every stage, the factory that makes its artifact from the stage's queues.

    A factory is `async def stage(Qin, Qout)` for an automatic stage (its coroutine runs as a
    service), or `def stage(Qin, Qout) -> FastAPI` for a web stage (served at `/<stage>/`).
    Nested stages are named by path: `'review/manual'`.

    >>> from pipeteer import Pipeline, Workflow
    >>> async def double(Qin, Qout):
    ...     while True:
    ...         id, n = await Qin.read()
    ...         await Qout.push(id, float(n * 2))
    >>> app = App(Workflow(int, float, pipelines={"double": Pipeline(int, float)}), {"double": double})
    >>> app.is_web("double")
    False

    `task_age_limits` says, per web (human) stage, how long a task may wait for a person before the
    compiled alert `PipeteerHumanTaskTooOld` fires (seconds, or a `timedelta`; default
    `DEFAULT_TASK_AGE_LIMIT`, a day): `App(workflow, artifacts, task_age_limits={"validation": 4 * 3600})`.
    """

    workflow: Workflow[Any, Any]
    artifacts: Mapping[str, ArtifactFactory] = field(default_factory=dict)
    ingest: Callable[[Path, bytes], Any] | None = None
    """How `pipeteer push` makes an input item of a file: `ingest(path, content)`. None: the
    default, for an input state of one `bytes` field (or `bytes` itself), see `pipeteer.runtime.batch`."""
    task_age_limits: Mapping[str, float | timedelta] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "artifacts", MappingProxyType(dict(self.artifacts)))
        object.__setattr__(self, "task_age_limits", MappingProxyType(dict(self.task_age_limits)))
        if not isinstance(self.workflow, Workflow):
            raise SpecError("app", [f"{self.workflow!r} is not a Workflow"])
        leaves = self.stages()
        reasons = [
            f"artifact {k!r} names no stage (stages: {', '.join(leaves)})"
            for k in self.artifacts
            if k not in leaves
        ]
        reasons += [f"stage {s!r} has no artifact" for s in leaves if s not in self.artifacts]
        reasons += [
            f"artifact {k!r} is {f!r}, not a callable" for k, f in self.artifacts.items() if not callable(f)
        ]
        if self.ingest is not None and not callable(self.ingest):
            reasons.append(f"ingest is {self.ingest!r}, not a callable (path, content) -> input")
        for tp in self.workflow.state_types():  # schema problems now, not inside a running stage
            try:
                codec_for(tp)
            except SchemaError as e:
                reasons.append(str(e))
        for k, limit in self.task_age_limits.items():
            seconds = limit.total_seconds() if isinstance(limit, timedelta) else limit
            if k not in leaves:
                reasons.append(f"task_age_limits names no stage {k!r} (stages: {', '.join(leaves)})")
            elif k in self.artifacts and callable(self.artifacts[k]) and not self.is_web(k):
                reasons.append(f"task_age_limits[{k!r}]: {k!r} is an automatic stage; only people's tasks wait")
            elif isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
                reasons.append(f"task_age_limits[{k!r}] must be a positive number of seconds or a timedelta, got {limit!r}")
        if reasons:
            raise SpecError(f"app of workflow {self.workflow.name!r}", reasons)

    @property
    def name(self) -> str:
        return self.workflow.name

    def stages(self) -> dict[str, Stage]:
        """Leaf stages (the ones that run artifacts) by '/'-joined path."""
        return {"/".join(p): s for p, s in self.workflow.walk() if not isinstance(s, Workflow)}

    def is_web(self, stage: str) -> bool:
        """A web (human) stage returns an ASGI app; an automatic one is an `async def`."""
        return not inspect.iscoroutinefunction(self.artifacts[stage])

    def task_age_limit(self, stage: str) -> float:
        """Seconds a person's task of `stage` may wait before it is alerted on."""
        limit = self.task_age_limits.get(stage, DEFAULT_TASK_AGE_LIMIT)
        return float(limit.total_seconds() if isinstance(limit, timedelta) else limit)

    def stage_queues(self, queues: WorkflowQueues, stage: str) -> PipelineQueues:
        """What the stage's factory is called with: the `internal` queues of a Wrapped stage."""
        q = queues.stage(stage)
        return q["internal"] if isinstance(self.stages()[stage], Wrapped) else q

    def artifact(self, queues: WorkflowQueues, stage: str) -> Any:
        """Make one stage's artifact (a coroutine or an ASGI app)."""
        if stage not in self.artifacts:
            raise ConfigError(
                f"app {self.name!r} has no stage {stage!r} (stages: {', '.join(self.artifacts)})"
            )
        return self.artifacts[stage](**self.stage_queues(queues, stage))


def load_app(ref: str | App | Workflow[Any, Any]) -> App | Workflow[Any, Any]:
    """Resolve `'package.module:attribute'` to an `App` (or a bare `Workflow`)."""
    if isinstance(ref, (App, Workflow)):
        return ref
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"app reference {ref!r} must look like 'package.module:attribute'")
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # like uvicorn: apps next to where the command runs
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConfigError(f"app reference {ref!r}: cannot import module {module_name!r} ({e})") from e
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"app reference {ref!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not isinstance(obj, (App, Workflow)):
        raise ConfigError(f"app reference {ref!r} is a {type(obj).__name__}, not a pipeteer App or Workflow")
    return obj


def require_app(ref: str | App | Workflow[Any, Any]) -> App:
    obj = load_app(ref)
    if not isinstance(obj, App):
        raise ConfigError(f"{ref!r} is a bare Workflow: this command needs an App (workflow + artifacts)")
    return obj
