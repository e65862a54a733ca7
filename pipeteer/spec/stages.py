"""`Pipeline`, `Wrapped` and `Workflow`: what a workflow is, independent of how it runs.

A stage accepts items of one state type and emits items of one or more state types.
A `Workflow` routes every emitted item by its type to the one stage that accepts it,
or to the workflow's output. All of this is checked when the objects are built, so a
workflow that constructs is a workflow that can route.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from pipeteer.errors import SpecError
from pipeteer.types import NoneType, is_union, type_name, union_members

A = TypeVar("A")
B = TypeVar("B")

OUTPUT = "<output>"
"""Route destination meaning: the enclosing workflow's output queue."""

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")


def validate_name(name: object, what: str = "stage name") -> list[str]:
    """Problems with a stage name; names become topics, groups and Kubernetes resources."""
    if not isinstance(name, str):
        return [f"{what} {name!r} is not a string"]
    if not _NAME.match(name):
        return [
            f"{what} {name!r} must be 1-64 characters of lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit"
        ]
    return []


def _is_type(tp: Any) -> bool:
    return isinstance(tp, type) or is_union(tp) or typing.get_origin(tp) is not None


class Stage:
    """Common surface of `Pipeline`, `Wrapped` and `Workflow`."""

    Tin: Any

    def output_types(self) -> tuple[Any, ...] | None:
        """The types this stage may emit, or None when they cannot be known before running."""
        raise NotImplementedError


@dataclass(frozen=True)
class Pipeline(Stage, Generic[A, B]):
    """A stage that reads `Tin` values and writes `Tout` values.

    >>> Pipeline(bytes, bool)
    Pipeline(bytes -> bool)
    """

    Tin: type[A]
    Tout: type[B]

    def __post_init__(self) -> None:
        reasons = [
            f"{what} {tp!r} is not a type"
            for what, tp in (("Tin", self.Tin), ("Tout", self.Tout))
            if not _is_type(tp)
        ]
        if reasons:
            raise SpecError("Pipeline", reasons)

    def output_types(self) -> tuple[Any, ...]:
        return union_members(self.Tout)

    def __repr__(self) -> str:
        return f"Pipeline({type_name(self.Tin)} -> {type_name(self.Tout)})"


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolved forward references: treat as unannotated
        return {}


@dataclass(frozen=True)
class Wrapped(Stage, Generic[A, B]):
    """Adapts a pipeline to a workflow state: `State -pre-> Tin -> pipeline -> Tout -post-> next state`.

    >>> Wrapped(int, Pipeline(str, str), pre=str, post=lambda n, s: s)  # doctest: +ELLIPSIS
    Wrapped(int, Pipeline(str -> str), ...)
    """

    Tin: type[A]
    pipeline: Pipeline[Any, Any]
    pre: Callable[[A], Any] = field(kw_only=True)
    post: Callable[[A, Any], B] = field(kw_only=True)

    def __post_init__(self) -> None:
        reasons: list[str] = []
        if not isinstance(self.Tin, type):
            reasons.append(f"state {self.Tin!r} is not a class")
        if not isinstance(self.pipeline, Pipeline):
            reasons.append(
                f"the wrapped stage must be a Pipeline, got {type(self.pipeline).__name__} "
                "(wrap the stages of a Workflow one by one instead)"
            )
        for name in ("pre", "post"):
            if not callable(getattr(self, name)):
                reasons.append(f"{name} {getattr(self, name)!r} is not callable")
        if callable(self.post):
            try:
                inspect.signature(self.post).bind(None, None)
            except TypeError:
                reasons.append(f"post {_fn_name(self.post)} must accept two arguments (state, output)")
            except ValueError:  # builtins without a signature
                pass
        if reasons:
            raise SpecError(f"Wrapped({type_name(self.Tin)})", reasons)

    def inner_output_type(self) -> Any:
        """What the inner pipeline may push: its `Tout`, widened by what `post` declares it accepts."""
        params = [p for p in inspect.signature(self.post).parameters.values()][:2]
        hints = _hints(self.post)
        declared = hints.get(params[1].name) if len(params) == 2 else None
        if declared is None or declared == self.pipeline.Tout:
            return self.pipeline.Tout
        return self.pipeline.Tout | declared

    def output_types(self) -> tuple[Any, ...] | None:
        ret = _hints(self.post).get("return")
        if ret is None:
            return None
        return union_members(ret)

    def __repr__(self) -> str:
        return f"Wrapped({type_name(self.Tin)}, {self.pipeline!r}, pre={_fn_name(self.pre)}, post={_fn_name(self.post)})"


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", repr(fn))


@dataclass(frozen=True)
class Route:
    """Items of `type` emitted by stage `source` go to stage `target` (or `OUTPUT`)."""

    source: str
    type: Any
    target: str


