"""The compiled alerting rules, through Debian's promtool: `check rules`, then `test rules` with
series that should (and should not) fire each alert; and the chart's PrometheusRule."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipeteer.compile import build_topology
from pipeteer.compile.alerts import rules
from pipeteer.compile.manifests import dump_yaml
from tests.integration.deploy.test_helm import ALL_FEATURES, CHART, K8S_VERSION, by_kind, helm_run
from tests.unit.compile.sample_app import APP_REF, app

TOPO = build_topology(app, app_ref=APP_REF)
WF = TOPO.workflow
NS = "work"
ALERTS = sorted({r["alert"] for r in rules(TOPO)["groups"][0]["rules"]})


def series(metric: str, stage: str, values: str, **labels: str) -> dict[str, str]:
    more = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f'{metric}{{namespace="{NS}", workflow="{WF}", stage="{stage}", pod="{stage}-0"{more}}}',
            "values": values}


def healthy(minutes: int, but: str | None = None) -> list[dict[str, str]]:
    """Every stage ready for `minutes` (except `but`, whose readiness the test gives)."""
    return [series("pipeteer_stage_ready", s.name, f"1x{minutes}") for s in TOPO.stages if s.name != but]


def annotations(alert: str, stage: str, value: str = "", **labels: str) -> dict[str, str]:
    (rule,) = [r for r in rules(TOPO)["groups"][0]["rules"] if r["alert"] == alert and r["labels"]["stage"] == stage]
    out = {}
    for k, v in rule["annotations"].items():
        v = v.replace("{{ $value | humanizeDuration }}", value).replace("{{ $value }}", value)
        for name, label in labels.items():
            v = v.replace(f"{{{{ $labels.{name} }}}}", label)
        out[k] = v
    return out


def expect(alert: str, stage: str, value: str = "", namespace: bool = True, **more: str) -> dict[str, Any]:
    severity = next(r["labels"]["severity"] for r in rules(TOPO)["groups"][0]["rules"] if r["alert"] == alert)
    labels = {"severity": severity, "workflow": WF, "stage": stage} | ({"namespace": NS} if namespace else {}) | more
    return {"exp_labels": labels, "exp_annotations": annotations(alert, stage, value, **more)}


def case(minutes: int, inputs: list[dict[str, str]], at: str, alerts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    checks = [{"eval_time": at, "alertname": name, "exp_alerts": alerts.get(name, [])} for name in ALERTS]
    return {"interval": "1m", "input_series": inputs, "alert_rule_test": checks}


CASES = {
    "healthy": case(60, [
        *healthy(60),
        series("pipeteer_consumer_lag", "auto-correct", "100x60", partition="0"),  # a steady backlog
        series("pipeteer_dead_letters_total", "validation", "3x60"),  # old dead letters
        series("pipeteer_oldest_pending_age_seconds", "validation", "0+60x60"),  # an hour, limit 4h
    ], "59m", {}),
    "stage-gone": case(60, [*healthy(60, but="validation"),
                            series("pipeteer_stage_ready", "validation", "1x10 _x50")],
                       "30m", {"PipeteerStageDown": [expect("PipeteerStageDown", "validation", namespace=False)]}),
    "stage-not-ready": case(60, [*healthy(60, but="validation"), series("pipeteer_stage_ready", "validation", "0x60")],
                            "30m", {"PipeteerStageDown": [expect("PipeteerStageDown", "validation")]}),
    "lag-growing": case(60, [
        *healthy(60),
        series("pipeteer_consumer_lag", "auto-correct", "0+10x60", partition="0"),
        series("pipeteer_consumer_lag", "auto-correct", "5x60", partition="1"),
    ], "40m", {"PipeteerConsumerLagGrowing": [expect("PipeteerConsumerLagGrowing", "auto-correct", "405")]}),
    "dead-letters": case(60, [*healthy(60), series("pipeteer_dead_letters_total", "validation", "0x10 1x50")],
                         "15m", {"PipeteerDeadLetters": [expect("PipeteerDeadLetters", "validation")]}),
    "unknown-writer-schema": case(60, [
        *healthy(60),
        series("pipeteer_unknown_writer_records_total", "auto-correct", "0x10 5+5x50", writer_fingerprint="bd64d314acd056f8"),
    ], "15m", {"PipeteerUnknownWriterSchema": [
        expect("PipeteerUnknownWriterSchema", "auto-correct", writer_fingerprint="bd64d314acd056f8")
    ]}),
    "commit-failures": case(60, [*healthy(60), series("pipeteer_commit_failures_total", "auto-correct", "0+1x60")],
                            "30m", {"PipeteerCommitFailures": [expect("PipeteerCommitFailures", "auto-correct")]}),
    "stage-failing": case(60, [*healthy(60), series("pipeteer_items_failed_total", "auto-correct", "0+1x60")],
                          "30m", {"PipeteerStageFailing": [expect("PipeteerStageFailing", "auto-correct")]}),
    # validation's limit is declared in the app (4h); manual-correct keeps the default (a day)
    "task-too-old": case(300, [
        *healthy(300),
        series("pipeteer_oldest_pending_age_seconds", "validation", "0+60x300"),
        series("pipeteer_oldest_pending_age_seconds", "manual-correct", "0+60x300"),
    ], "250m", {"PipeteerHumanTaskTooOld": [expect("PipeteerHumanTaskTooOld", "validation", "4h 10m 0s")]}),
}


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(dump_yaml(rules(TOPO)))
    return path


def test_compiled_rules_pass_promtool_check(promtool: Path, rule_file: Path) -> None:
    out = subprocess.run([str(promtool), "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules(TOPO)['groups'][0]['rules'])} rules found" in out.stdout
    # the committed rules of the example too
    example = CHART.parents[1] / "topologies" / "perspective_correction" / "compiled" / "prometheus" / "rules.yaml"
    out = subprocess.run([str(promtool), "check", "rules", str(example)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", list(CASES))
def test_alerts_fire_when_they_should_and_only_then(promtool: Path, rule_file: Path, name: str) -> None:
    test_file = rule_file.parent / f"test-{name}.yaml"
    test_file.write_text(yaml.safe_dump(
        {"rule_files": [rule_file.name], "evaluation_interval": "1m", "tests": [CASES[name]]}, sort_keys=False
    ))
    out = subprocess.run([str(promtool), "test", "rules", test_file.name], cwd=rule_file.parent,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_the_chart_renders_the_rules_scoped_to_its_namespace(helm: Path, promtool: Path, tmp_path: Path) -> None:
    from pipeteer.compile import compile_to

    compile_to(app, tmp_path, app_ref=APP_REF)
    values = tmp_path / "helm" / "values.yaml"
    args = ["template", "demo", str(CHART), "--namespace", NS, "-f", str(values), *ALL_FEATURES]
    off = [d for d in yaml.safe_load_all(helm_run(helm, *args).stdout) if d]
    assert by_kind(off, "PrometheusRule") == []
    on = [d for d in yaml.safe_load_all(helm_run(helm, *args, "--set", "prometheusRule.enabled=true",
                                                 "--set", "prometheusRule.labels.release=kube-prometheus").stdout) if d]
    (rule,) = by_kind(on, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"] == "kube-prometheus"
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):  # a custom resource: checked by promtool below
        kubernetes_validate.validate(rule, K8S_VERSION, strict=True)
    group = rule["spec"]["groups"][0]
    assert {r["alert"] for r in group["rules"]} == set(ALERTS)
    assert all(f'namespace="{NS}", workflow="{WF}"' in r["expr"] for r in group["rules"])
    spec_file = tmp_path / "rendered.yaml"
    spec_file.write_text(yaml.safe_dump(rule["spec"]))
    out = subprocess.run([str(promtool), "check", "rules", str(spec_file)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
