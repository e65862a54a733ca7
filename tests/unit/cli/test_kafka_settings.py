"""One answer to "which brokers": every command that takes brokers asks `kafka_settings`, which parses
with `KafkaSettings.from_url` (the URL's options kept) under `pipeteer.settings`' precedence:
`--bootstrap` > `$PIPETEER_KAFKA_BOOTSTRAP_SERVERS` > the backend URL's host:port, the URL being
`--backend` > `$PIPETEER_BACKEND`; other options: the URL's query < the `PIPETEER_*` variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any

import pytest

from pipeteer.cli import build_parser, main
from pipeteer.cli.common import kafka_brokers, kafka_settings
from pipeteer.errors import ConfigError
from tests.unit.compile.sample_app import APP_REF

URL = "kafka://url:9092?security.protocol=SSL&sasl.username=app&prefix=acme&topic_profile=production&partitions=8"


@pytest.fixture(autouse=True)
def no_pipeteer_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [n for n in os.environ if n.startswith("PIPETEER_")]:
        monkeypatch.delenv(name)
    yield


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def describe(*extra: str) -> argparse.Namespace:
    return parse("describe", APP_REF, *extra)


def topics(*extra: str) -> argparse.Namespace:
    return parse("topics", "plan", APP_REF, *extra)


class Planned:
    """`plan_topics` stood in for: what `topics plan` would ask the brokers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import pipeteer.queues.kafka.admin as admin

        self.calls: list[dict[str, Any]] = []
        monkeypatch.setattr(admin, "plan_topics", self.plan_topics)

    def plan_topics(self, topics: Any, bootstrap: str, **kw: Any) -> Any:
        self.calls.append({"topics": [t.name for t in topics], "bootstrap": bootstrap, **kw})
        return argparse.Namespace(text=lambda: "planned\n", refused=False)