@dataclass(frozen=True)
class Workflow(Stage, Generic[A, B]):
    """A graph of named stages; items move between them by type.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Raw:
    ...     text: str
    >>> @dataclass
    ... class Done:
    ...     words: int
    >>> def post(raw: Raw, n: int) -> Done:
    ...     return Done(n)
    >>> wf = Workflow(Raw, Done, pipelines={"count": Wrapped(Raw, Pipeline(str, int), pre=lambda r: r.text, post=post)})
    >>> wf.entry
    'count'
    """

    Tin: type[A]
    Tout: type[B]
    pipelines: Mapping[str, Stage] = field(default_factory=dict)
    name: str = "workflow"

    def __post_init__(self) -> None:
        object.__setattr__(self, "pipelines", MappingProxyType(dict(self.pipelines)))
        reasons = validate_name(self.name, "workflow name")
        for what, tp in (("input type", self.Tin), ("output type", self.Tout)):
            if not isinstance(tp, type) or tp is NoneType:
                reasons.append(f"{what} {tp!r} is not a class")
        if not self.pipelines:
            reasons.append("it has no pipelines")
        accepts: dict[Any, list[str]] = {}
        for name, stage in self.pipelines.items():
            reasons += validate_name(name)
            if not isinstance(stage, Stage):
                reasons.append(f"stage {name!r} is {stage!r}, not a Pipeline, Wrapped or Workflow")
                continue
            if not isinstance(stage.Tin, type):
                reasons.append(f"stage {name!r} accepts {type_name(stage.Tin)}, which is not a single class")
                continue
            accepts.setdefault(stage.Tin, []).append(name)
        for tp, names in accepts.items():
            if len(names) > 1:
                reasons.append(
                    f"stages {', '.join(map(repr, names))} all accept {type_name(tp)}: "
                    "each state type must go to exactly one stage"
                )
        if self.Tout in accepts:
            reasons.append(
                f"stage {accepts[self.Tout][0]!r} accepts the output type {type_name(self.Tout)}: "
                "output items would have two destinations"
            )
        if self.pipelines and isinstance(self.Tin, type) and self.Tin not in accepts:
            reasons.append(
                f"no stage accepts the input type {type_name(self.Tin)} "
                f"(accepted: {_names(accepts) or 'nothing'})"
            )
        for name, stage in self.pipelines.items():
            outs = stage.output_types() if isinstance(stage, Stage) else None
            for tp in outs or ():
                if tp not in accepts and tp is not self.Tout:
                    verb = "post returns" if isinstance(stage, Wrapped) else "it outputs"
                    reasons.append(
                        f"stage {name!r}: {verb} {type_name(tp)}, which no stage accepts "
                        f"(accepted: {_names(accepts)}; output: {type_name(self.Tout)})"
                    )
        if reasons:
            raise SpecError(f"workflow {self.name!r}", reasons)
        object.__setattr__(self, "_accepts", {tp: names[0] for tp, names in accepts.items()})

    @property
    def entry(self) -> str:
        """The stage that accepts the workflow's input."""
        return str(self._accepts[self.Tin])  # type: ignore[attr-defined]

    def stage_for(self, tp: type) -> str | None:
        """The stage accepting values of class `tp` (subclasses route to their base), `OUTPUT`, or None."""
        accepts: dict[Any, str] = self._accepts  # type: ignore[attr-defined]
        for klass in getattr(tp, "__mro__", (tp,)):
            if klass in accepts:
                return accepts[klass]
            if klass is self.Tout:
                return OUTPUT
        return None

    def accepted(self) -> str:
        """Spelled-out list of what can be routed, for error messages."""
        return f"accepted: {_names(self._accepts)}; output: {type_name(self.Tout)}"  # type: ignore[attr-defined]

    def output_types(self) -> tuple[Any, ...]:
        return (self.Tout,)

    def routes(self) -> list[Route]:
        """Every declared edge of the graph, in stage order (undeclared `post` results are not listed)."""
        out: list[Route] = [Route("<input>", self.Tin, self.entry)]
        for name, stage in self.pipelines.items():
            for tp in stage.output_types() or ():
                target = self.stage_for(tp)
                if target is not None:
                    out.append(Route(name, tp, target))
        return out

    def state_types(self) -> list[type]:
        """Every type stored in a queue of this workflow (stage inputs, nested ones too, and the output)."""
        seen: dict[Any, None] = {self.Tin: None}
        for _, stage in self.walk():
            seen.setdefault(stage.Tin, None)
            if isinstance(stage, Workflow):
                seen.setdefault(stage.Tout, None)
        seen.setdefault(self.Tout, None)
        return list(seen)

    def walk(self, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Stage]]:
        """Every stage, depth first, with its path of names (nested workflows included)."""
        for name, stage in self.pipelines.items():
            path = (*prefix, name)
            yield path, stage
            if isinstance(stage, Workflow):
                yield from stage.walk(path)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}: {type_name(self.Tin)} -> {type_name(self.Tout)}, stages={list(self.pipelines)})"


def _names(accepts: Mapping[Any, Any]) -> str:
    return ", ".join(type_name(tp) for tp in accepts)
