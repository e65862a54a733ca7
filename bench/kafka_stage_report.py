"""The table bench_kafka_stage.py prints: medians per size and variant, ratios, the output check."""

from __future__ import annotations

import statistics

TARGETS = ("targets for pipeteer (steady state, same run): >= 0.5 x loop at ~200 B, >= 0.8 x loop at ~10 KB, "
           ">= 2 x quix;\n  CPU / record <= 2 x loop; first out <= 1 s; tail <= 50 ms")


TUNED_KSTREAMS = "kstreams?batch.size=1048576"
"""The tuned Kafka Streams anchor of the issue's table (producer batch.size 1 MB)."""


def num(x: float, width: int, spec: str) -> str:
    """`x` formatted in `width` columns, or n/a when it is unknown (NaN)."""
    return f"{'n/a' if x != x else format(x, spec):>{width}}"


def ratio(x: float, base: dict[str, float], key: str) -> str:
    """`x` against `base[key]`, formatted as a ratio column (n/a without a base)."""
    of = base.get(key, float("nan"))
    return num(x / of if of else float("nan"), 6, ".2f")


def table(rows: list[tuple[str, int, dict[str, list[dict[str, float]]]]], repeat: int) -> None:
    """Medians per size and variant; the ratios compare steady (whole-run) rates and CPU."""
    names = [v for _, _, runs in rows for v in runs]
    width = max([30, *map(len, names)])
    tuned = TUNED_KSTREAMS if TUNED_KSTREAMS in names else next((v for v in names if v.startswith("kstreams?")), "")
    print(f"\nmedians of {repeat} rounds; x loop, x KS (against {tuned or 'no tuned kstreams'}) and x quix: "
          "steady rates;\nCPU: CPU-seconds per 100,000 records in steady state, of the stage process and the broker")
    print(f"{'records':8} {'n':>7} {'variant':{width}} {'steady/s':>9} {'warm/s':>9} {'e2e/s':>8} {'x loop':>6} "
          f"{'x KS':>6} {'x quix':>6} {'CPU s':>6} {'x loop':>6} {'broker':>6} {'first out':>9} {'tail':>7} {'RSS MB':>6}")
    for label, n, runs in rows:
        med = {v: {k: statistics.median(f[k] for f in fs) for k in fs[0]} for v, fs in runs.items()}
        loop, ks, quix = med.get("loop", {}), med.get(tuned, {}), med.get("quix", {})
        for variant, m in med.items():
            ratios = " ".join(ratio(m["steady"], base, "steady") for base in (loop, ks, quix))
            print(f"{label:8} {n:>7} {variant:{width}} {num(m['steady'], 9, ',.0f')} {num(m['warm'], 9, ',.0f')} "
                  f"{m['end_to_end']:>8,.0f} {ratios} {num(m['cpu_per_100k'], 6, '.2f')} {ratio(m['cpu_per_100k'], loop, 'cpu_per_100k')} "
                  f"{num(m['broker_per_100k'], 6, '.2f')} {m['first_out']:>8.2f}s {m['tail'] * 1000:>5.0f}ms "
                  f"{max(f['rss_mb'] for f in runs[variant]):>6.0f}")
    print(f"\n{TARGETS}")
    wrong = [f"  {label} {variant}: {f['output']:.0f} records, {f['duplicated']:.0f} duplicated, "
             f"{f['missing']:.0f} missing, {f['wrong']:.0f} not as expected"
             for label, n, runs in rows for variant, fs in runs.items() for f in fs
             if (f["output"], f["duplicated"], f["missing"], f["wrong"]) != (n, 0, 0, 0)]
    print("\noutput: " + ("\n".join(["NOT as expected in these rounds:", *wrong]) if wrong else
                          "every round of every variant gave exactly N records, none duplicated, each the bytes "
                          "pipeteer's codec encodes for it"))
