"""An app binds a workflow to its artifacts, by stage name, and is referenced as `module:attribute`."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeteer import annotate
from pipeteer.codec import codec_for
from pipeteer.errors import ConfigError, SchemaError, SpecError, UnknownStage
from pipeteer.spec import Pipeline, Stage, Workflow, Wrapped
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

    The review console (`/` of `pipeteer run`) works human stages from their output type (see
    `pipeteer.annotate`); two options, per web stage, help the person there:

    - `previews`: `preview(state, value) -> bytes`, an image the console shows before the person
      submits. `state` is the task's stored state (the stage's input state), `value` what the
      person is about to submit (a value of the stage's inner output type). It raises ValueError,
      with a message the person reads, for a value that cannot work: the console refuses to
      submit it. It runs in a worker thread; keep it well under a second (downscale).
    - `guidelines`: text shown on every task of the stage (what to approve, what to reject, how
      to click). Without it, the first paragraph of the stage's artifact's docstring
      (`guidelines_for`).
    - `reasons`: the reasons a person picks from when rejecting a task (a short list; they may
      write their own too). Each is recorded in the audit line and counted in the metrics
      (`pipeteer_review_decisions_total{reason=...}`).

    >>> app = App(Workflow(int, bool, pipelines={"check": Pipeline(int, bool)}),
    ...           {"check": lambda Qin, Qout: None}, guidelines={"check": "Approve even numbers."})
    >>> app.guidelines_for("check")
    'Approve even numbers.'

    The output types of web stages are checked here too: an annotation of `pipeteer.annotate` on
    a type it does not fit (`Points` on an `int`) is a SpecError.
    """

    workflow: Workflow[Any, Any]
    artifacts: Mapping[str, ArtifactFactory] = field(default_factory=dict)
    ingest: Callable[[Path, bytes], Any] | None = None
    """How `pipeteer push` makes an input item of a file: `ingest(path, content)`. None: the
    default, for an input state of one `bytes` field (or `bytes` itself), see `pipeteer.runtime.batch`."""
    task_age_limits: Mapping[str, float | timedelta] = field(default_factory=dict)
    previews: Mapping[str, Callable[[Any, Any], bytes]] = field(default_factory=dict)
    guidelines: Mapping[str, str] = field(default_factory=dict)
    reasons: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("artifacts", "task_age_limits", "previews", "guidelines", "reasons"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
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
        for k, preview in self.previews.items():
            if (problem := self._not_web("previews", k, "only people see previews")) is not None:
                reasons.append(problem)
            elif not callable(preview):
                reasons.append(f"previews[{k!r}] is {preview!r}, not a callable (state, value) -> image bytes")
        for k, text in self.guidelines.items():
            if (problem := self._not_web("guidelines", k, "only people read guidelines")) is not None:
                reasons.append(problem)
            elif not isinstance(text, str):
                reasons.append(f"guidelines[{k!r}] must be a text, got {text!r}")
        for k, given in self.reasons.items():
            if (problem := self._not_web("reasons", k, "only people reject tasks")) is not None:
                reasons.append(problem)
            elif isinstance(given, str) or not all(isinstance(r, str) and 0 < len(r) <= 80 for r in given):
                reasons.append(f"reasons[{k!r}] must be a list of short texts (1 to 80 characters), got {given!r}")
            elif len(set(given)) != len(given) or not 0 < len(given) <= 9:
                reasons.append(f"reasons[{k!r}] must be 1 to 9 distinct texts (keys 1-9 pick them), got {given!r}")
        object.__setattr__(self, "reasons", MappingProxyType({k: tuple(v) for k, v in self.reasons.items()}))
        for k in leaves:  # annotations that do not fit, before anyone opens the console
            if k in self.artifacts and callable(self.artifacts[k]) and self.is_web(k):
                reasons += annotate.problems(self.output_type(k), f"stage {k!r}")
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

    def _not_web(self, option: str, k: str, why: str) -> str | None:
        leaves = self.stages()
        if k not in leaves:
            return f"{option} names no stage {k!r} (stages: {', '.join(leaves)})"
        if k in self.artifacts and callable(self.artifacts[k]) and not self.is_web(k):
            return f"{option}[{k!r}]: {k!r} is an automatic stage; {why}"
        return None

    def output_type(self, stage: str) -> Any:
        """What a stage's artifact pushes to its `Qout`: the inner pipeline's output of a Wrapped stage."""
        s = self.stages()[stage]
        if isinstance(s, Wrapped):
            return s.inner_output_type()
        return s.Tout if isinstance(s, Pipeline) else Any

    def guidelines_for(self, stage: str) -> str:
        """What a person working `stage` reads on every task: the `guidelines` option, else the first
        paragraph of the docstring of the stage's artifact, else ""."""
        if stage in self.guidelines:
            return self.guidelines[stage]
        doc = inspect.getdoc(self.artifacts[stage]) if stage in self.artifacts else None
        return doc.split("\n\n", 1)[0].strip() if doc else ""

    def task_age_limit(self, stage: str) -> float:
        """Seconds a person's task of `stage` may wait before it is alerted on."""
        limit = self.task_age_limits.get(stage, DEFAULT_TASK_AGE_LIMIT)
        return float(limit.total_seconds() if isinstance(limit, timedelta) else limit)

    def stage_queues(self, queues: WorkflowQueues[Any, Any], stage: str) -> PipelineQueues:
        """What the stage's factory is called with: the `internal` queues of a Wrapped stage."""
        q = queues.stage(stage)
        return q["internal"] if isinstance(self.stages()[stage], Wrapped) else q

    def artifact(self, queues: WorkflowQueues[Any, Any], stage: str) -> Any:
        """Make one stage's artifact (a coroutine or an ASGI app)."""
        if stage not in self.artifacts:
            raise UnknownStage(f"app {self.name!r}", stage, list(self.artifacts))
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
