"""Schema files on disk: export, load, check against, and the CLI command functions."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeteer.cli.schemas import check_command, export_command
from pipeteer.codec import (
    SchemaStore,
    check_schemas,
    codec_for,
    dumps,
    export_schemas,
    load_schema,
    missing_schema_files,
    schema_for,
)
from pipeteer.errors import SchemaError
from tests.unit.codec import sample_types as st

NS = "tests.unit.codec.sample_types"
STATES = [st.Image, st.Corrected, st.Review]


def test_export_writes_one_sorted_pretty_file_per_type(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    paths = export_schemas(STATES, out)
    assert [p.name for p in paths] == [f"{NS}.Image.avsc", f"{NS}.Corrected.avsc", f"{NS}.Review.avsc"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    text = paths[0].read_text()
    assert text == json.dumps(schema_for(st.Image), indent=2, sort_keys=True) + "\n"
    assert text.startswith('{\n  "doc": "An image to correct.",\n  "fields": [')
    assert load_schema(paths[2]) == schema_for(st.Review)


def test_export_is_deterministic_across_processes(tmp_path: Path) -> None:
    export_schemas(STATES, tmp_path / "here")
    code = (
        "import sys\n"
        "from pipeteer.codec import export_schemas\n"
        "from tests.unit.codec import sample_types as st\n"
        "export_schemas([st.Image, st.Corrected, st.Review], sys.argv[1])\n"
    )
    for seed in ("0", "123"):
        target = tmp_path / f"seed{seed}"
        subprocess.run(
            [sys.executable, "-c", code, str(target)],
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=Path(__file__).resolve().parents[2],
        )
        for path in (tmp_path / "here").iterdir():
            assert (target / path.name).read_bytes() == path.read_bytes()


def test_export_leaves_unchanged_files_alone_and_other_files_in_place(tmp_path: Path) -> None:
    (first,) = export_schemas([st.Image], tmp_path)
    (tmp_path / "notes.txt").write_text("kept")
    before = first.stat().st_mtime_ns
    export_schemas([st.Image], tmp_path)
    assert first.stat().st_mtime_ns == before
    assert (tmp_path / "notes.txt").read_text() == "kept"


def test_export_of_unnamed_state_types(tmp_path: Path) -> None:
    paths = export_schemas([bytes, bytes | None, list[st.Image]], tmp_path)
    assert [p.name for p in paths] == ["bytes.avsc", "union-null-bytes.avsc", f"array-{NS}.Image.avsc"]
    assert load_schema(paths[1]) == ["null", "bytes"]


def test_load_schema_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.avsc"
    bad.write_text("{not json")
    with pytest.raises(SchemaError, match=r"cannot read the schema file .*bad\.avsc"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="cannot read the schema file"):
        load_schema(tmp_path / "missing.avsc")


def _write(directory: Path, schema: dict[str, object]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{schema['namespace']}.{schema['name']}.avsc").write_text(dumps(schema))


def test_check_schemas_reports_breaks_with_paths(tmp_path: Path) -> None:
    export_schemas(STATES, tmp_path)
    assert check_schemas(STATES, tmp_path, "full") == []

    old = schema_for(st.Image)
    assert isinstance(old, dict)
    old["fields"] = [{"name": "img", "type": "bytes"}, {"name": "size", "type": "long"}]  # size: no default
    _write(tmp_path, old)
    assert check_schemas(STATES, tmp_path, "backward") == []  # Image.name has a default
    found = check_schemas(STATES, tmp_path, "forward")
    assert [(i.type, i.path, i.kind) for i in found] == [
        (f"{NS}.Image", "Image.size", "reader_field_missing_default_value")
    ]


def test_check_schemas_finds_the_file_of_a_renamed_record_through_its_alias(tmp_path: Path) -> None:
    old = {"type": "record", "name": "OldName", "namespace": NS, "fields": [{"name": "n", "type": "string"}]}
    _write(tmp_path, old)
    found = check_schemas([st.Renamed], tmp_path, "backward")
    assert [(i.path, i.kind) for i in found] == [("Renamed.count", "type_mismatch")]
    assert missing_schema_files([st.Renamed, st.Image], tmp_path) == [f"{NS}.Image.avsc"]


def test_export_command_prints_paths(tmp_path: Path) -> None:
    out = io.StringIO()
    assert export_command(STATES, tmp_path, out=out) == 0
    assert out.getvalue().splitlines() == [
        f"wrote {tmp_path / f'{NS}.{n}.avsc'}" for n in ("Image", "Corrected", "Review")
    ]


def test_export_command_reports_schema_errors(tmp_path: Path) -> None:
    from tests.unit.codec.test_schema import HasSet

    err = io.StringIO()
    assert export_command([st.Image, HasSet], tmp_path, out=io.StringIO(), err=err) == 1
    assert "error: cannot derive an Avro schema for field 'tags'" in err.getvalue()


def test_check_command_exit_codes_and_report(tmp_path: Path) -> None:
    export_schemas([st.Image, st.Corrected, st.Linked], tmp_path)
    out = io.StringIO()
    assert check_command(STATES, tmp_path, "full", out=out) == 0
    text = out.getvalue()
    assert f"note: no {NS}.Review.avsc in {tmp_path} (a new state" in text
    assert f"note: {NS}.Linked.avsc in {tmp_path} is no state's schema any more" in text
    assert f"ok: 2 schema(s) full compatible with {tmp_path}" in text

    old = schema_for(st.Corrected)
    assert isinstance(old, dict)
    old["fields"] = [{"name": "img", "type": "bytes"}]  # `corrected` has no default in the new type
    _write(tmp_path, old)
    out = io.StringIO()
    assert check_command(STATES, tmp_path, "backward", out=out) == 1
    lines = out.getvalue().splitlines()
    assert f"{NS}.Corrected: 1 incompatible change (backward)" in lines
    assert any(line.startswith("  - Corrected.corrected: field added without a default") for line in lines)
    assert lines[-1] == "FAILED: 1 incompatible change(s) in 1 of 2 schema(s)"

    err = io.StringIO()
    assert check_command(STATES, tmp_path, "sideways", out=io.StringIO(), err=err) == 2
    assert "unknown mode 'sideways'" in err.getvalue()


def test_schema_store_loads_history_and_attaches_by_name(tmp_path: Path) -> None:
    export_schemas([st.Image, st.Corrected], tmp_path)
    old = {"type": "record", "name": "Image", "namespace": NS, "fields": [{"name": "img", "type": "bytes"}]}
    _write(tmp_path / "history" / "v1", old)
    store = SchemaStore.from_dir(tmp_path)
    codec = codec_for(st.Image)
    assert len(store.schemas_for(codec)) == 2
    store.attach(codec)
    assert len(codec.writer_schemas) >= 2
    assert SchemaStore.from_dir(tmp_path / "absent").schemas_for(codec) == []


def test_schema_store_non_strict_attach_returns_problems(tmp_path: Path) -> None:
    unreadable = {
        "type": "record",
        "name": "Corrected",
        "namespace": NS,
        "fields": [{"name": "x", "type": "long"}],
    }
    _write(tmp_path, unreadable)
    problems = SchemaStore.from_dir(tmp_path).attach(codec_for(st.Corrected), strict=False)
    assert len(problems) == 1 and "Corrected.img: field added without a default" in problems[0]
    with pytest.raises(SchemaError):
        SchemaStore.from_dir(tmp_path).attach(codec_for(st.Corrected))
