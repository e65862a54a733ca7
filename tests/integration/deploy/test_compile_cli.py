"""`pipeteer describe` and `pipeteer compile` through their argparse commands, writing real files."""

from __future__ import annotations

import argparse
import filecmp
import re
from pathlib import Path

import pytest

from pipeteer.cli.deploy import register
from pipeteer.compile import build_topology, render
from tests.unit.compile.sample_app import APP_REF, app

GOLDEN = Path(__file__).resolve().parents[2] / "unit" / "compile" / "golden"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pipeteer")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def run(*argv: str) -> int:
    args = parse(*argv)
    code: int = args.func(args)
    return code


def test_describe_prints_the_golden_text_and_diagram(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("describe", APP_REF) == 0
    assert capsys.readouterr().out == (GOLDEN / "sample.txt").read_text()
    assert run("describe", APP_REF, "--mermaid") == 0
    assert capsys.readouterr().out == (GOLDEN / "sample.mmd").read_text()


def test_compile_is_deterministic_and_checkable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert run("compile", APP_REF, "-o", str(first)) == 0
    listed = {Path(line).relative_to(first).as_posix() for line in capsys.readouterr().out.split()}
    assert listed >= set(render(build_topology(app, app_ref=APP_REF)))
    assert run("compile", APP_REF, "-o", str(second)) == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(first, second, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors and len(match) == len(files)
    # no timestamps or machine-specific paths in the output
    for f in files:
        text = (first / f).read_text()
        assert not re.search(r"20\d\d-\d\d-\d\dT\d\d:\d\d", text), f
        assert str(tmp_path) not in text, f
    # rewriting unchanged content does not touch the files
    before = {f: (first / f).stat().st_mtime_ns for f in files}
    assert run("compile", APP_REF, "-o", str(first)) == 0
    assert {f: (first / f).stat().st_mtime_ns for f in files} == before
    capsys.readouterr()
    # --check: clean, then drift after a hand edit
    assert run("compile", APP_REF, "-o", str(first), "--check") == 0
    (first / "topics.yaml").write_text((first / "topics.yaml").read_text().replace("compact", "delete"))
    assert run("compile", APP_REF, "-o", str(first), "--check") == 1
    assert "out of date" in capsys.readouterr().err


def test_compile_with_a_config_and_profile(tmp_path: Path) -> None:
    config = tmp_path / "topology.yaml"
    config.write_text(
        "workflow: {partitions: 4}\n"
        "topics: {stage.validation.dlq: {retention.ms: 1000}}\n"
        "stages: {auto-correct: {replicas: 3}}\n"
        "profiles: {local: {replication.factor: 1, min.insync.replicas: 1}}\n"
    )
    out = tmp_path / "out"
    assert (
        run(
            "compile",
            APP_REF,
            "-o",
            str(out),
            "--config",
            str(config),
            "--profile",
            "local",
            "--set",
            "max.message.bytes=2097152",
        )
        == 0
    )
    import yaml

    topics = {t["short"]: t for t in yaml.safe_load((out / "topics.yaml").read_text())["topics"]}
    assert topics["stage.validation.dlq"]["config"]["retention.ms"] == "1000"
    assert {t["partitions"] for t in topics.values() if t["kind"] != "schemas"} == {4}
    assert topics["_schemas"]["partitions"] == 1  # (read whole by every process: one partition, always)
    assert {t["replication.factor"] for t in topics.values()} == {1}
    assert {t["config"]["max.message.bytes"] for t in topics.values()} == {"2097152"}
    values = yaml.safe_load((out / "helm" / "values.yaml").read_text())
    assert (
        values["stages"]["auto-correct"]["replicas"] == 3
        and values["stages"]["auto-correct"]["maxReplicas"] == 4
    )


def test_schemas_are_exported_with_the_codec(tmp_path: Path) -> None:
    import pipeteer.codec

    if not hasattr(pipeteer.codec, "export_schemas"):
        pytest.skip("pipeteer.codec.export_schemas has not landed in this branch yet")
    assert run("compile", APP_REF, "-o", str(tmp_path)) == 0
    schemas = sorted(p.name for p in (tmp_path / "schemas").glob("*.avsc"))
    assert len(schemas) == len(app.workflow.state_types())
