"""One retry policy with one meaning on every backend, read from the same URL options and environment."""

from __future__ import annotations

import pytest

from pipeteer.errors import ConfigError
from pipeteer.queues.backends import backend_from_url
from pipeteer.queues.base import Retry
from pipeteer.queues.kafka.config import KafkaSettings


@pytest.mark.parametrize("url", ["memory://?retries=2&retry_backoff_ms=10", "sqlite:///q.db?retries=2&retry_backoff_ms=10"])
def test_embedded_backends_read_the_retry_options(url: str) -> None:
    backend = backend_from_url(url, workflow_name="wf", env={})
    assert backend.retry == Retry(attempts=3, initial=0.01, maximum=30.0)  # type: ignore[attr-defined]
    assert backend.make_queue(int, ["q"]).retry == Retry(attempts=3, initial=0.01, maximum=30.0)


def test_the_environment_wins_over_the_url_as_on_kafka() -> None:
    env = {"PIPETEER_RETRIES": "0", "PIPETEER_RETRY_BACKOFF_MAX_MS": "2000"}
    embedded = backend_from_url("sqlite:///q.db?retries=9", workflow_name="wf", env=env)
    kafka = KafkaSettings.from_url("kafka://h:9092?retries=9", env=env)
    assert embedded.retry == kafka.retries == Retry(attempts=1, initial=0.5, maximum=2.0)  # type: ignore[attr-defined]


def test_defaults_agree_and_bad_values_are_named() -> None:
    assert backend_from_url("memory://", workflow_name="wf", env={}).retry == KafkaSettings.from_url(  # type: ignore[attr-defined]
        "kafka://h:9092", env={}
    ).retries == Retry()
    with pytest.raises(ConfigError, match=r"retries='many' is not a whole number"):
        backend_from_url("sqlite:///q.db?retries=many", workflow_name="wf", env={})
