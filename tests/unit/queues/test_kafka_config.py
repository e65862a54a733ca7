"""Kafka backend settings from URL and environment; secrets never printed."""

from __future__ import annotations

import pytest

from pipeteer.errors import ConfigError
from pipeteer.plan import Plan
from pipeteer.queues.kafka.backend import KafkaBackend
from pipeteer.queues.kafka.config import KafkaConnection, KafkaSettings


def test_url_then_environment_precedence() -> None:
    s = KafkaSettings.from_url(
        "kafka://k1:9092,k2:9092?prefix=acme&partitions=8&commit_records=50&security.protocol=SSL",
        env={"PIPETEER_COMMIT_RECORDS": "70", "PIPETEER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
    )
    assert s.connection.bootstrap_servers == "k1:9092,k2:9092"
    assert s.connection.prefix == "acme"
    assert s.topics.partitions == 8
    assert s.transactions.records == 70  # the environment wins
    assert s.connection.properties == {"security.protocol": "SSL", "sasl.mechanism": "SCRAM-SHA-512"}


def test_transaction_timeout_client_property_sets_the_option() -> None:
    env = {"PIPETEER_KAFKA_TRANSACTION_TIMEOUT_MS": "7000"}
    s = KafkaSettings.from_url("kafka://b:1", env=env)
    assert s.transactions.timeout_ms == 7000
    assert "transaction.timeout.ms" not in s.connection.properties
    assert KafkaSettings.from_url("kafka://b:1?transaction.timeout.ms=8000", env={}).transactions.timeout_ms == 8000
    # the option itself wins over the client property
    s = KafkaSettings.from_url("kafka://b:1?transaction_timeout_ms=9000", env=env)
    assert s.transactions.timeout_ms == 9000


def test_secrets_are_masked_in_repr() -> None:
    s = KafkaSettings.from_url(
        "kafka://b:9093?security.protocol=SASL_SSL",
        env={"PIPETEER_KAFKA_SASL_USERNAME": "app", "PIPETEER_KAFKA_SASL_PASSWORD": "hunter2",
             "PIPETEER_KAFKA_SSL_KEY_PASSWORD": "s3cret"},
    )
    text = repr(s) + repr(s.connection) + repr(KafkaBackend("kafka://b:9093", s, workflow_name="wf"))
    assert "hunter2" not in text and "s3cret" not in text
    assert "'sasl.username': 'app'" in text and "'sasl.password': '***'" in text
    assert s.connection.client_config()["sasl.password"] == "hunter2"  # still passed to the client


def test_static_membership_only_when_asked() -> None:
    """A named instance is a dynamic member (it leaves its group when stopped) unless asked to be static."""
    assert not KafkaSettings.from_url("kafka://b:1", env={"PIPETEER_INSTANCE": "pod-0"}).static_membership
    assert KafkaSettings.from_url("kafka://b:1?instance=pod-0&static_membership=true", env={}).static_membership
    assert not KafkaSettings.from_url("kafka://b:1", env={}).static_membership
    s = KafkaSettings.from_url("kafka://b:1", env={"PIPETEER_INSTANCE": "x", "PIPETEER_STATIC_MEMBERSHIP": "false"})
    assert s.instance == "x" and not s.static_membership


@pytest.mark.parametrize(
    ("url", "env", "fragment"),
    [
        ("kafka://b:1?bogus=1", {}, "unknown option"),
        ("kafka://b:1?partitions=many", {}, "not an integer"),
        ("kafka://b:1?transactional.id=x", {}, "set by pipeteer"),
        ("kafka://?prefix=x", {}, "no bootstrap servers"),
        ("sqlite:///x.db", {}, "not a Kafka backend URL"),
        ("kafka://b:1?commit_interval_ms=30000", {}, "commit_interval_ms 30000 must be below transaction_timeout_ms 10000"),
        ("kafka://b:1", {"PIPETEER_KAFKA_TRANSACTION_TIMEOUT_MS": "50"}, "commit_interval_ms 100 must be below"),
    ],
)
def test_bad_settings_say_what_to_fix(url: str, env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        KafkaSettings.from_url(url, env=env)


def test_reserved_properties_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"isolation\.level"):
        KafkaConnection("b:1", {"isolation.level": "read_uncommitted"})


def test_entry_stage_reads_the_input_queue() -> None:
    from tests.apps.chain import workflow

    plan = Plan.of(workflow)
    assert plan.readers() == {("input",): ("square",), ("negate",): ("negate",), ("sum",): ("sum",)}
    b = KafkaBackend.from_url("kafka://b:1?prefix=p", workflow_name=workflow.name, env={})
    b.bind(plan)
    assert b.reader_of(["input"]) == ("square",)
    assert b.names.group(b.reader_of(["input"])) == "p.chain.stage.square"
    assert b.make_queue(int, ["output"]).topic == "p.chain.output"


def test_backend_url_is_printed_without_secrets() -> None:
    url = "kafka://b:9093?security.protocol=SASL_SSL&sasl.username=app&sasl.password=hunter2"
    backend = KafkaBackend.from_url(url, workflow_name="wf", env={})
    assert "hunter2" not in backend.url and "sasl.password=***" in backend.url
    assert backend.settings.connection.properties["sasl.password"] == "hunter2"
    with pytest.raises(ConfigError) as e:
        KafkaSettings.from_url(url + "&bogus=1", env={})
    assert "hunter2" not in str(e.value)


def test_stage_consumer_prefetch_is_bounded_unless_the_user_says_otherwise() -> None:
    from pipeteer.queues.kafka.changelog import PREFETCH, stage_consumer_config

    default = stage_consumer_config(KafkaSettings.from_url("kafka://b:1", env={}), "g", lambda e: None)
    assert default["queued.min.messages"] == PREFETCH and default["isolation.level"] == "read_committed"
    tuned = KafkaSettings.from_url("kafka://b:1", env={"PIPETEER_KAFKA_QUEUED_MIN_MESSAGES": "50000"})
    assert stage_consumer_config(tuned, "g", lambda e: None)["queued.min.messages"] == "50000"


def test_byte_budget_of_pending_items_bounds_the_prefetch_too() -> None:
    from pipeteer.queues.kafka.changelog import stage_consumer_config

    s = KafkaSettings.from_url("kafka://b:1?max_pending_bytes=1000", env={"PIPETEER_MAX_PENDING_BYTES": "33554432"})
    assert s.transactions.max_pending_bytes == 32 << 20  # the environment wins
    assert stage_consumer_config(s, "g", lambda e: None)["queued.max.messages.kbytes"] == 32768  # per partition


def test_topic_settings_come_from_one_profile_table() -> None:
    from pipeteer.topics import topic_defaults

    local = KafkaSettings.from_url("kafka://b:1", env={}).topics
    assert local.settings("dead-letter", "t") == topic_defaults("dead-letter", "local")
    production = KafkaSettings.from_url("kafka://b:1", env={"PIPETEER_TOPIC_PROFILE": "production"}).topics
    assert production.settings("data", "t") == topic_defaults("data", "production")
    tuned = KafkaSettings.from_url("kafka://b:1?topic_profile=production&partitions=12", env={}).topics
    assert (tuned.settings("changelog", "t")["partitions"], tuned.settings("changelog", "t")["replication.factor"]) == (12, 3)
    with pytest.raises(ConfigError, match=r"min\.insync\.replicas 2 exceeds replication\.factor 1"):
        KafkaSettings.from_url("kafka://b:1?topic_profile=production&replication_factor=1", env={})
    with pytest.raises(ConfigError, match=r"unknown topic profile 'big' \(profiles: production, local\)"):
        KafkaSettings.from_url("kafka://b:1?topic_profile=big", env={})
    with pytest.raises(ConfigError, match="partitions='0' must be at least 1"):
        KafkaSettings.from_url("kafka://b:1?partitions=0", env={})
