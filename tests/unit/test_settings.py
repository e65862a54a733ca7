"""Environment variables: named once (`pipeteer.settings`), read in one place, every mention a known one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pipeteer import settings
from pipeteer.errors import ConfigError

PACKAGE = Path(__file__).resolve().parents[2] / "pipeteer"
SETTINGS = PACKAGE / "settings.py"
NAMES = {v.name for v in settings.VARIABLES} | {settings.KAFKA_BOOTSTRAP_SERVERS.name}


def sources() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py")) if p != SETTINGS]


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = [
        f"{p.relative_to(PACKAGE)}:{node.lineno}"
        for p, tree in sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in ("environ", "getenv", "environb")
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    ]
    assert readers == []


def test_no_variable_is_named_outside_the_settings_module() -> None:
    # a string that is exactly a variable's name is a key someone reads or writes: it must be `VARIABLE.name`
    literals = [
        f"{p.relative_to(PACKAGE)}:{node.lineno}: {node.value}"
        for p, tree in sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES
    ]
    assert literals == []


def test_every_variable_the_package_mentions_is_a_known_one() -> None:
    family = settings.KAFKA_PROPERTY_PREFIX  # PIPETEER_KAFKA_<PROPERTY>: any client property
    mentioned = {m for p in PACKAGE.rglob("*.py") for m in re.findall(r"PIPETEER_[A-Z0-9_]+", p.read_text())}

    def known(m: str) -> bool:
        if m.startswith(family):
            return True
        if m.endswith("_"):  # a group, as in `PIPETEER_AUTH_*`
            return any(n.startswith(m) for n in NAMES)
        return m in NAMES

    assert sorted(m for m in mentioned if not known(m)) == []


def test_typed_reads() -> None:
    assert settings.MAX_BODY_BYTES.positive({"PIPETEER_MAX_BODY_BYTES": "2048"}) == 2048
    assert settings.MAX_BODY_BYTES.positive({"PIPETEER_MAX_BODY_BYTES": "2048"}, override=10) == 10
    assert settings.MAX_BODY_BYTES.positive({}) is None
    with pytest.raises(ConfigError, match=r"PIPETEER_MAX_BODY_BYTES must be a whole number, not 'lots'"):
        settings.MAX_BODY_BYTES.positive({"PIPETEER_MAX_BODY_BYTES": "lots"})
    with pytest.raises(ConfigError, match="PIPETEER_MAX_UPLOAD_BYTES must be positive, not 0"):
        settings.MAX_UPLOAD_BYTES.positive({"PIPETEER_MAX_UPLOAD_BYTES": "0"})
    assert len(NAMES) == len(settings.VARIABLES) + 1  # each named once


def test_docstring_examples() -> None:
    import doctest

    result = doctest.testmod(settings, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_one_reading_of_a_kafka_url() -> None:
    url = "kafka://u1:9092?prefix=acme&partitions=2&transaction.timeout.ms=5000&sasl.password=hunter2"
    env = {"PIPETEER_PARTITIONS": "8", "PIPETEER_KAFKA_SECURITY_PROTOCOL": "SSL"}
    parsed = settings.kafka_url(url, env)
    assert parsed.servers == "u1:9092"
    assert dict(parsed.options) == {"prefix": "acme", "partitions": "8", "transaction_timeout_ms": "5000"}
    assert dict(parsed.properties) == {"sasl.password": "hunter2", "security.protocol": "SSL"}
    assert "hunter2" not in repr(parsed) and "hunter2" not in parsed.where
    assert parsed.positive("partitions") == 8 and parsed.number("commit_records", 7) == 7
    brokers = {"PIPETEER_KAFKA_BOOTSTRAP_SERVERS": "e1:9092,e2:9092"}
    assert settings.kafka_url(url, brokers).servers == "e1:9092,e2:9092"
    assert "bootstrap.servers" not in settings.kafka_url(url, brokers).properties
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['partition'\]"):
        settings.kafka_url("kafka://b:1?partition=3", {})
    with pytest.raises(ConfigError, match=r"not a Kafka backend URL: 'sqlite://\*\*\*@x'"):
        settings.kafka_url("sqlite://me:pw@x", {})
    with pytest.raises(ConfigError, match=r"Kafka backend option partitions='0' must be at least 1"):
        settings.kafka_url("kafka://b:1?partitions=0", {}).positive("partitions")
