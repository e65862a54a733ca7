"""`pipeteer describe --backend URL`: the topics that backend creates, or a clear refusal."""

from __future__ import annotations

import pytest

from pipeteer.cli import main
from tests.unit.compile.sample_app import APP_REF


def test_describe_a_backend_s_topics(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "describe",
                APP_REF,
                "--backend",
                "kafka://b:1?prefix=acme&topic_profile=production&partitions=8",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "prefix   acme\nprofile  production " in out
    assert "  acme.sample-correction.input [data] partitions=8 replication.factor=3 " in out
    assert "min.insync.replicas=2" in out


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--backend", "sqlite:///q.db"], "only a Kafka backend has topics"),
        (["--backend", "kafka://b:1", "--profile", "local"], "give one or the other"),
        (["--backend", "kafka://b:1?topic_profile=big"], "unknown topic profile 'big'"),
    ],
)
def test_describe_refuses_what_it_cannot_tell(
    extra: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["describe", APP_REF, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pipeteer: error: ") and said in err and len(err.splitlines()) == 1
