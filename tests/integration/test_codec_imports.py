"""Layering: importing the codec pulls in no backend, web or Kafka library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ["sqlite3", "fastapi", "confluent_kafka", "aiokafka", "prometheus_client"]


def test_codec_import_is_light() -> None:
    code = (
        "import json, sys\n"
        "import pipeteer.codec\n"
        "from pipeteer.codec import codec_for, schema_for\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert json.loads(out) == []
