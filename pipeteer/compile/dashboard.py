"""A Grafana dashboard over the runtime's Prometheus metrics: one row per stage, scoped per deployment.

Every query is scoped by the dashboard's variables: `namespace` (where the chart deployed it; the
scraper adds that label), `workflow` (every `pipeteer_` metric carries it) and `stage`, so two
releases, namespaces or workflows with a stage of the same name are never summed together.

A stage's row shows throughput; pending items (a web stage's tasks waiting for people) and the
oldest one's age, each on its own axis and unit; processing time p50/p95/p99; consumer lag per
partition; dead letters, failed items and rebalances as counts per interval; commit latency; and
for web stages, completions by reviewer. What a backend cannot measure (`BACKEND_METRICS`) is
said in the panel's description and in its "no data" text instead of being drawn as 0.

Queries use only the metric names in `METRICS` (what `pipeteer.runtime.metrics` exports) and a
`datasource` variable, so the dashboard imports into any Grafana with a Prometheus datasource.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeteer.compile.topology import StageSpec, Topology
from pipeteer.spec import names

METRICS = {
    "pipeteer_items_consumed_total": "counter",
    "pipeteer_items_produced_total": "counter",
    "pipeteer_items_failed_total": "counter",
    "pipeteer_dead_letters_total": "counter",
    "pipeteer_rebalances_total": "counter",
    "pipeteer_processing_seconds": "histogram",
    "pipeteer_commit_seconds": "histogram",
    "pipeteer_commit_failures_total": "counter",
    "pipeteer_pending_items": "gauge",
    "pipeteer_oldest_pending_age_seconds": "gauge",
    "pipeteer_consumer_lag": "gauge",
    "pipeteer_reviewer_completions_total": "counter",
    "pipeteer_review_decisions_total": "counter",
    "pipeteer_stage_ready": "gauge",
    "pipeteer_unknown_writer_records_total": "counter",
    "pipeteer_held_items": "gauge",
}
"""Metric families the runtime exports, all labelled by `workflow` and `stage` (lag also by
`partition`, completions by `reviewer`)."""

KAFKA_ONLY = frozenset({
    "pipeteer_rebalances_total",
    "pipeteer_commit_seconds",
    "pipeteer_commit_failures_total",
    "pipeteer_consumer_lag",
})
"""Families only the Kafka backend measures: consumer groups (rebalances, lag) and transactions
(commit latency and failures). The oldest pending age and dead letters are measured on every backend."""

ON_EVENT = frozenset({"pipeteer_unknown_writer_records_total", "pipeteer_review_decisions_total"})
"""Families whose series appear only once their event happened (a label names what happened: the
writer schema's fingerprint), so a panel of them shows "none" until then rather than no data."""

BACKEND_METRICS: Mapping[str, frozenset[str]] = {
    "kafka": frozenset(METRICS),
    "sqlite": frozenset(METRICS) - KAFKA_ONLY,
    "memory": frozenset(METRICS) - KAFKA_ONLY,
}
"""Which metric families each backend fills (the rest have no series there)."""

VARIABLES = ("namespace", "workflow", "stage")
RATE = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_WIDTH = 24
_PANEL_W = 6
_PANEL_H = 8


def selector(stage: str, **extra: str) -> str:
    """The label matchers of one stage's series, scoped by the dashboard's variables.

    >>> selector("validation")
    '{namespace=~"$namespace", workflow=~"$workflow", stage=~"$stage", stage="validation"}'
    """
    matchers = [f'{v}=~"${v}"' for v in VARIABLES] + [f'stage="{stage}"']
    matchers += [f'{k}="{v}"' for k, v in extra.items()]
    return "{" + ", ".join(matchers) + "}"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str
    kind: str = "timeseries"


def families(expr: str) -> set[str]:
    """The metric families an expression reads (histogram sample names map to their family)."""
    found = set()
    for name in _NAME.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in METRICS:
                name = name[: -len(suffix)]
        found.add(name)
    return found


def filled_by(exprs: list[str]) -> list[str]:
    """The backends that give every one of these expressions data."""
    used = set().union(*(families(e) for e in exprs))
    return [b for b, m in BACKEND_METRICS.items() if used <= m]


def _quantiles(metric: str, sel: str, qs: tuple[float, ...]) -> tuple[Query, ...]:
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (namespace, le) (rate({metric}_bucket{sel}[{RATE}])))",
            f"{{{{namespace}}}} p{round(q * 100)}",
        )
        for q in qs
    )


