"""`pipeteer run` as a real process for the HTTP tests: started with an environment, stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.integration.test_sqlite_processes import ROOT, free_port

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab"}


@dataclass
class Served:
    base: str
    backend: str
    proc: subprocess.Popen[bytes]
    stderr: str = ""
    """What the process wrote to stderr (its log, the audit lines included), once it has stopped."""

    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[who]}"}


def write_tokens(path: Path) -> Path:
    path.write_text("# reviewers\n" + "".join(f"{n}:{t}\n" for n, t in TOKENS.items()))
    return path


@contextlib.contextmanager
def serve(app: str, tmp: Path, env: Mapping[str, str] = {}, args: tuple[str, ...] = ()) -> Iterator[Served]:
    backend = f"sqlite:///{tmp / 'q.db'}"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeteer", "run", app, "--backend", backend, "--port", str(port), *args],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "exited")
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(base)
            time.sleep(0.05)
        served = Served(base, backend, proc)
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        with contextlib.suppress(NameError):
            served.stderr = err.decode()
        assert proc.returncode == 0, err.decode()
