"""A record whose writer schema is unknown: one error per writer fingerprint, naming both schemas; then counted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pipeteer.codec import codec_for, unknown_writers
from pipeteer.errors import DecodeError


@dataclass
class Doc:
    text: str


@dataclass
class Other:
    n: int


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    unknown_writers.clear()
    yield
    unknown_writers.clear()


def test_logged_once_per_writer_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    reader = codec_for(Doc, namespace="app")
    writer = codec_for(Other, namespace="elsewhere")
    data = writer.encode(Other(1))
    with caplog.at_level(logging.ERROR, logger="pipeteer.codec"):
        for offset in range(5):
            with pytest.raises(DecodeError) as e:
                reader.decode(data, source=f"topic in/0/{offset}")
    message = str(e.value)
    assert "expected app.Doc" in message and writer.fingerprint.hex() in message
    assert "elsewhere.Other" in message  # the writer's name, when this process knows that schema
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "topic in/0/0" in errors[0].getMessage() and "app.Doc" in errors[0].getMessage()
    (seen,) = unknown_writers.snapshot()
    assert seen.writer_fingerprint == writer.fingerprint.hex()
    assert seen.reader == reader.describe()
    assert seen.records == 5


def test_a_record_read_again_counts_once() -> None:
    reader = codec_for(Doc, namespace="app")
    data = codec_for(Other, namespace="elsewhere").encode(Other(2))
    for source in ("in/0/7", "in/1/7", "in/0/7", "", "in/1/7"):  # retried, listed without a source
        with pytest.raises(DecodeError):
            reader.decode(data, source=source)
    assert [w.records for w in unknown_writers.snapshot()] == [2]


def test_two_writers_are_two_entries() -> None:
    reader = codec_for(Doc, namespace="app")
    for ns in ("one", "two"):
        with pytest.raises(DecodeError):
            reader.decode(codec_for(Other, namespace=ns).encode(Other(3)), source=f"{ns}/0/0")
    assert sorted(w.records for w in unknown_writers.snapshot()) == [1, 1]


def test_known_records_are_not_reported() -> None:
    reader = codec_for(Doc, namespace="app")
    assert reader.decode(reader.encode(Doc("ok"))) == Doc("ok")
    with pytest.raises(DecodeError):
        reader.decode(b"not avro at all", source="x")  # another problem: not an unknown writer
    assert unknown_writers.snapshot() == []
