"""Topic settings: the four layers of precedence and the settings that cannot work."""

from __future__ import annotations

import pytest

from pipeteer.compile.config import LIBRARY_DEFAULTS, TopologyConfig
from pipeteer.errors import ConfigError

TOPIC = "pipeteer.wf.validation"
SHORT = "validation"


def test_library_defaults_per_kind() -> None:
    config = TopologyConfig()
    for kind in ("data", "changelog", "dead-letter"):
        assert config.resolve(kind, TOPIC, SHORT) == dict(LIBRARY_DEFAULTS[kind])
    assert LIBRARY_DEFAULTS["changelog"]["cleanup.policy"] == "compact"
    assert LIBRARY_DEFAULTS["data"]["cleanup.policy"] == "delete"


def test_each_layer_overrides_the_previous_one() -> None:
    raw = {
        "workflow": {"retention.ms": 1000, "max.message.bytes": 2000, "min.insync.replicas": 1},
        "topics": {SHORT: {"retention.ms": 3000, "max.message.bytes": 4000}},
        "profiles": {"small": {"retention.ms": 5000, "replication.factor": 1}},
    }
    config = TopologyConfig.from_mapping(raw, profile="small", sets=["max.message.bytes=6000"])
    got = config.resolve("data", TOPIC, SHORT)
    assert got["min.insync.replicas"] == 1  # workflow over library default
    assert got["retention.ms"] == 5000  # profile over per-topic over workflow
    assert got["max.message.bytes"] == 6000  # --set over per-topic
    assert got["replication.factor"] == 1
    assert got["cleanup.policy"] == "delete"  # untouched library default
    # per-topic applies to its own topic only; the full name works as a key too
    other = config.resolve("data", "pipeteer.wf.output", "output")
    assert other["retention.ms"] == 5000 and other["max.message.bytes"] == 6000
    by_full = TopologyConfig.from_mapping({"topics": {TOPIC: {"retention.ms": 7}}})
    assert by_full.resolve("data", TOPIC, SHORT)["retention.ms"] == 7


def test_per_topic_partitions_only_for_dead_letters() -> None:
    config = TopologyConfig.from_mapping(
        {"topics": {SHORT: {"partitions": 3}, "stage.x.dlq": {"partitions": 2}}}
    )
    with pytest.raises(ConfigError, match="share one partition count"):
        config.resolve("data", TOPIC, SHORT)
    assert config.resolve("dead-letter", "pipeteer.wf.stage.x.dlq", "stage.x.dlq")["partitions"] == 2
    assert (
        TopologyConfig.from_mapping({"workflow": {"partitions": 12}}).resolve("changelog", TOPIC, SHORT)[
            "partitions"
        ]
        == 12
    )


@pytest.mark.parametrize(
    ("raw", "sets", "message"),
    [
        ({"workflow": {"retention": 1}}, [], "unknown topic setting 'retention'"),
        ({"workflow": {"partitions": 0}}, [], "partitions must be >= 1"),
        ({"workflow": {"cleanup.policy": "forever"}}, [], "cleanup.policy 'forever'"),
        ({"workflow": {"retention.ms": "a week"}}, [], "retention.ms must be an integer"),
        ({"colours": {}}, [], "unknown section"),
        ({}, ["replication.factor"], "expected KEY=VALUE"),
        ({"stages": {"a": {"cpu": 1}}}, [], "unknown setting"),
    ],
)
def test_invalid_settings_name_the_fix(raw: dict[str, object], sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TopologyConfig.from_mapping(raw, sets=sets)


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no profile 'prod' \(profiles: local, production, small\)"):
        TopologyConfig.from_mapping({"profiles": {"small": {}}}, profile="prod")


def test_built_in_profiles_choose_the_library_defaults() -> None:
    local = TopologyConfig.from_mapping({}, profile="local").resolve("data", TOPIC, SHORT)
    assert (local["partitions"], local["replication.factor"], local["min.insync.replicas"]) == (4, 1, 1)
    assert local["cleanup.policy"] == "delete"  # by kind, whatever the profile
    production = TopologyConfig().resolve("changelog", TOPIC, SHORT)
    assert (production["partitions"], production["replication.factor"], production["min.insync.replicas"]) == (6, 3, 2)
    # a file's profile of a built-in name is applied over that built-in profile
    mine = TopologyConfig.from_mapping({"profiles": {"local": {"partitions": 2}}}, profile="local")
    assert (mine.resolve("data", TOPIC, SHORT)["partitions"], mine.resolve("data", TOPIC, SHORT)["replication.factor"]) == (2, 1)


def test_min_insync_above_replication_is_refused() -> None:
    config = TopologyConfig.from_mapping({}, sets=["replication.factor=1"])
    with pytest.raises(ConfigError, match=r"min\.insync\.replicas 2 exceeds replication\.factor 1"):
        config.resolve("data", TOPIC, SHORT)
