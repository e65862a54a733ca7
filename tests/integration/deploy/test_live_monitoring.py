"""The compiled dashboard and alerts against live stages: the example's three stages as separate
`pipeteer run` processes, Debian's Prometheus scraping them (loopback only), traffic through them
(photos pushed, a person approving, rejecting and correcting over HTTP), then every dashboard and
alert expression evaluated over Prometheus' HTTP API: none invalid, none empty where traffic
flowed (what a backend cannot measure is declared by the dashboard, `BACKEND_METRICS`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeteer.compile import build_topology, dashboard
from pipeteer.compile.alerts import rules
from pipeteer.compile.dashboard import BACKEND_METRICS, ON_EVENT, expressions, families, substitute
from pipeteer.compile.manifests import dump_yaml
from tests.integration.deploy.live import (
    NAMESPACE,
    Prometheus,
    Stages,
    finite,
    prometheus_scraping,
    push,
    review,
    tasks,
    wait_for,
)
from topologies.perspective_correction import app
from topologies.perspective_correction.samples import Sample, make_samples

TOPO = build_topology(app, app_ref="topologies.perspective_correction:app")
WF = TOPO.workflow
VARIABLES = {"namespace": NAMESPACE, "workflow": WF, "stage": ".*"}


def check_dashboard(prom: Prometheus, backend: str, start: float) -> None:
    end = time.time()
    model = dashboard(TOPO)
    filled = BACKEND_METRICS[backend]
    checked = 0
    for title, expr in expressions(model):
        query = substitute(expr, VARIABLES, rate_interval="15s")
        values = prom.values(query, start, end)  # fails on an invalid expression
        if families(expr) <= filled and not families(expr) & ON_EVENT:  # (no unknown writer schema here)
            assert finite(values), f"{title}: no data on {backend} although traffic flowed: {query}"
            checked += 1
    assert checked >= len(TOPO.stages) * 5
    # the variables' queries (Grafana's label_values) find this deployment
    series = prom.api("series", **{"match[]": f'pipeteer_stage_ready{{workflow="{WF}"}}'})
    assert {s["namespace"] for s in series} == {NAMESPACE}
    assert {s["stage"] for s in series} == set(TOPO.stage_names())
    # another namespace or workflow selects nothing
    other = substitute(expressions(model)[0][1], {**VARIABLES, "namespace": "elsewhere"}, rate_interval="15s")
    assert prom.values(other, start, end) == []


def check_alert_expressions(prom: Prometheus) -> None:
    for rule in rules(TOPO)["groups"][0]["rules"]:
        prom.api("query", query=rule["expr"])  # valid PromQL
    groups = prom.api("rules")["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert len(loaded) == len(rules(TOPO)["groups"][0]["rules"])
    wait_for("every rule evaluated", lambda: all(r["health"] == "ok" for g in prom.api("rules")["groups"]
                                                  for r in g["rules"]))
    # healthy stages: nothing fires
    assert prom.api("query", query=f'ALERTS{{workflow="{WF}", alertname="PipeteerStageDown"}}')["result"] == []


@contextlib.contextmanager
def monitored(prometheus: Path, backend: str, tmp: Path, samples: dict[str, Sample], approve: int,
              env: dict[str, str] | None = None) -> Iterator[tuple[Prometheus, Stages]]:
    """The three stages in their own processes, Prometheus scraping them, `samples` pushed and every task
    completed by a person; then the dashboard and alert expressions checked, and the rest is the test's."""
    stages = Stages(backend, tmp, env=env or {})
    rule_file = tmp / "rules.yaml"
    rule_file.write_text(dump_yaml(rules(TOPO)))
    try:
        for s in TOPO.stage_names():
            stages.start(s)
        with prometheus_scraping(prometheus, stages, rule_file, tmp) as prom:
            start = time.time()
            wait_for("the stages scraped", lambda: prom.value(f'count(pipeteer_stage_ready{{workflow="{WF}"}} == 1)') == 3)
            push(backend, samples)
            completed = review(stages, samples, approve=approve)
            # every completion scraped, under the name of the person who made it
            completions = f'sum(pipeteer_reviewer_completions_total{{workflow="{WF}", reviewer="alice"}})'
            wait_for("every completion scraped", lambda: prom.value(completions) == completed)
            wait_for("a few more scrapes", lambda: time.time() > start + 20 or None, timeout=60)
            check_dashboard(prom, backend.split(":", 1)[0], start)
            check_alert_expressions(prom)
            yield prom, stages
    finally:
        stages.stop_all()


def test_dashboard_and_alerts_on_sqlite(prometheus: Path, tmp_path: Path) -> None:
    samples = {f"p{i:02d}": s for i, s in enumerate(make_samples(12, seed=3, hard_ratio=0.25))}
    with monitored(prometheus, f"sqlite:///{tmp_path / 'queues.db'}", tmp_path, samples, approve=4) as (prom, stages):
        # a stage that stops is alerted on (pending until its `for:` has passed)
        stages.running["manual-correct"].stop()
        down = f'ALERTS{{alertname="PipeteerStageDown", workflow="{WF}", stage="manual-correct"}}'
        wait_for("PipeteerStageDown pending", lambda: prom.api("query", query=down)["result"])


@pytest.mark.parametrize("backend", sorted(BACKEND_METRICS))
def test_every_backend_declares_what_it_measures(backend: str) -> None:
    assert {"pipeteer_items_consumed_total", "pipeteer_pending_items"} <= BACKEND_METRICS[backend]


def test_dashboard_alerts_and_a_stopped_stage_lag_on_kafka(
    prometheus: Path, tmp_path: Path, kafka_bootstrap: str, kafka_prefix: str
) -> None:
    backend = f"kafka://{kafka_bootstrap}?prefix={kafka_prefix}&partitions=2"
    samples = {f"k{i:02d}": s for i, s in enumerate(make_samples(8, seed=5, hard_ratio=0.25))}
    later = {f"late{i:02d}": s for i, s in enumerate(make_samples(6, seed=50, hard_ratio=0.0))}
    with monitored(prometheus, backend, tmp_path, samples, approve=3,
                   env={"PIPETEER_COMMIT_INTERVAL_MS": "100"}) as (prom, stages):
        # every partition of every stage has a lag series, from the start
        lag = prom.api("query", query=f'pipeteer_consumer_lag{{workflow="{WF}"}}')["result"]
        assert {(r["metric"]["stage"], r["metric"]["partition"]) for r in lag} == {
            (s, str(p)) for s in TOPO.stage_names() for p in range(2)
        }
        # a stopped stage: its backlog shows as its consumer lag (measured by the other stages' services)
        stages.running["validation"].stop()
        manual = stages.running["manual-correct"]
        before = len(tasks(manual, "manual-correct"))
        push(backend, later)
        consumed = f'sum(pipeteer_items_consumed_total{{workflow="{WF}", stage="auto-correct"}})'
        wait_for("the later photos corrected", lambda: (prom.value(consumed) or 0) >= len(samples) + len(later))
        to_validation = len(later) - (len(tasks(manual, "manual-correct")) - before)
        backlog = f'sum(max by (partition) (pipeteer_consumer_lag{{workflow="{WF}", stage="validation"}}))'
        # (at least: the offsets of transaction markers count too, as in every Kafka lag)
        shown = wait_for("the validation backlog in its lag",
                         lambda: (v := prom.value(backlog)) is not None and v >= to_validation and v)
        assert to_validation > 0 and shown >= to_validation
