from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pipeteer import App, Pipeline, SpecError, Workflow, Wrapped
from pipeteer.spec import OUTPUT


@dataclass
class A:
    x: int


@dataclass
class B:
    y: str


@dataclass
class C:
    z: float


@dataclass
class Done:
    ok: bool


def post_ab(a: A, out: str) -> B:
    return B(out)


def post_b(b: B, out: bool) -> Done | A:
    return Done(out) if out else A(0)


def two_stage(**kw: object) -> Workflow[A, Done]:
    return Workflow(
        A,
        Done,
        pipelines={
            "first": Wrapped(A, Pipeline(int, str), pre=lambda a: a.x, post=post_ab),
            "second": Wrapped(B, Pipeline(str, bool), pre=lambda b: b.y, post=post_b),
        },
        **kw,  # type: ignore[arg-type]
    )


def test_valid_workflow_routes_by_type() -> None:
    wf = two_stage(name="demo")
    assert wf.entry == "first"
    assert wf.stage_for(B) == "second"
    assert wf.stage_for(Done) == OUTPUT
    assert wf.stage_for(C) is None
    assert [(r.source, r.type, r.target) for r in wf.routes()] == [
        ("<input>", A, "first"),
        ("first", B, "second"),
        ("second", Done, OUTPUT),
        ("second", A, "first"),
    ]
    assert wf.state_types() == [A, B, Done]


def test_post_returning_unaccepted_type_names_stage_and_types() -> None:
    def post_bad(b: B, out: bool) -> C:
        return C(1.0)

    with pytest.raises(SpecError) as e:
        Workflow(
            A,
            Done,
            pipelines={
                "first": Wrapped(A, Pipeline(int, str), pre=lambda a: a.x, post=post_ab),
                "validation": Wrapped(B, Pipeline(str, bool), pre=lambda b: b.y, post=post_bad),
            },
        )
    assert "stage 'validation': post returns C, which no stage accepts (accepted: A, B; output: Done)" in str(e.value)


def test_every_problem_is_reported_once() -> None:
    with pytest.raises(SpecError) as e:
        Workflow(
            C,
            Done,
            pipelines={
                "Bad Name": Wrapped(A, Pipeline(int, str), pre=lambda a: a.x, post=post_ab),
                "dup": Wrapped(A, Pipeline(int, str), pre=lambda a: a.x, post=post_ab),
            },
        )
    msg = str(e.value)
    assert msg.startswith("invalid workflow 'workflow' for ")
    assert "'Bad Name' must be" in msg
    assert "stages 'Bad Name', 'dup' all accept A" in msg
    assert "no stage accepts the input type C" in msg
    assert len(e.value.reasons) == 5  # name, duplicate, input, and each post returning B (accepted by nobody)


def test_stage_accepting_output_type_is_ambiguous() -> None:
    with pytest.raises(SpecError, match="accepts the output type Done"):
        Workflow(A, Done, pipelines={"a": Pipeline(A, Done), "d": Pipeline(Done, A)})


def test_wrapped_checks_its_parts() -> None:
    with pytest.raises(SpecError) as e:
        Wrapped(A, "nope", pre=3, post=lambda a: a)  # type: ignore[arg-type]
    msg = str(e.value)
    assert "must be a Pipeline" in msg and "pre 3 is not callable" in msg and "two arguments" in msg


def test_pipeline_types_must_be_types() -> None:
    with pytest.raises(SpecError, match="Tin 3 is not a type"):
        Pipeline(3, int)  # type: ignore[arg-type]


def test_wrapped_inner_output_type_widened_by_post_annotation() -> None:
    def post(a: A, out: str | None) -> B:
        return B(out or "")

    w = Wrapped(A, Pipeline(int, str), pre=lambda a: a.x, post=post)
    assert w.inner_output_type() == str | None
    assert w.output_types() == (B,)


def test_unannotated_post_is_checked_at_run_time_only() -> None:
    w = Wrapped(A, Pipeline(int, str), pre=lambda a: a.x, post=lambda a, s: B(s))
    assert w.output_types() is None
    Workflow(A, B, pipelines={"only": w})


def test_nested_workflow_is_a_stage() -> None:
    inner = Workflow(B, Done, pipelines={"check": Pipeline(B, Done)}, name="inner")
    outer = Workflow(A, Done, pipelines={"start": Wrapped(A, Pipeline(int, str), pre=lambda a: a.x, post=post_ab), "review": inner})
    assert [("/".join(p), type(s).__name__) for p, s in outer.walk()] == [
        ("start", "Wrapped"),
        ("review", "Workflow"),
        ("review/check", "Pipeline"),
    ]
    assert outer.stage_for(B) == "review"


def test_specs_are_frozen() -> None:
    wf = two_stage()
    with pytest.raises(AttributeError):
        wf.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        wf.pipelines["x"] = Pipeline(C, Done)  # type: ignore[index]


@dataclass
class Loose:
    anything: Any


def test_app_reports_state_types_that_cannot_be_avro_at_build_time() -> None:
    wf = Workflow(Loose, Done, pipelines={"go": Pipeline(Loose, Done)})

    async def go(Qin: Any, Qout: Any) -> None:
        pass

    with pytest.raises(SpecError) as e:
        App(wf, {"go": go})
    assert "Loose" in str(e.value) and "anything" in str(e.value)
