"""The Kafka Streams peer of bench_kafka_stage.py (its `kstreams` variants), built once and cached.

`bench/kstreams/pom.xml` names the jars (kafka-streams, Avro, an SLF4J binding); Maven resolves
them into `~/.cache/pipeteer/bench-kstreams/HASH/` and `javac` compiles `bench/kstreams/src` beside
them, HASH being that of the pom and the sources, so an edit builds anew and an unchanged tree
is built once per machine. The stage then runs as `java -cp 'DIR/*:DIR/classes'
pipeteer.bench.UpperStage …`: its start-up counts in the end-to-end figures, as a Python
stage's import does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "kstreams"
MAIN = "pipeteer.bench.UpperStage"


def missing_tools() -> str | None:
    """What this machine lacks to build or run the peer (None: nothing)."""
    built = (jars_dir() / ".complete").is_file()
    lacking = [tool for tool in ("java", *(() if built else ("javac", "mvn"))) if shutil.which(tool) is None]
    return f"no {' or '.join(lacking)} on PATH" if lacking else None


def _sources() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*") if p.is_file() and "target" not in p.relative_to(SOURCE).parts)


def jars_dir() -> Path:
    """Where this tree's build is cached: keyed by the pom and the sources."""
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(str(path.relative_to(SOURCE)).encode() + b"\0" + path.read_bytes() + b"\0")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pipeteer" / "bench-kstreams"
    return cache / digest.hexdigest()[:16]


def _compile(into: Path) -> None:
    classes = into / "classes"
    java = [str(p) for p in _sources() if p.suffix == ".java"]
    done = subprocess.run(["javac", "--release", "17", "-nowarn", "-d", str(classes), "-cp", f"{into}/*", *java],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"javac failed on {SOURCE} (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    shutil.copytree(SOURCE / "src" / "main" / "resources", classes, dirs_exist_ok=True)


def build() -> Path:
    """The directory of the peer's jars and classes, built on first use (a few minutes' download)."""
    from tests.kafka_broker import resolve_maven_jars

    return resolve_maven_jars(SOURCE / "pom.xml", jars_dir(), then=_compile)


def built_or_why_not() -> Path | str:
    """The build (made now if need be, saying so), or why there is none."""
    lacking = missing_tools()
    if lacking:
        return lacking
    if not (jars_dir() / ".complete").is_file():
        print(f"kstreams: building {SOURCE} into {jars_dir()} (once)", flush=True)
    try:
        return build()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return f"its build failed: {e}"


def command(jars: Path, bootstrap: str, in_topic: str, out_topic: str, application_id: str,
            options: dict[str, str], schemas: tuple[Any, Any]) -> list[str]:
    """The stage process: `options` are Kafka Streams (or its clients') settings, `schemas` the
    Avro schemas (as JSON values) of the input and output records."""
    return ["java", "-cp", f"{jars}/*:{jars}/classes", MAIN, bootstrap, in_topic, out_topic, application_id,
            *(json.dumps(s) for s in schemas), *(f"{k}={v}" for k, v in options.items())]
