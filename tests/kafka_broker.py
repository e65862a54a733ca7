"""A Kafka broker for the tests, in the order DESIGN.md gives:

1. `PIPETEER_TEST_KAFKA=host:port` if set (an existing cluster; nothing is started or stopped);
2. a Kafka container through testcontainers when a Docker engine answers;
3. else the `noida-db` Kafka-protocol broker from PyPI, started on a free loopback port with its
   own data directory, and stopped by its process id.

Quirks of noida-db 0.2.3 found here, beyond those DESIGN.md lists (tests work around them; the
product does not depend on them):

- Fetch ignores `fetch.max.bytes` and `max.partition.fetch.bytes`: a consumer of a backlog gets
  all of it in one response (100 MB for 10,000 records of 10 KB), which librdkafka refuses above
  `receive.message.max.bytes` (100 MB by default) on every retry. The benchmark raises that cap.
- A JoinGroup is sometimes never answered when static members (`group.instance.id`) join a
  group at the same moment: the tests start instances one at a time, and keep
  `max.poll.interval.ms` (the client's JoinGroup timeout, plus 3 s) short.
- Open transactions are never timed out: the transaction of a producer killed for good (its
  transactional id never used again) stays open, and read_committed consumers of the partitions
  it wrote wait for ever. Kafka aborts it after `transaction.timeout.ms`; the tests always
  restart a killed instance under its own name, which fences and aborts it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

START_TIMEOUT = 60.0


@dataclass
class Broker:
    """A running broker: where it listens, and how to stop it (if this process started it)."""

    bootstrap: str
    kind: str
    pid: int | None = None
    _stop: Any = field(default=None, repr=False)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker_answers(timeout: float = 1.0) -> bool:
    """Whether a Docker engine answers, quickly (no engine here: the socket is absent)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        path = host[len("unix://") :]
        if not os.path.exists(path):
            return False
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            try:
                s.connect(path)
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return b"OK" in s.recv(1024)
            except OSError:
                return False
    return True


def wait_for_kafka(bootstrap: str, timeout: float = START_TIMEOUT) -> None:
    """Until the broker answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        host, _, port = bootstrap.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                pass
            AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
            return
        except Exception as e:
            last = e
            time.sleep(0.2)
    raise RuntimeError(f"Kafka broker at {bootstrap} did not answer within {timeout:.0f}s: {last}")


def noida_binary() -> Path:
    path = Path(str(files("noida_db").joinpath("noida-db")))
    if not path.is_file():
        raise RuntimeError(f"noida-db binary not found at {path}: pip install 'noida-db==0.2.3'")
    path.chmod(0o755)
    return path


def start_noida(data_dir: Path) -> Broker:
    """Start the noida-db Kafka broker on a free loopback port; stop it by its pid."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(data_dir / "broker.log", "wb")
    proc = subprocess.Popen(
        [str(noida_binary()), "start", "--data-dir", str(data_dir / "data"), "--only", "kafka", "--kafka-port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )

    def stop() -> None:
        # The noida-db launcher starts the broker as a child, which outlives a signal to the
        # launcher alone: signal the whole process group the broker was started in.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(10)
                time.sleep(0.2)
                os.killpg(proc.pid, 0)  # anyone left in the group?
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        log.close()

    bootstrap = f"127.0.0.1:{port}"
    try:
        wait_for_kafka(bootstrap)
    except BaseException:
        stop()
        raise
    return Broker(bootstrap, "noida-db", proc.pid, stop)


def start_container() -> Broker:
    from testcontainers.kafka import KafkaContainer

    container = KafkaContainer().start()
    return Broker(container.get_bootstrap_server(), "testcontainers", None, container.stop)


@contextlib.contextmanager
def kafka_broker(data_dir: Path) -> Iterator[Broker]:
    """The broker the tests use (see the module docstring for the order)."""
    external = os.environ.get("PIPETEER_TEST_KAFKA")
    if external:
        wait_for_kafka(external)
        broker = Broker(external, "external")
    elif docker_answers():
        broker = start_container()
    else:
        broker = start_noida(data_dir)
    try:
        yield broker
    finally:
        broker.stop()


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete every topic starting with `prefix` (the local broker keeps topic data in memory)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if topics:
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                fut.result()
