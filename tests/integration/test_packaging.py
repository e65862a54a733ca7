"""Each extra installed alone, in a fresh virtualenv, and `pipeteer run` started from it.

`pipeteer run` once crashed with only the `kafka` extra installed (`httpx`, which the console's
peers use, came with the `examples` and `dev` extras only). Each extra is installed on its own, as
a user would (`pip install -e '.[kafka]'`, from pip's cache), and its commands are started: the
CLI answers, and a service with a human stage serves `/healthz` and its console.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_sqlite_processes import ROOT, free_port


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("extra", ["", "kafka", "s3", "deploy"])
def test_an_extra_alone_runs_a_service(extra: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    target = f"{ROOT}[{extra}]" if extra else str(ROOT)
    pip = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", target],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    cli = subprocess.run([str(venv / "bin" / "pipeteer"), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert cli.returncode == 0 and "run" in cli.stdout, cli.stderr
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([str(venv / "bin" / "pipeteer"), "run", "tests.apps.review:app", "--backend",
                             f"sqlite:///{tmp_path / 'q.db'}", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "no /healthz in 60 s"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/console/?stage=review", timeout=5) as r:
            assert r.status == 200 and b"review" in r.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
