"""A Grafana dashboard over the runtime's Prometheus metrics: one row per stage.

Each row shows throughput, consumer lag, pending items (human tasks for web stages),
commit latency p50/p99, dead letters and errors. Queries use only the metric names
in `METRICS` (what `pipeteer.runtime.metrics` exports) and a `datasource` variable,
so the dashboard imports into any Grafana with a Prometheus datasource.
"""

from __future__ import annotations

import re
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
    "pipeteer_pending_items": "gauge",
    "pipeteer_oldest_pending_age_seconds": "gauge",
    "pipeteer_consumer_lag": "gauge",
    "pipeteer_reviewer_completions_total": "counter",
}
"""Metric families the runtime exports, all labelled by `stage` (completions also by `reviewer`)."""

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_WIDTH = 24
_PANEL_H = 8


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def _panel(
    pid: int, title: str, x: int, y: int, w: int, unit: str, targets: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": _PANEL_H, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": targets,
    }


def _stage_panels(s: StageSpec, first_id: int, y: int) -> list[dict[str, Any]]:
    sel = f'stage="{s.name}"'
    rate = "$__rate_interval"
    pending_title = "Pending human tasks" if s.web else "Pending items"
    specs: list[tuple[str, str, list[dict[str, Any]]]] = [
        (
            "Throughput",
            "ops",
            [
                _target(f"sum(rate(pipeteer_items_consumed_total{{{sel}}}[{rate}]))", "consumed", "A"),
                _target(f"sum(rate(pipeteer_items_produced_total{{{sel}}}[{rate}]))", "produced", "B"),
            ],
        ),
        (
            "Consumer lag",
            "short",
            [
                _target(f"sum(pipeteer_consumer_lag{{{sel}}})", "total", "A"),
                _target(
                    f"max by (partition) (pipeteer_consumer_lag{{{sel}}})", "partition {{partition}}", "B"
                ),
            ],
        ),
        (
            pending_title,
            "short",
            [
                _target(f"sum(pipeteer_pending_items{{{sel}}})", "pending", "A"),
                _target(f"max(pipeteer_oldest_pending_age_seconds{{{sel}}})", "oldest age (s)", "B"),
            ],
        ),
        (
            "Commit latency",
            "s",
            [
                _target(
                    f"histogram_quantile(0.5, sum by (le) (rate(pipeteer_commit_seconds_bucket{{{sel}}}[{rate}])))",
                    "p50",
                    "A",
                ),
                _target(
                    f"histogram_quantile(0.99, sum by (le) (rate(pipeteer_commit_seconds_bucket{{{sel}}}[{rate}])))",
                    "p99",
                    "B",
                ),
            ],
        ),
        (
            "Dead letters",
            "short",
            [_target(f"sum(increase(pipeteer_dead_letters_total{{{sel}}}[{rate}]))", "dead letters", "A")],
        ),
        (
            "Errors",
            "ops",
            [
                _target(f"sum(rate(pipeteer_items_failed_total{{{sel}}}[{rate}]))", "failed items", "A"),
                _target(f"sum(increase(pipeteer_rebalances_total{{{sel}}}[{rate}]))", "rebalances", "B"),
            ],
        ),
    ]
    if s.web:
        specs.append((
            "Completions by reviewer",
            "short",
            [_target(f"sum by (reviewer) (increase(pipeteer_reviewer_completions_total{{{sel}}}[{rate}]))",
                     "{{reviewer}}", "A")],
        ))
    w = _WIDTH // len(specs)
    return [
        _panel(first_id + i, f"{s.name}: {title}", i * w, y, w, unit, targets)
        for i, (title, unit, targets) in enumerate(specs)
    ]


def dashboard(topology: Topology) -> dict[str, Any]:
    """The Grafana dashboard JSON model for a topology (import it, or provision it from a file)."""
    panels: list[dict[str, Any]] = []
    y = 0
    pid = 1
    for s in topology.stages:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": f"{s.name} ({s.kind})",
                "collapsed": False,
                "gridPos": {"h": 1, "w": _WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        stage_panels = _stage_panels(s, pid + 1, y + 1)
        panels += stage_panels
        pid += 1 + len(stage_panels)
        y += 1 + _PANEL_H
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
        "templating": {
            "list": [
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
                }
            ]
        },
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
    return found