def test_the_url_s_options_are_kept(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (describe("--backend", URL), topics("--backend", URL)):
        s = kafka_settings(args, "test")
        assert s.connection.bootstrap_servers == "url:9092"
        assert dict(s.connection.properties) == {"security.protocol": "SSL", "sasl.username": "app"}
        assert (s.connection.prefix, s.topics.profile, s.topics.partitions) == ("acme", "production", 8)
    # topics plan talks to those brokers with those client properties, and plans that backend's topics
    planned = Planned(monkeypatch)
    assert main(["topics", "plan", APP_REF, "--backend", URL]) == 0
    [call] = planned.calls
    assert call["bootstrap"] == "url:9092"
    assert call["client_config"] == {"security.protocol": "SSL", "sasl.username": "app"}
    assert call["scope"] == "acme.sample-correction."
    assert all(name.startswith("acme.sample-correction.") for name in call["topics"])
    # ... the topics `describe --backend` prints
    capsys.readouterr()
    assert main(["describe", APP_REF, "--backend", URL]) == 0
    described = capsys.readouterr().out
    assert all(f"  {name} [" in described for name in call["topics"])


def test_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPETEER_BACKEND", URL)
    for args in (describe(), topics(), parse("status", APP_REF)):
        assert kafka_settings(args, "test").connection.bootstrap_servers == "url:9092"
    monkeypatch.setenv("PIPETEER_KAFKA_BOOTSTRAP_SERVERS", "env1:9092,env2:9092")
    monkeypatch.setenv("PIPETEER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PIPETEER_TOPIC_PROFILE", "local")
    for args in (describe("--backend", URL), topics("--backend", URL), topics(), parse("dlq", "list", APP_REF, "--stage", "validation")):
        s = kafka_settings(args, "test")
        assert s.connection.bootstrap_servers == "env1:9092,env2:9092"
        assert s.connection.properties["security.protocol"] == "SASL_SSL"  # the variable over the URL's
        assert s.connection.properties["sasl.username"] == "app"  # the URL's, kept
        assert s.topics.profile == "local"
        assert kafka_brokers(args) == "env1:9092,env2:9092"
    # the variable alone names the brokers of a command that needs Kafka
    monkeypatch.delenv("PIPETEER_BACKEND")
    planned = Planned(monkeypatch)
    assert main(["topics", "plan", APP_REF]) == 0
    assert planned.calls[0]["bootstrap"] == "env1:9092,env2:9092"
    assert planned.calls[0]["client_config"] == {"security.protocol": "SASL_SSL"}


def test_precedence_flag_then_environment_then_url(monkeypatch: pytest.MonkeyPatch) -> None:
    def brokers(*extra: str) -> str:
        return kafka_settings(topics(*extra), "test").connection.bootstrap_servers

    monkeypatch.setenv("PIPETEER_BACKEND", "kafka://backend-env:9092?security.protocol=SSL")
    assert brokers() == "backend-env:9092"
    assert brokers("--backend", "kafka://backend-flag:9092") == "backend-flag:9092"  # --backend > $PIPETEER_BACKEND
    monkeypatch.setenv("PIPETEER_KAFKA_BOOTSTRAP_SERVERS", "servers-env:9092")
    assert brokers() == brokers("--backend", "kafka://backend-flag:9092") == "servers-env:9092"  # variable > URL
    assert brokers("--bootstrap", "flag:9092") == "flag:9092"  # the flag > the variable of the same setting
    # --bootstrap replaces the brokers only: the URL's other options stay
    s = kafka_settings(topics("--bootstrap", "flag:9092"), "test")
    assert s.connection.properties["security.protocol"] == "SSL"
    # the default: none, and a command that needs Kafka says what to give
    for name in ("PIPETEER_BACKEND", "PIPETEER_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name)
    with pytest.raises(ConfigError, match=r"^topics plan: which Kafka brokers\? .*--bootstrap HOST:PORT"):
        kafka_settings(topics(), "test")
    assert kafka_brokers(parse("status", APP_REF)) is None


def test_a_backend_url_set_for_other_commands_yields_to_named_brokers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPETEER_BACKEND", "sqlite:///q.db")
    assert kafka_settings(topics("--bootstrap", "b:1"), "test").connection.bootstrap_servers == "b:1"
    with pytest.raises(ConfigError, match=r"^topics plan \$PIPETEER_BACKEND 'sqlite:///q.db': not a kafka:// URL"):
        kafka_settings(topics(), "test")
    assert kafka_brokers(parse("status", APP_REF)) is None


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["describe", APP_REF, "--backend", "kafka//x"], "describe --backend 'kafka//x': not a kafka:// URL"),
        (["topics", "plan", APP_REF, "--backend", "kafka//x"], "topics plan --backend 'kafka//x': not a kafka:// URL"),
        (
            ["topics", "apply", APP_REF, "--backend", "sqlite:///q.db"],
            "topics apply --backend 'sqlite:///q.db': not a kafka:// URL (only a Kafka backend has topics)",
        ),
        (["topics", "plan", APP_REF, "--bootstrap", "kafka://b:1"], "topics plan --bootstrap 'kafka://b:1': not HOST:PORT"),
        (
            ["describe", APP_REF, "--backend", "kafka://b:1?sasl.password=hunter2&partitons=8"],
            "describe --backend: backend URL 'kafka://b:1?sasl.password=***&partitons=8': unknown option(s) ['partitons']",
        ),
        (["topics", "plan", APP_REF, "--backend", "kafka://?prefix=x"], "topics plan --backend: Kafka backend: no bootstrap"),
        (
            ["topics", "plan", APP_REF, "--backend", "kafka://b:1", "--set", "partitions=2"],
            "topics plan: --backend means the topics that backend creates",
        ),
        (
            ["describe", APP_REF, "--backend", "kafka//b?sasl.password=hunter2"],
            "describe --backend 'kafka//b?sasl.password=***': not a kafka:// URL",
        ),
    ],
)
def test_errors_name_what_is_wrong_and_where(argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"pipeteer: error: {said}"), err
    assert "hunter2" not in err


def test_topics_refuses_a_prefix_the_backend_does_not_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    planned = Planned(monkeypatch)
    monkeypatch.setenv("PIPETEER_TOPIC_PREFIX", "acme")
    assert main(["topics", "plan", APP_REF, "--bootstrap", "b:1"]) == 2
    err = capsys.readouterr().err
    assert "the backend's topic prefix is 'acme'" in err and "pipeteer.sample-correction.*" in err
    assert not planned.calls
    monkeypatch.delenv("PIPETEER_TOPIC_PREFIX")
    assert main(["topics", "plan", APP_REF, "--bootstrap", "b:1"]) == 0
    assert planned.calls[0]["scope"] == "pipeteer.sample-correction."
