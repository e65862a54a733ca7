"""`topics plan / apply` against a real Kafka-protocol broker."""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from pipeteer.cli.deploy import register
from pipeteer.compile import Topology, TopologyConfig, build_topology, compile_to
from pipeteer.errors import ConfigError
from pipeteer.queues.kafka.admin import apply_topics, plan_topics
from tests.unit.compile.sample_app import APP_REF, app

SINGLE_BROKER = ["replication.factor=1", "min.insync.replicas=1"]


def topology(prefix: str, *sets: str) -> Topology:
    config = TopologyConfig.from_mapping({"prefix": prefix}, sets=[*SINGLE_BROKER, "partitions=2", *sets])
    return build_topology(app, config, app_ref=APP_REF)


def scope(t: Topology) -> str:
    return f"{t.prefix}.{t.workflow}."


@pytest.fixture
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic prefix per test; its topics are deleted afterwards (the test broker keeps data in memory)."""
    p = "t" + uuid.uuid4().hex[:10]
    yield p
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    mine = [n for n in admin.list_topics(timeout=10).topics if n.startswith(p + ".")]
    if mine:
        for f in admin.delete_topics(mine, operation_timeout=30).values():
            f.result()


def cluster_state(bootstrap: str, names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    out = {}
    for res, f in admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names]).items():
        out[res.name] = (len(md.topics[res.name].partitions), {k: v.value for k, v in f.result().items()})
    return out


def test_apply_creates_everything_then_nothing_to_do(kafka_bootstrap: str, prefix: str) -> None:
    t = topology(prefix)
    changes = plan_topics(t.topics, kafka_bootstrap, scope=scope(t))
    assert [a.kind for a in changes.actions] == ["create"] * len(t.topics)
    assert not changes.refused
    done = apply_topics(changes)
    assert len(done) == len(t.topics)
    state = cluster_state(kafka_bootstrap, [x.name for x in t.topics])
    for topic in t.topics:
        partitions, config = state[topic.name]
        assert partitions == topic.partitions
        assert {k: config[k] for k in topic.config} == dict(topic.config)
    again = plan_topics(t.topics, kafka_bootstrap, scope=scope(t))
    assert again.empty and len(again.up_to_date) == len(t.topics)
    assert "nothing to do" in again.text()
    assert apply_topics(again) == []


def test_config_changes_are_altered_in_place(kafka_bootstrap: str, prefix: str) -> None:
    apply_topics(plan_topics(topology(prefix).topics, kafka_bootstrap))
    changed = topology(prefix, "retention.ms=3600000")
    changes = plan_topics(changed.topics, kafka_bootstrap, scope=scope(changed))
    assert {a.kind for a in changes.actions} == {"alter-config"}
    assert all(dict(a.config) == {"retention.ms": "3600000"} for a in changes.actions)
    # changelog topics keep retention -1 by default too, but --set is the strongest layer: every topic changes
    assert len(changes.actions) == len(changed.topics)
    assert "retention.ms: 604800000 -> 3600000" in changes.text()
    apply_topics(changes)
    assert plan_topics(changed.topics, kafka_bootstrap, scope=scope(changed)).empty
    state = cluster_state(kafka_bootstrap, [changed.output_topic])
    assert state[changed.output_topic][1]["retention.ms"] == "3600000"


def test_adding_partitions_is_refused_while_items_are_pending(kafka_bootstrap: str, prefix: str) -> None:
    t = topology(prefix)
    apply_topics(plan_topics(t.topics, kafka_bootstrap))
    grown = topology(prefix, "partitions=3")
    changes = plan_topics(grown.topics, kafka_bootstrap, scope=scope(grown))
    assert {a.kind for a in changes.actions} == {"add-partitions"} and not changes.refused  # nothing pending yet

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(t.input_topic, key=b"item-1", value=b"x")
    assert producer.flush(30) == 0
    changes = plan_topics(grown.topics, kafka_bootstrap, scope=scope(grown))
    keyed = [a for a in changes.actions if grown.topic(a.topic).kind in ("data", "changelog")]
    assert keyed and all(a.refused and a.flag == "--allow-repartition" for a in keyed)
    assert "auto-correct (1)" in keyed[0].refused  # names the stage with pending items
    assert all(not a.refused for a in changes.actions if grown.topic(a.topic).kind == "dead-letter")
    assert "REFUSED" in changes.text()
    with pytest.raises(ConfigError, match="allow-repartition"):
        apply_topics(changes)
    assert cluster_state(kafka_bootstrap, [t.input_topic])[t.input_topic][0] == 2  # nothing applied

    forced = plan_topics(grown.topics, kafka_bootstrap, scope=scope(grown), allow_repartition=True)
    assert not forced.refused
    apply_topics(forced)
    assert cluster_state(kafka_bootstrap, [t.input_topic])[t.input_topic][0] == 3
    assert plan_topics(grown.topics, kafka_bootstrap, scope=scope(grown)).empty


def test_destructive_changes_need_allow_delete(kafka_bootstrap: str, prefix: str) -> None:
    t = topology(prefix, "partitions=3")
    apply_topics(plan_topics(t.topics, kafka_bootstrap))
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    stray = scope(t) + "stage.removed.pending"
    from confluent_kafka.admin import NewTopic

    for f in admin.create_topics([NewTopic(stray, 1, 1)]).values():
        f.result()
    while stray not in admin.list_topics(timeout=10).topics:  # creation is asynchronous in Kafka
        time.sleep(0.1)
    shrunk = topology(prefix)  # back to 2 partitions
    changes = plan_topics(shrunk.topics, kafka_bootstrap, scope=scope(shrunk))
    kinds = {a.topic: a.kind for a in changes.actions}
    assert kinds[stray] == "delete"
    assert {k for n, k in kinds.items() if n != stray} == {"recreate"}
    assert all(a.refused and a.flag == "--allow-delete" for a in changes.actions)
    assert "Kafka cannot reduce partitions" in changes.text()
    with pytest.raises(ConfigError, match="refusing"):
        apply_topics(changes)

    allowed = plan_topics(shrunk.topics, kafka_bootstrap, scope=scope(shrunk), allow_delete=True)
    apply_topics(allowed)
    names = set(admin.list_topics(timeout=10).topics)
    assert stray not in names
    assert cluster_state(kafka_bootstrap, [shrunk.input_topic])[shrunk.input_topic][0] == 2
    assert plan_topics(shrunk.topics, kafka_bootstrap, scope=scope(shrunk)).empty


def test_replication_factor_mismatch_is_a_warning(kafka_bootstrap: str, prefix: str) -> None:
    apply_topics(plan_topics(topology(prefix).topics, kafka_bootstrap))
    wants_more = topology(prefix, "replication.factor=3")
    changes = plan_topics(wants_more.topics, kafka_bootstrap, scope=scope(wants_more))
    assert changes.empty and len(changes.warnings) == len(wants_more.topics)
    assert "cannot alter it" in changes.warnings[0]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pipeteer")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_commands_plan_and_apply(
    kafka_bootstrap: str, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "topology.yaml"
    config.write_text(
        f"prefix: {prefix}\nprofiles:\n  local: {{replication.factor: 1, min.insync.replicas: 1, partitions: 2}}\n"
    )
    common = ["--bootstrap", kafka_bootstrap, "--config", str(config), "--profile", "local"]
    args = _parse("topics", "plan", APP_REF, *common)
    assert args.func(args) == 0
    assert capsys.readouterr().out.count("+ create") == len(topology(prefix).topics)
    args = _parse("topics", "apply", APP_REF, *common)
    assert args.func(args) == 0
    assert f"applied {len(topology(prefix).topics)} action(s)" in capsys.readouterr().out
    # a compiled topics.yaml works in place of the app
    outdir = tmp_path / "compiled"
    compile_to(app, outdir, TopologyConfig.load(config, profile="local"), app_ref=APP_REF)
    args = _parse(
        "topics", "plan", APP_REF, "--bootstrap", kafka_bootstrap, "--topics", str(outdir / "topics.yaml")
    )
    assert args.func(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    # a refused change: exit code 1, nothing applied
    args = _parse("topics", "apply", APP_REF, *common, "--set", "partitions=1")
    assert args.func(args) == 1
    assert "REFUSED" in capsys.readouterr().out