def stage_panels(s: StageSpec) -> list[PanelSpec]:
    """What one stage's row shows."""
    sel = selector(s.name)
    by = "sum by (namespace)"
    waiting = "Tasks waiting for people" if s.web else "Pending items"
    oldest = "Oldest task waiting" if s.web else "Oldest pending item"
    panels = [
        PanelSpec("Throughput", "ops", (
            Query(f"{by} (rate(pipeteer_items_consumed_total{sel}[{RATE}]))", "{{namespace}} consumed"),
            Query(f"{by} (rate(pipeteer_items_produced_total{sel}[{RATE}]))", "{{namespace}} produced"),
        ), "Items per second the stage finished reading and emitted."),
        PanelSpec(waiting, "none", (
            Query(f"{by} (pipeteer_pending_items{sel})", "{{namespace}} pending"),
        ), "Items in the stage's queue, not yet finished" + (" (people's tasks)." if s.web else ".")),
        PanelSpec(oldest, "s", (
            Query(f"max by (namespace) (pipeteer_oldest_pending_age_seconds{sel})", "{{namespace}} oldest"),
        ), "Age of the oldest item still pending in the stage."),
        PanelSpec("Processing time", "s", _quantiles("pipeteer_processing_seconds", sel, (0.5, 0.95, 0.99)),
                  "From the stage reading an item to emitting its next state."),
        PanelSpec("Consumer lag", "none", (
            Query(f"max by (namespace, partition) (pipeteer_consumer_lag{sel})", "{{namespace}} partition {{partition}}"),
        ), "Records of the stage's input topic its consumer group has not committed, per partition "
           "(high watermark minus committed offset)."),
        PanelSpec("Dead letters", "none", (
            Query(f"{by} (increase(pipeteer_dead_letters_total{sel}[{RATE}]))", "{{namespace}} dead letters"),
        ), "Items sent to the stage's dead-letter topic, per interval."),
        PanelSpec("Records of an unknown schema", "none", (
            Query(f"sum by (namespace, writer_fingerprint) "
                  f"(increase(pipeteer_unknown_writer_records_total{sel}[{RATE}]))",
                  "{{namespace}} writer {{writer_fingerprint}}"),
        ), "Records the stage could not read, per interval: their writer schema is neither the stage's "
           "nor one it can read (they are held, not dead-lettered; /readyz names both schemas)."),
        PanelSpec("Held items", "none", (
            Query(f"max by (namespace) (pipeteer_held_items{sel})", "{{namespace}} held"),
        ), "Pending items the stage keeps but cannot read: another version's records during a rollout. "
           "They wait for a version that can read them; none should stay once the rollout is done."),
        PanelSpec("Failed items", "none", (
            Query(f"{by} (increase(pipeteer_items_failed_total{sel}[{RATE}]))", "{{namespace}} failures"),
        ), "Exceptions of the stage's code, per interval (each is retried, then dead-lettered)."),
        PanelSpec("Rebalances", "none", (
            Query(f"{by} (increase(pipeteer_rebalances_total{sel}[{RATE}]))", "{{namespace}} rebalances"),
        ), "Partition assignments of the stage's consumer group, per interval."),
        PanelSpec("Commit latency", "s", _quantiles("pipeteer_commit_seconds", sel, (0.5, 0.99)),
                  "Duration of the stage's transaction commits."),
        PanelSpec("Commit failures", "none", (
            Query(f"{by} (increase(pipeteer_commit_failures_total{sel}[{RATE}]))", "{{namespace}} failed commits"),
        ), "Transactions that failed to commit, per interval (their work is redone)."),
    ]
    if s.web:
        panels.append(PanelSpec("Completions by reviewer", "none", (
            Query(f"sum by (namespace, reviewer) (increase(pipeteer_reviewer_completions_total{sel}[{RATE}]))",
                  "{{namespace}} {{reviewer}}"),
        ), "Tasks each person completed, per interval."))
        panels.append(PanelSpec("Review decisions by reason", "none", (
            Query(f"sum by (decision, reason) (increase(pipeteer_review_decisions_total{sel}[{RATE}]))",
                  "{{decision}} {{reason}}"),
        ), "Decisions made in the review console, per interval: approved, rejected (by the reason given, "
           "'other' for a reviewer's own words), submitted, undone."))
    return panels


