"""Processing times handed to prometheus-client in batches give the very samples `observe` gives."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from pipeteer.runtime.metrics import LATENCY_BUCKETS, observe_many


def samples(h: Histogram) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for s in h.collect()[0].samples if not s.name.endswith("_created")]


def test_observe_many_equals_observe_one_by_one() -> None:
    rnd = random.Random(7)
    amounts = [rnd.choice([0.0, *LATENCY_BUCKETS]) for _ in range(200)]  # on the bounds: `le` is inclusive
    amounts += [rnd.expovariate(5) for _ in range(500)] + [float("nan"), 1e9, -1.0]
    one, many = (Histogram("t", "doc", ["stage"], buckets=LATENCY_BUCKETS, registry=CollectorRegistry()) for _ in range(2))
    for a in amounts:
        one.labels("s").observe(a)
    observe_many(many.labels("s"), amounts[:300])
    observe_many(many.labels("s"), amounts[300:])
    expected, got = samples(one), samples(many)
    # the sums differ only by the NaN both added, and by float rounding of the order of addition
    assert [s for s in got if not s[0].endswith("_sum")] == [s for s in expected if not s[0].endswith("_sum")]
    (_, _, sum_one), (_, _, sum_many) = (next(s for s in x if s[0].endswith("_sum")) for x in (expected, got))
    assert sum_one != sum_one and sum_many != sum_many  # NaN in both
    finite = [a for a in amounts if a == a]
    h = Histogram("f", "doc", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    observe_many(h, finite)
    assert abs(next(s.value for s in h.collect()[0].samples if s.name == "f_sum") - sum(finite)) < 1e-6
