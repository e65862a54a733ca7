"""The compile layer stays light: no Kafka client, SQLite, web framework or metrics library at import time."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.deploy.conftest import REPO

FORBIDDEN = ("sqlite3", "fastapi", "confluent_kafka", "prometheus_client", "aiokafka")


def test_importing_the_compile_layer_loads_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "import pipeteer.compile, pipeteer.cli.deploy, pipeteer.compile.emit\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"imported at module level: {out.stdout.strip()}"