def _panel(pid: int, s: StageSpec, spec: PanelSpec, x: int, y: int) -> dict[str, Any]:
    exprs = [q.expr for q in spec.queries]
    backends = filled_by(exprs)
    description = spec.description
    defaults: dict[str, Any] = {"unit": spec.unit}
    if len(backends) < len(BACKEND_METRICS):
        only = " and ".join(backends)
        description += f" Measured on {only} only: other backends export no such series."
        defaults["noValue"] = f"not measured on this backend ({only} only)"
    elif families(" ".join(exprs)) <= ON_EVENT:
        defaults["noValue"] = "none"
    if spec.unit == "none":
        defaults["decimals"] = 0
    return {
        "id": pid,
        "type": spec.kind,
        "title": f"{s.name}: {spec.title}",
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": _PANEL_H, "w": _PANEL_W, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"datasource": DATASOURCE, "expr": q.expr, "legendFormat": q.legend, "refId": chr(ord("A") + i),
             "range": True}
            for i, q in enumerate(spec.queries)
        ],
    }


def _variable(name: str, label: str, query: str, current: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": current is None,
        "allValue": ".*",
        "current": {"text": current, "value": current} if current else {"text": "All", "value": "$__all"},
        "hide": 0,
        "sort": 1,
        "regex": "",
        "options": [],
    }


def _templating(topology: Topology) -> list[dict[str, Any]]:
    wf = topology.workflow  # the default; the variable lists every workflow Prometheus knows
    return [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        },
        # in dependency order: the namespaces running the chosen workflow, then their stages
        _variable("workflow", "Workflow", "label_values(pipeteer_stage_ready, workflow)", wf),
        _variable("namespace", "Namespace", 'label_values(pipeteer_stage_ready{workflow=~"$workflow"}, namespace)', None),
        _variable("stage", "Stage",
                  'label_values(pipeteer_stage_ready{namespace=~"$namespace", workflow=~"$workflow"}, stage)', None),
    ]


def dashboard(topology: Topology) -> dict[str, Any]:
    """The Grafana dashboard JSON model for a topology (import it, or provision it from a file)."""
    panels: list[dict[str, Any]] = []
    y = 0
    pid = 1
    per_line = _WIDTH // _PANEL_W
    for s in topology.stages:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": f"{s.name} ({'people' if s.web else 'automatic'})",
                "collapsed": False,
                "gridPos": {"h": 1, "w": _WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid += 1
        y += 1
        specs = stage_panels(s)
        for i, spec in enumerate(specs):
            panels.append(_panel(pid, s, spec, (i % per_line) * _PANEL_W, y + (i // per_line) * _PANEL_H))
            pid += 1
        y += -(-len(specs) // per_line) * _PANEL_H
    return {
        "uid": names.k8s_name("pipeteer", topology.workflow)[:40],
        "title": f"pipeteer: {topology.workflow}",
        "tags": ["pipeteer", topology.workflow],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "templating": {"list": _templating(topology)},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


_NAME = re.compile(r"\bpipeteer_[a-z0-9_]+\b")


def metric_names(model: dict[str, Any]) -> set[str]:
    """Every `pipeteer_*` sample name a dashboard's queries reference."""
    found: set[str] = set()
    for panel in model.get("panels", []):
        for target in panel.get("targets", []):
            found.update(_NAME.findall(target.get("expr", "")))
    for variable in model.get("templating", {}).get("list", []):
        found.update(_NAME.findall(variable.get("definition", "")))
    return found


def expressions(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of a dashboard, in order."""
    return [
        (panel["title"], target["expr"])
        for panel in model.get("panels", [])
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, values: Mapping[str, str], rate_interval: str = "1m") -> str:
    """An expression with the dashboard's variables replaced, as Grafana sends it (for checks outside Grafana)."""
    out = expr.replace(RATE, rate_interval)
    for name in VARIABLES:
        out = out.replace(f"${name}", values.get(name, ".*"))
    return out
