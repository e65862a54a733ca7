"""bench/bench_kafka_stage.py still runs: a smoke run of a few hundred records per variant on the
session's broker, Kafka Streams included where it can run (its build is cached in
~/.cache/pipeteer/bench-kstreams/; about 20 s of Maven downloads on a fresh machine). The figures
are not checked; the output is: exactly N records per variant, none duplicated, byte for byte
what pipeteer's codec encodes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import kafka_stage_kstreams
from tests.integration.kafka.procs import ROOT
from tests.kafka_broker import Broker


@pytest.mark.timeout(600)
def test_the_kafka_stage_bench_runs(kafka_broker: Broker) -> None:
    variants = ["loop", "pipeteer"]
    # Kafka Streams where it can run: Apache Kafka (not noida-db) and a JDK with Maven
    if not kafka_broker.quirky and kafka_stage_kstreams.missing_tools() is None:
        variants += ["kstreams", "kstreams?batch.size=1048576"]
    r = subprocess.run(
        [sys.executable, "bench/bench_kafka_stage.py", "--bootstrap", kafka_broker.bootstrap, "--small", "300",
         "--large", "30", "--repeat", "1", "--idle-seconds", "0", "--variants", ",".join(variants)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = r.stdout.split("\nmedians of 1 rounds", 1)[1]
    for label, n in (("~200 B", 300), ("~10 KB", 30)):
        for variant in variants:
            assert any(line.split()[:4] == [*label.split(), str(n), variant] for line in table.splitlines()), table
    assert "every round of every variant gave exactly N records, none duplicated" in table, table
