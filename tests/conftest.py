"""Shared fixtures. Backends for the queue contract suite: every test there runs on each of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipeteer.queues.base import BaseQueue

if TYPE_CHECKING:
    from tests.kafka_broker import Broker
    from tests.kafka_cluster import Cluster
    from tests.schema_registry import SchemaRegistry

QueueFactory = Callable[[Any, str], BaseQueue[Any]]


@pytest.fixture(params=["memory", "sqlite"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh backend URL per test, one per backend."""
    if request.param == "memory":
        yield "memory://"
    else:
        url = f"sqlite:///{tmp_path / 'queues.db'}"
        yield url
        from pipeteer.queues.sqlite import SqliteStore

        SqliteStore.at(tmp_path / "queues.db").close()


@pytest.fixture
def make_queue(backend_url: str) -> QueueFactory:
    from pipeteer.queues.backends import backend_from_url

    backend = backend_from_url(backend_url, workflow_name="test")
    return lambda Type, name: backend.make_queue(Type, [name])


# --- Kafka (see tests/kafka_broker.py for where the broker comes from) ---------------------------


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The Kafka-protocol broker of the whole session (started here if need be); `.kind` says which."""
    from tests.kafka_broker import kafka_broker

    with kafka_broker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    """host:port of the session's broker."""
    return kafka_broker.bootstrap


@pytest.fixture
def real_kafka(kafka_broker: Broker) -> Broker:
    """The session's broker, for tests that need real Kafka's behaviour (skipped on noida-db)."""
    if kafka_broker.quirky:
        pytest.skip(f"needs Apache Kafka, the session's broker is {kafka_broker.kind} (see tests/kafka_broker.py)")
    return kafka_broker


@pytest.fixture
def kafka_prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A topic prefix (hence consumer groups and transactional ids) of this test only; its topics are deleted after."""
    import uuid

    from tests.kafka_broker import delete_topics

    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_topics(kafka_bootstrap, prefix)


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-node Apache Kafka cluster (tests/kafka_cluster.py: replication factor 3, min ISR 2, a TCP proxy
    in front of each node) for the whole session, started by the first test that asks for it (about
    15-18 s); skipped with the reason where Apache Kafka cannot run. A test that injects a fault undoes it
    (`cluster.repair()`) before the next one."""
    from tests.kafka_cluster import kafka_cluster, unavailable

    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with kafka_cluster(tmp_path_factory.mktemp("kafka-cluster")) as cluster:
        yield cluster


# --- Schema registry (see tests/schema_registry.py: Apicurio Registry 3 from Maven Central) -------


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaRegistry]:
    """A real schema registry for the session (Confluent's REST API, global compatibility BACKWARD),
    started here if need be; skipped with the reason where none can run (no Java 21+, no Maven)."""
    from tests.schema_registry import schema_registry, unavailable

    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with schema_registry(tmp_path_factory.mktemp("schema-registry")) as registry:
        yield registry
