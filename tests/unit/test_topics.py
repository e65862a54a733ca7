"""Topic settings: one table by kind and profile, read alike by the compiler and the Kafka backend."""

from __future__ import annotations

import doctest

import pytest

import pipeteer.topics
from pipeteer.errors import ConfigError
from pipeteer.topics import TOPIC_KINDS, TOPIC_PROFILES, topic_defaults


def test_docstring_examples() -> None:
    result = doctest.testmod(pipeteer.topics, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_every_kind_has_settings_under_every_profile() -> None:
    for profile in TOPIC_PROFILES:
        for kind in TOPIC_KINDS:
            settings = topic_defaults(kind, profile)
            assert int(settings["min.insync.replicas"]) <= int(settings["replication.factor"])
    assert topic_defaults("schemas", "production")["partitions"] == 1  # fixed, whatever the profile


def test_unknown_names_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown topic profile 'staging'"):
        topic_defaults("data", "staging")
    with pytest.raises(ConfigError, match=r"unknown topic kind 'log' \(known: data, changelog, dead-letter, schemas\)"):
        topic_defaults("log", "local")


def test_a_kafka_url_s_topic_options() -> None:
    from pipeteer.settings import kafka_url
    from pipeteer.topics import Topics

    topics = Topics.of_url(kafka_url("kafka://b:1?replication_factor=3&create_topics=no", {}))
    assert (topics.profile, topics.overrides(), topics.create_missing) == ("local", {"replication.factor": 3}, False)
    with pytest.raises(ConfigError, match=r"backend URL 'kafka://b:1\?topic_profile=production&replication_factor=1' "
                       r"\(data topics, topic_profile production\): min\.insync\.replicas 2 exceeds"):
        Topics.of_url(kafka_url("kafka://b:1?topic_profile=production&replication_factor=1", {}))
