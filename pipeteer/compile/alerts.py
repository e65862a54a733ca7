"""Prometheus alerting rules compiled from the workflow graph: one set per stage.

- `PipeteerStageDown`: no instance of the stage is ready (or none is scraped) for 5 minutes.
- `PipeteerConsumerLagGrowing`: the stage's input backlog (Kafka consumer lag) has grown for 15 minutes.
- `PipeteerDeadLetters`: items of the stage went to its dead-letter topic.
- `PipeteerUnknownWriterSchema`: the stage met records written with a schema it does not know.
- `PipeteerCommitFailures`: the stage's transactions keep failing to commit.
- `PipeteerStageFailing`: the stage's code has raised on items for 10 minutes.
- `PipeteerHumanTaskTooOld` (web stages): a person's task has waited longer than the stage's limit
  (`App(task_age_limits={stage: seconds})`, default a day).

Every expression selects `workflow="<workflow>"` and the stage, and groups by `namespace`, so
alerts name the deployment they are about. `rules(topology)` is the `groups:` document Prometheus
loads (`promtool check rules` accepts it); the chart renders the same rules as a `PrometheusRule`.
"""

from __future__ import annotations

from typing import Any

from pipeteer.compile.topology import StageSpec, Topology

BY = "namespace, workflow, stage"


def _duration(seconds: float) -> str:
    """A Prometheus duration: `90` -> '1m30s'.

    >>> _duration(86400), _duration(90), _duration(0.5)
    ('1d', '1m30s', '500ms')
    """
    ms = round(seconds * 1000)
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            out += f"{n}{unit}"
    return out or "0s"


def _rule(name: str, expr: str, wait: str, severity: str, s: StageSpec, workflow: str,
          summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": wait,
        "labels": {"severity": severity, "workflow": workflow, "stage": s.name},
        "annotations": {"summary": summary, "description": description},
    }


def stage_rules(topology: Topology, s: StageSpec) -> list[dict[str, Any]]:
    """The alerting rules of one stage."""
    wf = topology.workflow
    sel = f'{{workflow="{wf}", stage="{s.name}"}}'
    where = f"stage {s.name!r} of workflow {wf!r}"
    rules = [
        _rule(
            "PipeteerStageDown",
            f"max by ({BY}) (pipeteer_stage_ready{sel}) < 1 or absent(pipeteer_stage_ready{sel})",
            "5m", "critical", s, wf,
            f"pipeteer stage {s.name!r} is down",
            f"No ready instance of {where} for 5 minutes: check its pods, their /readyz answer "
            "(it names the reason) and their logs.",
        ),
        _rule(
            "PipeteerConsumerLagGrowing",
            f"sum by ({BY}) (max by ({BY}, partition) (pipeteer_consumer_lag{sel})) > 0"
            f" and sum by ({BY}) (max by ({BY}, partition) (deriv(pipeteer_consumer_lag{sel}[10m]))) > 0",
            "15m", "warning", s, wf,
            f"pipeteer stage {s.name!r} is falling behind",
            f"The input backlog of {where} has grown for 15 minutes (now {{{{ $value }}}} records): "
            "is the stage running, and does it have enough replicas (at most one per partition)?",
        ),
        _rule(
            "PipeteerDeadLetters",
            f"sum by ({BY}) (increase(pipeteer_dead_letters_total{sel}[10m])) > 0",
            "0m", "warning", s, wf,
            f"pipeteer stage {s.name!r} dead-lettered items",
            f"Items of {where} went to its dead-letter topic in the last 10 minutes: "
            f"see `pipeteer dlq list APP --stage {s.name}`, fix the cause, then replay them.",
        ),
        _rule(
            "PipeteerUnknownWriterSchema",
            f"sum by ({BY}, writer_fingerprint) (increase(pipeteer_unknown_writer_records_total{sel}[10m])) > 0",
            "0m", "critical", s, wf,
            f"pipeteer stage {s.name!r} cannot read records of another schema",
            f"{where.capitalize()} received records written with schema fingerprint "
            "{{ $labels.writer_fingerprint }}, which it cannot read: each such record is held (kept pending, "
            "not dead-lettered) until a version that reads it takes it. Its /readyz names both schemas; "
            "finish the rollout (or roll back), or make the change compatible (`pipeteer schemas check`).",
        ),
        _rule(
            "PipeteerItemsHeld",
            f"max by ({BY}) (pipeteer_held_items{sel}) > 0",
            "15m", "warning", s, wf,
            f"pipeteer stage {s.name!r} holds items it cannot read",
            f"{where.capitalize()} has held {{{{ $value }}}} items for 15 minutes: records of another version "
            "of the workflow that this one cannot read. They are kept, not lost; a rollout left half done "
            "(or a version rolled back) leaves them waiting: finish it, or run the version that wrote them.",
        ),
        _rule(
            "PipeteerCommitFailures",
            f"sum by ({BY}) (increase(pipeteer_commit_failures_total{sel}[10m])) > 0",
            "10m", "critical", s, wf,
            f"pipeteer stage {s.name!r} cannot commit",
            f"Transactions of {where} keep failing (their work is redone after each): "
            "check the brokers and the stage's logs.",
        ),
        _rule(
            "PipeteerStageFailing",
            f"sum by ({BY}) (rate(pipeteer_items_failed_total{sel}[5m])) > 0",
            "10m", "warning", s, wf,
            f"pipeteer stage {s.name!r} keeps failing on items",
            f"The code of {where} has raised on items for 10 minutes: see its logs.",
        ),
    ]
    if s.web and s.task_age_limit is not None:
        limit = s.task_age_limit
        rules.append(_rule(
            "PipeteerHumanTaskTooOld",
            f"max by ({BY}) (pipeteer_oldest_pending_age_seconds{sel}) > {limit:g}",
            "0m", "warning", s, wf,
            f"a task of pipeteer stage {s.name!r} waits for a person",
            f"The oldest task of {where} has waited {{{{ $value | humanizeDuration }}}}, more than its limit "
            f"of {_duration(limit)} (App task_age_limits): are reviewers available?",
        ))
    return rules


def rules(topology: Topology) -> dict[str, Any]:
    """The Prometheus rule file of a topology: one group, every stage's rules."""
    return {
        "groups": [
            {
                "name": f"pipeteer.{topology.workflow}",
                "rules": [r for s in topology.stages for r in stage_rules(topology, s)],
            }
        ]
    }
