"""What the commands share: the brokers a command talks to, and its Kafka client errors in one line."""

from __future__ import annotations

import argparse

import pytest
from confluent_kafka import KafkaError, KafkaException

from pipeteer.cli import build_parser
from pipeteer.cli.common import kafka_brokers, translate_kafka_error
from pipeteer.errors import BrokerUnreachable


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_the_brokers_of_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPETEER_BACKEND", raising=False)
    monkeypatch.delenv("PIPETEER_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert (
        kafka_brokers(parse("status", "m:app", "--backend", "kafka://k1:9092,k2:9092?prefix=x"))
        == "k1:9092,k2:9092"
    )
    assert kafka_brokers(parse("topics", "plan", "m:app", "--bootstrap", "k:9")) == "k:9"
    assert kafka_brokers(parse("status", "m:app", "--backend", "sqlite:///q.db")) is None
    monkeypatch.setenv("PIPETEER_BACKEND", "kafka://env:9092")
    assert kafka_brokers(parse("status", "m:app")) == "env:9092"


def test_a_kafka_error_is_one_line_naming_the_brokers_and_the_command() -> None:
    args = parse("dlq", "replay", "m:app", "--backend", "kafka://k:9092", "--stage", "s", "--all")
    denied = translate_kafka_error(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)), args)
    assert denied is not None
    text = str(denied)
    assert text.startswith("dlq replay: the Kafka brokers at k:9092 answered: ")
    assert "TOPIC_AUTHORIZATION_FAILED" in text and "\n" not in text
    away = translate_kafka_error(KafkaException(KafkaError(KafkaError._TRANSPORT, "transport failure")), args)
    assert isinstance(away, BrokerUnreachable) and "cannot reach the Kafka brokers at k:9092" in str(away)
    assert translate_kafka_error(ValueError("not Kafka's"), args) is None


def test_help_lists_every_environment_variable() -> None:
    from pipeteer.settings import VARIABLES

    text = build_parser().format_help()
    assert VARIABLES and all(v.name in text for v in VARIABLES)
