"""Rate-limited client logs and the unreachable-cluster account (no broker: the client's own error objects)."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from pipeteer.errors import BrokerUnreachable
from pipeteer.queues.kafka.health import BrokerWatch, ClientLog, RateLimiter, broker_states, translate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def connect_failed(ms: int) -> str:
    return f"127.0.0.1:19999/bootstrap: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (after {ms}ms in state CONNECT)"


def test_one_line_per_distinct_message_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limiter = RateLimiter(logging.getLogger("test.health"), interval=60, clock=clock)
    client = ClientLog(limiter)
    with caplog.at_level(logging.DEBUG, logger="test.health"):
        for i in range(500):  # what librdkafka says in a minute of retries, from several clients
            clock.now = i * 0.1
            client.log(logging.ERROR, "%s [%s] %s", "FAIL", f"rdkafka#consumer-{i % 3}", connect_failed(i % 7))
        client.log(logging.WARNING, "%s", "another message")
        clock.now = 61.0
        client.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-9", connect_failed(0))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("FAIL [rdkafka#consumer-0]") and "Connection refused" in lines[0]
    assert lines[1] == "another message"
    assert lines[2].endswith("(and 499 more like it in the last 60s)")
    # (librdkafka's connection failures are debug lines: the watch names each broker's change of state once)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.WARNING, logging.DEBUG]


def test_the_watch_says_once_what_to_check_and_knows_when_the_cluster_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = BrokerWatch("kafka-0.example:9092,kafka-1.example:9092", RateLimiter(logging.getLogger("test.watch")))
    assert watch.reason() is None
    with caplog.at_level(logging.DEBUG):
        for _ in range(100):
            watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "2/2 brokers are down"))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "kafka-0.example:9092,kafka-1.example:9092" in errors[0] and "firewall" in errors[0]
    reason = watch.reason()
    assert reason is not None and "cannot reach the Kafka brokers at kafka-0.example:9092" in reason
    assert "2/2 brokers are down" in reason
    watch.up()
    assert watch.reason() is None


def test_client_errors_that_mean_unreachable_become_one_clear_error() -> None:
    down = translate(KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata")), "h:9092")
    assert isinstance(down, BrokerUnreachable) and down.bootstrap == "h:9092"
    assert str(down).startswith("cannot reach the Kafka brokers at h:9092 (Failed to get metadata): check")
    other = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "not allowed"))
    assert translate(other, "h:9092") is other
    plain = ValueError("x")
    assert translate(plain, "h:9092") is plain


def test_one_broker_away_is_said_once_by_name_and_its_return_too(caplog: pytest.LogCaptureFixture) -> None:
    """With one broker of three down, the clients go on with the others: each state change of that
    broker is one line naming it, and the cluster is not said unreachable (nor is /readyz told so)."""
    clock = Clock()
    watch = BrokerWatch("b1:9092,b2:9092,b3:9092", RateLimiter(logging.getLogger("test.watch")), clock=clock)
    refused = "b2:9092/2: Connect to ipv4#10.0.0.2:9092 failed: Connection refused (after 0ms in state CONNECT)"
    with caplog.at_level(logging.DEBUG, logger="pipeteer.kafka.client"):
        for _ in range(50):  # every client of the process, every reconnection attempt
            watch.on_error(KafkaError(KafkaError._TRANSPORT, refused))
        assert watch.reason() is None
        watch.brokers_seen({"b2:9092": "UP"})  # (statistics taken before the client noticed: not a return)
        clock.now = 3.0
        watch.brokers_seen({"b1:9092": "UP", "b2:9092": "CONNECT", "b3:9092": "UP"})
        watch.brokers_seen({"b1:9092": "UP", "b2:9092": "UP", "b3:9092": "UP"})
        watch.brokers_seen({"b2:9092": "UP"})
        clock.now = 10.0
        watch.on_error(KafkaError(KafkaError._TRANSPORT, refused))  # down again: said again
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeteer.kafka.client"]
    assert len(lines) == 3, lines
    assert lines[0].startswith("Kafka broker b2:9092 unreachable (Connect to ipv4#10.0.0.2:9092 failed: Connection refused")
    assert "cannot reach the Kafka brokers" not in lines[0]
    assert lines[1].startswith("Kafka broker b2:9092 reachable again after")
    assert lines[2].startswith("Kafka broker b2:9092 unreachable")
    assert not [r for r in caplog.records if r.exc_info]


def test_the_client_statistics_name_brokers_by_address() -> None:
    stats = {"brokers": {
        "127.0.0.1:9092/1": {"nodeid": 1, "state": "UP"},
        "127.0.0.1:9093/2": {"nodeid": 2, "state": "DOWN"},
        "127.0.0.1:9092/bootstrap": {"nodeid": -1, "state": "INIT"},
        "GroupCoordinator": {"nodeid": -1, "state": "UP"},
    }}
    assert broker_states(stats) == {"127.0.0.1:9092": "UP", "127.0.0.1:9093": "DOWN"}


def test_a_clients_partial_view_is_not_an_outage() -> None:
    """librdkafka says "1/1 brokers are down" from a client that knows only its dead coordinator, and
    "0/3 brokers are down" as a broker leaves the metadata: with three bootstrap servers, neither means
    the cluster is unreachable; "3/3" does."""
    watch = BrokerWatch("b1:9092,b2:9092,b3:9092", RateLimiter(logging.getLogger("test.watch")))
    watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "0/3 brokers are down"))
    assert watch.reason() is None
    watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "3/3 brokers are down"))
    assert watch.reason() is not None and "3/3 brokers are down" in watch.reason()  # type: ignore[operator]


def test_every_known_broker_unreachable_is_the_cluster_away_for_this_process() -> None:
    """A network cut: each broker's connection fails, one after the other; once every broker the clients
    know is said unreachable, the cluster is away for this process (an outage, not a stuck stage), before
    librdkafka says so itself."""
    watch = BrokerWatch("b1:9092,b2:9092,b3:9092", RateLimiter(logging.getLogger("test.watch")))
    watch.brokers_seen({"b1:9092": "UP", "b2:9092": "UP", "b3:9092": "UP"})
    for b in ("b1", "b2"):
        watch.on_error(KafkaError(KafkaError._TRANSPORT, f"{b}:9092/1: Connect to ipv4#10.0.0.1:9092 failed: Connection reset by peer"))
        assert not watch.all_down()
    watch.on_error(KafkaError(KafkaError._TRANSPORT, "b3:9092/3: Connect to ipv4#10.0.0.3:9092 failed: Connection reset by peer"))
    assert watch.all_down()
