"""`pipeteer schemas check`: which modes each changed state satisfies, and in which order to roll the stages.

Release 1 is `tests.apps.chain` (square: Raw -> Squared, negate: Squared -> Signed, sum: Signed ->
Result, the output); release 2 is `tests.unit.cli.chain_v2`. The schema files of release 1 are
written to a temporary directory under release 2's namespace, as `pipeteer schemas export` of
release 1 would have written them had the module kept its name.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pipeteer.cli import main
from pipeteer.cli.schemas import check_command
from pipeteer.codec import dumps, export_schemas
from tests.apps import chain
from tests.unit.cli import chain_v2

APP = "tests.unit.cli.chain_v2:workflow"
NS = chain_v2.NAMESPACE


@pytest.fixture
def release1(tmp_path: Path) -> Path:
    export_schemas(chain.workflow.state_types(), tmp_path, namespace=NS)
    return tmp_path


def check(against: Path, mode: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["schemas", "check", APP, "--against", str(against), "--mode", mode])
    return code, capsys.readouterr().out.splitlines()


def block(lines: list[str], name: str) -> list[str]:
    """The lines about the state `name`: its header and the indented lines below it."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{NS}.{name}: "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


def test_roll_order_of_each_changed_state_and_of_the_release(
    release1: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = check(release1, "backward", capsys)
    assert code == 1  # Result breaks backward
    assert not any(line.startswith(f"{NS}.Raw") for line in lines)  # unchanged: nothing said
    assert block(lines, "Squared") == [
        f"{NS}.Squared: changed, backward compatible",
        "  satisfies: backward, forward and full",
        "  roll order: any (old and new versions read each other's records)",
    ]
    signed = block(lines, "Signed")
    assert signed[0] == f"{NS}.Signed: changed, backward compatible"
    assert signed[1].startswith("  - Signed.neg: type widened from long to double: long cannot read double")
    assert signed[1].endswith("[forward]")
    assert signed[2:] == [
        "  satisfies: backward only (not forward, full)",
        "  roll order (readers first): 1. sum (reads Signed)  2. negate (writes Signed)",
    ]
    result = block(lines, "Result")
    assert result[0] == f"{NS}.Result: 1 incompatible change (backward)"
    assert result[1].startswith("  - Result.label: field added without a default (string)")
    assert result[2] == "  satisfies: forward only (not backward, full)"
    assert result[3].startswith(
        "  roll order (writers first; roll the readers once no record written before is left"
    )
    assert result[3].endswith(": 1. sum (writes Result)  2. scripts pulling the output (reads Result)")
    assert (
        "release roll order: 1. sum (reads Signed; writes Result)  2. negate (writes Signed)  "
        "3. scripts pulling the output (reads Result)"
    ) in lines
    assert lines[-1] == "FAILED: 1 incompatible change(s) in 1 of 4 schema(s)"


def test_exit_codes_follow_the_mode(release1: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Result unchanged: the release is Squared (full) and Signed (backward only)
    export_schemas([chain_v2.Result], release1)
    code, lines = check(release1, "backward", capsys)
    assert code == 0
    assert lines[-1] == f"ok: 4 schema(s) backward compatible with {release1} (2 changed)"
    assert not any(line.startswith("release roll order") for line in lines)  # one change constrains it
    code, lines = check(release1, "forward", capsys)
    assert code == 1
    assert f"{NS}.Signed: 1 incompatible change (forward)" in lines
    assert lines[-1] == "FAILED: 1 incompatible change(s) in 1 of 4 schema(s)"
    code, _ = check(release1, "full", capsys)
    assert code == 1
    with pytest.raises(SystemExit) as info:
        main(["schemas", "check", APP, "--against", str(release1), "--mode", "sideways"])
    assert info.value.code == 2


def test_a_change_no_order_can_roll(release1: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = release1 / f"{NS}.Squared.avsc"
    old = json.loads(path.read_text())
    old["fields"][1]["type"] = "string"  # Squared.sq was a string: long and string read neither way
    path.write_text(dumps(old))
    code, lines = check(release1, "forward", capsys)
    assert code == 1
    squared = block(lines, "Squared")
    assert squared[0] == f"{NS}.Squared: 1 incompatible change (forward)"
    assert squared[1].startswith("  - Squared.sq: type changed from string to long: long cannot read string")
    assert "  satisfies: none (not backward, forward or full)" in squared
    assert squared[-1].startswith("  roll order: none works (the new version cannot read the old records")


def test_without_the_workflow_the_order_is_said_in_words(release1: Path) -> None:
    out = io.StringIO()
    assert check_command([chain_v2.Signed], release1, "backward", out=out) == 0
    lines = out.getvalue().splitlines()
    assert "  roll order (readers first): the stages that read Signed, then those that write it" in lines
    assert lines[-1] == f"ok: 1 schema(s) backward compatible with {release1} (1 changed)"
    out = io.StringIO()
    assert check_command([chain_v2.Result], release1, "forward", out=out) == 0
    assert "the stages that write Result, then those that read it" in out.getvalue()


def test_an_unchanged_release_says_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export_schemas(chain_v2.workflow.state_types(), tmp_path)
    code, lines = check(tmp_path, "full", capsys)
    assert code == 0 and lines == [f"ok: 4 schema(s) full compatible with {tmp_path}"]
