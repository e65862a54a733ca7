"""A backend is bound to its workflow's plan by every path that makes the workflow's queues: the
project page's (`make_queues(Qin, Qout, workflow, backend.make_queue)`), `pipeteer.connect` and
`backend_from_url(url, plan=...)`; a Kafka backend reads nothing unbound (issue 23, item 1)."""

from __future__ import annotations

import pytest

from pipeteer import ConfigError, Pipeline, Workflow, make_queues
from pipeteer.plan import INPUT, OUTPUT_QUEUE, Plan
from pipeteer.queues.backends import backend_from_url
from pipeteer.queues.kafka import KafkaBackend
from pipeteer.runtime.connect import connect

URL = "kafka://localhost:9092?prefix=t"


def calc(name: str = "calc") -> Workflow[int, str]:
    return Workflow(int, str, pipelines={"square": Pipeline(int, float), "fmt": Pipeline(float, str)}, name=name)


def groups(backend: KafkaBackend, plan: Plan) -> dict[tuple[str, ...], tuple[str, str]]:
    """Each queue's consumer group and changelog topic, as the backend names them."""
    out = {}
    for q in plan.queues:
        stage = backend.reader_of(q.path)
        out[q.path] = (backend.names.group(stage), backend.names.changelog(stage))
    return out


def test_the_seed_path_binds_a_kafka_backend_as_connect_does() -> None:
    wf = calc()
    seed = KafkaBackend.from_url(URL, workflow_name=wf.name, env={})
    Qin, Qout = seed.make_queue(wf.Tin, INPUT), seed.make_queue(wf.Tout, OUTPUT_QUEUE)  # before make_queues binds
    queues = make_queues(Qin, Qout, wf, seed.make_queue)
    assert seed.plan == Plan.of(wf) and queues.backend is seed

    bound = backend_from_url(URL, env={}, plan=Plan.of(wf))
    assert isinstance(bound, KafkaBackend) and bound.plan == Plan.of(wf)
    assert groups(seed, Plan.of(wf)) == groups(bound, Plan.of(wf))
    assert groups(seed, Plan.of(wf))[INPUT] == ("t.calc.stage.square", "t.calc.stage.square.pending")


def test_an_unbound_kafka_backend_makes_only_the_workflow_ends_and_reads_nothing() -> None:
    backend = KafkaBackend.from_url(URL, workflow_name="calc", env={})
    assert backend.make_queue(int, INPUT).topic == "t.calc.input"
    with pytest.raises(ConfigError, match=r"cannot make queue 'fmt': bind the workflow's plan first"):
        backend.make_queue(float, ["fmt"])
    with pytest.raises(ConfigError, match=r"cannot read queue 'input': bind the workflow's plan first"):
        backend.reader_of(INPUT)
    standalone = KafkaBackend.from_url(URL, workflow_name="tool", env={}, standalone=True)
    assert standalone.reader_of(standalone.make_queue(int, ["jobs"]).path) == ("jobs",)
    with pytest.raises(ConfigError, match="standalone"):
        standalone.bind(Plan.of(calc("tool")))


@pytest.mark.parametrize("url", ["memory://", URL])
def test_a_backend_bound_to_another_workflow_refuses(url: str) -> None:
    backend = backend_from_url(url, env={}, plan=Plan.of(calc()))
    make_queues(backend.make_queue(int, INPUT), backend.make_queue(str, OUTPUT_QUEUE), calc(), backend)  # equal plan
    for other in calc("other"), Workflow(int, str, pipelines={"fmt": Pipeline(int, str)}, name="calc"):
        with pytest.raises(ConfigError) as e:
            make_queues(backend.make_queue(int, INPUT), backend.make_queue(str, OUTPUT_QUEUE), other, backend.make_queue)
        assert "workflow 'calc'" in str(e.value) and f"workflow {other.name!r}" in str(e.value)


def test_connect_and_make_queues_give_the_memory_backend_its_plan() -> None:
    wf = calc()
    queues = connect(wf, "memory://", env={})
    assert queues.backend.plan == Plan.of(wf)
    backend = backend_from_url("memory://", workflow_name=wf.name, env={})
    make_queues(backend.make_queue(int, INPUT), backend.make_queue(str, OUTPUT_QUEUE), wf, backend.make_queue)
    assert backend.plan == Plan.of(wf)
