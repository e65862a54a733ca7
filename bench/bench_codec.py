"""Codec throughput: pipeteer's encode+decode beside plain fastavro on the same records, same run.

    python bench/bench_codec.py [--seconds 0.5] [--repeat 5]

For each case, one round trip = encode a value to bytes and decode the bytes back.
pipeteer works on the real Python values (dataclass instances, single-object framing,
type checks); the baseline is fastavro's schemaless_writer / schemaless_reader with
the same parsed schema on the same records as plain dicts (no framing, no checks, no
objects). Printed: records/s for both and their ratio (target: >= 0.8).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from fastavro import schemaless_reader, schemaless_writer

from pipeteer.codec import codec_for

try:  # the example topology's states, once it exists
    from topologies.perspective_correction.states import (  # type: ignore[import-not-found]
        AutoCorrected,
        Input,
        ManualInput,
        Output,
    )
except ImportError:  # the seed's states, as the example declares them

    @dataclass
    class Input:  # type: ignore[no-redef]
        img: bytes

    @dataclass
    class AutoCorrected:  # type: ignore[no-redef]
        img: bytes
        corrected: bytes

    @dataclass
    class ManualInput:  # type: ignore[no-redef]
        img: bytes

    @dataclass
    class Output:  # type: ignore[no-redef]
        img: bytes
        corrected: bytes


class Verdict(Enum):
    OK = 1
    KO = 2


@dataclass
class Reviewer:
    name: str
    email: str | None = None


@dataclass
class Review:
    """A richer small record: strings, optional, enum, nested record, list, map."""

    id: str
    score: float
    verdict: Verdict
    reviewer: Reviewer
    attempts: int = 0
    tags: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


IMAGE = os.urandom(200 * 1024)
SMALL = os.urandom(64)


def cases() -> list[tuple[str, Any]]:
    return [
        ("Input 200KB", Input(IMAGE)),
        ("AutoCorrected 2x200KB", AutoCorrected(IMAGE, IMAGE[::-1])),
        ("ManualInput 200KB", ManualInput(IMAGE)),
        ("Output 2x200KB", Output(IMAGE, IMAGE[::-1])),
        ("Input small", Input(SMALL)),
        ("AutoCorrected small", AutoCorrected(SMALL, SMALL[::-1])),
        ("Output small", Output(SMALL, SMALL[::-1])),
        (
            "Review small (nested)",
            Review(
                "item-42", 0.93, Verdict.OK, Reviewer("ana", "ana@example.org"), 2, ["a", "b"], {"k": "v"}
            ),
        ),
    ]


def as_dict(value: Any) -> Any:
    """The same record as fastavro's plain dicts (enums as symbols)."""
    if isinstance(value, Enum):
        return value.name
    if hasattr(value, "__dataclass_fields__"):
        return {k: as_dict(v) for k, v in vars(value).items()}
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    if isinstance(value, dict):
        return {k: as_dict(v) for k, v in value.items()}
    return value


def rate(fn: Callable[[], None], seconds: float) -> float:
    """Round trips per second of CPU time (process_time: other processes on a shared machine
    take wall time, not this process's CPU time)."""
    n, start = 0, time.process_time()
    while True:
        for _ in range(20):
            fn()
        n += 20
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="CPU time per measurement")
    parser.add_argument(
        "--repeat", type=int, default=10, help="measurements per side, interleaved (best is kept)"
    )
    args = parser.parse_args()

    rows = []
    for name, value in cases():
        codec = codec_for(type(value))
        parsed = codec.current.parsed
        record = as_dict(value)
        if codec.decode(codec.encode(value)) != value:
            raise SystemExit(f"{name}: pipeteer round trip changed the value")

        def ours(codec: Any = codec, value: Any = value) -> None:
            codec.decode(codec.encode(value))

        def plain(parsed: Any = parsed, record: Any = record) -> None:
            buf = io.BytesIO()
            schemaless_writer(buf, parsed, record)
            schemaless_reader(io.BytesIO(buf.getvalue()), parsed, None)

        best_ours = best_plain = 0.0
        for _ in range(args.repeat):  # interleaved, so both sides see the same machine load
            best_ours = max(best_ours, rate(ours, args.seconds))
            best_plain = max(best_plain, rate(plain, args.seconds))
        rows.append((name, best_ours, best_plain, best_ours / best_plain))

    print(f"{'case':<24} {'pipeteer rec/s':>15} {'fastavro rec/s':>15} {'ratio':>6}")
    for name, ours_rate, plain_rate, ratio in rows:
        print(f"{name:<24} {ours_rate:>15,.0f} {plain_rate:>15,.0f} {ratio:>6.2f}")
    worst = min(r[3] for r in rows)
    print(f"worst ratio {worst:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
