"""The compiled topology: names come from pipeteer.spec.names, routes from the graph, kinds from the app."""

from __future__ import annotations

import dataclasses

import pytest

from pipeteer.compile import TopologyConfig, build_topology
from pipeteer.compile.topology import OUTPUT_TARGET
from pipeteer.errors import ConfigError
from pipeteer.plan import INPUT_SOURCE
from pipeteer.spec import names
from tests.apps.nested import app as nested_app
from tests.unit.compile.sample_app import APP_REF, app, workflow

WF = workflow.name


def test_stages_topics_groups_and_kinds() -> None:
    topo = build_topology(app, app_ref=APP_REF)
    assert topo.stage_names() == list(workflow.pipelines)
    assert {s.name: s.kind for s in topo.stages} == {
        name: ("web" if app.is_web(name) else "coroutine") for name in workflow.pipelines
    }
    for s in topo.stages:
        queue = ("input",) if s.name == workflow.entry else (s.name,)
        assert s.input_topic == names.queue_topic(WF, queue)
        assert s.changelog_topic == names.changelog_topic(WF, (s.name,))
        assert s.dead_letter_topic == names.dead_letter_topic(WF, (s.name,))
        assert s.consumer_group == names.consumer_group(WF, (s.name,))
        assert names.transactional_id(WF, (s.name,), "pod-1") == s.transactional_id_prefix + "pod-1"
        assert s.k8s_name == names.k8s_name(WF, s.name)
        assert s.state == workflow.pipelines[s.name].Tin.__name__
    assert topo.input_topic == names.queue_topic(WF, ("input",))
    assert topo.output_topic == names.queue_topic(WF, ("output",))
    # every stage has a data, changelog and dead-letter topic; plus the output topic and the schemas topic
    assert len(topo.topics) == 3 * len(topo.stages) + 2
    kinds = {t.name: t.kind for t in topo.topics}
    assert kinds[names.schemas_topic(WF)] == "schemas"
    (schemas,) = [t for t in topo.topics if t.kind == "schemas"]
    assert (schemas.partitions, schemas.config["cleanup.policy"], schemas.config["retention.ms"]) == (1, "compact", "-1")
    assert all(kinds[s.changelog_topic] == "changelog" for s in topo.stages)
    assert {t.config["cleanup.policy"] for t in topo.topics if t.kind == "changelog"} == {"compact"}


def test_routes_follow_the_workflow_graph() -> None:
    topo = build_topology(app, app_ref=APP_REF)
    expected = {(INPUT_SOURCE, workflow.Tin.__name__, workflow.entry)}
    for r in workflow.routes()[1:]:
        expected.add((r.source, r.type.__name__, OUTPUT_TARGET if r.target == OUTPUT_TARGET else r.target))
    assert {(r.source, r.state, r.target) for r in topo.routes} == expected
    for r in topo.routes:
        assert r.topic == (
            topo.output_topic if r.target == OUTPUT_TARGET else topo.stage(r.target).input_topic
        )


def test_topology_is_immutable_and_deterministic() -> None:
    topo = build_topology(app, app_ref=APP_REF)
    with pytest.raises(dataclasses.FrozenInstanceError):
        topo.partitions = 3  # type: ignore[misc]
    assert build_topology(app, app_ref=APP_REF).to_dict() == topo.to_dict()


def test_config_reaches_every_topic() -> None:
    config = TopologyConfig.from_mapping(
        {
            "prefix": "acme",
            "workflow": {"partitions": 12},
            "topics": {"stage.validation.dlq": {"partitions": 2}},
        }
    )
    topo = build_topology(app, config, app_ref=APP_REF)
    assert topo.partitions == 12
    assert all(t.name.startswith(f"acme.{WF}.") for t in topo.topics)
    dlq = topo.topic(names.dead_letter_topic(WF, ("validation",), "acme"))
    assert dlq.partitions == 2
    assert {t.partitions for t in topo.topics if t is not dlq and t.kind != "schemas"} == {12}
    assert topo.topic(names.schemas_topic(WF, "acme")).partitions == 1  # (fixed: read whole by every process)


def test_overrides_for_unknown_topics_or_stages_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown topics: validaton"):
        build_topology(app, TopologyConfig.from_mapping({"topics": {"validaton": {"retention.ms": 1}}}))
    with pytest.raises(ConfigError, match="unknown stages: auto"):
        build_topology(app, TopologyConfig.from_mapping({"stages": {"auto": {"replicas": 2}}}))


def test_nested_workflow_stages_and_routes() -> None:
    topo = build_topology(nested_app, app_ref="x:app")
    assert topo.stage_names() == ["triage", "review/first", "review/second"]
    first = topo.stage("review/first")
    # the nested workflow's entry reads the queue of the nested workflow's own path
    assert first.input_topic == names.queue_topic("nested", ("review",))
    assert topo.stage("review/second").input_topic == names.queue_topic("nested", ("review", "second"))
    assert first.changelog_topic == names.changelog_topic("nested", ("review", "first"))
    routes = {(r.source, r.state): (r.target, r.topic) for r in topo.routes}
    assert routes[("triage", "Checked")] == ("review/first", first.input_topic)
    assert routes[("triage", "Done")] == (OUTPUT_TARGET, topo.output_topic)
    # the nested workflow's output is routed by the outer workflow: to the outer output
    assert routes[("review/first", "Done")] == (OUTPUT_TARGET, topo.output_topic)
    assert routes[("review/second", "Done")] == (OUTPUT_TARGET, topo.output_topic)
    assert first.k8s_name == "nested-review-first"
