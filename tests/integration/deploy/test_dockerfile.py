"""The runtime image's Dockerfile: slim, pinned, non-root, and able to run on a read-only root filesystem.

No Docker engine runs here, so the file is checked as text: every instruction it relies on.
"""

from __future__ import annotations

import re
import tomllib

from tests.integration.deploy.conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_base_image_is_slim_and_pinned() -> None:
    (arg,) = [v for k, v in instructions() if k == "ARG" and v.startswith("PYTHON_IMAGE=")]
    image = arg.split("=", 1)[1]
    name, _, tag = image.partition(":")
    assert name == "python" and "slim" in tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+-", tag)
    froms = [v for k, v in instructions() if k == "FROM"]
    assert len(froms) == 2 and all(
        f.startswith("${PYTHON_IMAGE}") for f in froms
    )  # build stage + runtime stage


def test_runs_as_a_non_root_uid_of_10000_or_more() -> None:
    users = [v for k, v in instructions() if k == "USER"]
    assert users, "the image must not run as root"
    uid, _, gid = users[-1].partition(":")
    assert int(uid) >= 10000 and int(gid) >= 10000
    assert f"--uid {uid}" in DOCKERFILE and "--no-create-home" in DOCKERFILE
    env = " ".join(v for k, v in instructions() if k == "ENV")
    assert "HOME=/tmp" in env and "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written outside /tmp


def test_installs_the_project_with_the_kafka_extra() -> None:
    runs = " ".join(v for k, v in instructions() if k == "RUN")
    assert re.search(r"pip install \"\.\[[^\]]*kafka", runs)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "kafka" in extras
    copies = [v for k, v in instructions() if k == "COPY"]
    assert any("--from=build" in c for c in copies)  # the runtime stage gets only the built venv
    assert any(c.split()[0] == "pipeteer" for c in copies) and any(
        c.split()[0] == "topologies" for c in copies
    )
    assert "8000" in [v for k, v in instructions() if k == "EXPOSE"]
