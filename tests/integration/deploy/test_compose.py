"""The generated docker-compose stack, validated by a real compose implementation (`config` needs no engine)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from pipeteer.compile import Topology, build_topology, compile_to
from pipeteer.compile.manifests import compose_service_name
from tests.integration.deploy.conftest import REPO
from tests.unit.compile.sample_app import APP_REF, app


def compose_config(docker_compose: Path, file: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [str(docker_compose), "--project-directory", str(file.parent), "-f", str(file), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=file.parent,
    )
    assert proc.returncode == 0, f"docker-compose config rejected {file}:\n{proc.stderr}"
    parsed: dict[str, Any] = yaml.safe_load(proc.stdout)
    return parsed


def check_stack(config: dict[str, Any], topology: Topology, root: Path) -> None:
    """Every stage is a service running its stage on its port; the mounted files exist."""
    services = config["services"]
    stage_services = {compose_service_name(s): s for s in topology.stages}
    assert set(services) == {"kafka", "topics", "prometheus", "grafana", *stage_services}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    topics_cmd = services["topics"]["command"]
    assert topics_cmd[:4] == ["pipeteer", "topics", "apply", topology.app]
    for name, stage in stage_services.items():
        svc = services[name]
        cmd = svc["command"]
        assert cmd[cmd.index("--stage") + 1] == stage.name
        assert cmd[cmd.index("--port") + 1] == str(stage.port)
        assert cmd[cmd.index("--backend") + 1] == "kafka://kafka:9092"
        (port,) = svc["ports"]
        published = port["target"] if isinstance(port, dict) else int(str(port).split(":")[-1].split("/")[0])
        assert int(published) == stage.port
        if stage.web:  # people's pages without authentication: on this machine's loopback only
            assert (port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]) == "127.0.0.1"
            assert svc["environment"]["PIPETEER_NO_AUTH"] == "1"
        assert svc["user"] == "10001:10001" and svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    mounts = [v for s in ("prometheus", "grafana") for v in services[s]["volumes"]]
    for volume in mounts:
        source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
        assert (root / source).exists() or Path(source).exists(), f"mounted file {source} does not exist"
    scrape = yaml.safe_load(
        next(
            Path(v["source"] if isinstance(v, dict) else v.split(":")[0])
            for v in services["prometheus"]["volumes"]
        ).read_text()
    )
    targets = [c["targets"][0] for c in scrape["scrape_configs"][0]["static_configs"]]
    assert targets == [f"{compose_service_name(s)}:{s.port}" for s in topology.stages]


def test_generated_stack_passes_compose_config(docker_compose: Path, tmp_path: Path) -> None:
    # the stack builds the project's image from the directory of the compose file
    shutil.copy(REPO / "Dockerfile", tmp_path / "Dockerfile")
    compose_file = tmp_path / "docker-compose.yml"
    compile_to(app, tmp_path / "deploy" / "compiled", app_ref=APP_REF, compose_file=compose_file)
    config = compose_config(docker_compose, compose_file)
    check_stack(config, build_topology(app, app_ref=APP_REF), tmp_path)
