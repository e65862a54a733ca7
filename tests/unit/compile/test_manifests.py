"""Strimzi topics, Helm values, the Grafana dashboard and the compose stack agree with the topology."""

from __future__ import annotations

import pytest

from pipeteer.compile import TopologyConfig, build_topology, dashboard
from pipeteer.compile.dashboard import METRICS, expressions, metric_names, substitute
from pipeteer.compile.manifests import (
    compose,
    compose_service_name,
    helm_values,
    load_topics_document,
    prometheus_config,
    strimzi_topics,
    topics_document,
)
from pipeteer.errors import ConfigError
from pipeteer.spec import names
from tests.unit.compile.sample_app import APP_REF, app

TOPO = build_topology(app, app_ref=APP_REF)


def test_topics_document_round_trips() -> None:
    doc = topics_document(TOPO)
    assert doc["precedence"] == ["library defaults", "workflow", "per-topic", "command line / profile"]
    assert load_topics_document(doc) == list(TOPO.topics)
    assert [t["name"] for t in doc["topics"]] == sorted(t["name"] for t in doc["topics"])
    with pytest.raises(ConfigError, match="no 'topics' list"):
        load_topics_document({"workflow": "x"})


def test_strimzi_topics_mirror_topics_yaml() -> None:
    docs = strimzi_topics(TOPO, cluster="main")
    assert len(docs) == len(TOPO.topics)
    for doc, t in zip(docs, TOPO.topics, strict=True):
        assert doc["kind"] == "KafkaTopic" and doc["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert doc["metadata"]["name"] == names.k8s_name(t.name)
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "main"
        spec = doc["spec"]
        assert (spec["topicName"], spec["partitions"], spec["replicas"]) == (
            t.name,
            t.partitions,
            t.replication_factor,
        )
        assert {k: str(v) for k, v in spec["config"].items()} == dict(t.config)


def test_helm_values_one_entry_per_stage() -> None:
    values = helm_values(TOPO)
    assert values["app"] == APP_REF and values["partitions"] == TOPO.partitions
    assert list(values["stages"]) == TOPO.stage_names()
    for s in TOPO.stages:
        v = values["stages"][s.name]
        assert v["web"] is s.web and v["name"] == s.k8s_name and v["port"] == s.port
        assert v["command"][:3] == ["pipeteer", "run", APP_REF]
        assert v["command"][v["command"].index("--stage") + 1] == s.name
        assert v["command"][v["command"].index("--backend") + 1] == "$(PIPETEER_BACKEND)"
        assert v["replicas"] <= v["maxReplicas"] == TOPO.partitions
        assert (v["probes"]["liveness"]["path"], v["probes"]["readiness"]["path"]) == ("/healthz", "/readyz")
        assert v["resources"]["requests"] and v["resources"]["limits"]["memory"]


def test_replicas_are_bounded_by_partitions() -> None:
    ok = build_topology(
        app, TopologyConfig.from_mapping({"stages": {"auto-correct": {"replicas": 6}}}), app_ref="m:a"
    )
    assert helm_values(ok)["stages"]["auto-correct"]["replicas"] == 6
    too_many = build_topology(
        app, TopologyConfig.from_mapping({"stages": {"auto-correct": {"replicas": 7}}}), app_ref="m:a"
    )
    with pytest.raises(ConfigError, match="replicas 7 exceeds the 6 partitions"):
        helm_values(too_many)


def test_dashboard_rows_panels_and_datasource() -> None:
    model = dashboard(TOPO)
    rows = [p for p in model["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == [f"{s.name} ({'people' if s.web else 'automatic'})" for s in TOPO.stages]
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert list(variables) == ["datasource", "workflow", "namespace", "stage"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["workflow"]["current"]["value"] == TOPO.workflow
    panels = [p for p in model["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    for s in TOPO.stages:
        mine = {p["title"].split(": ", 1)[1]: p for p in panels if p["title"].startswith(f"{s.name}: ")}
        waiting, oldest = (
            ("Tasks waiting for people", "Oldest task waiting") if s.web else ("Pending items", "Oldest pending item")
        )
        people = {"Completions by reviewer", "Review decisions by reason"} if s.web else set()
        assert set(mine) == {
            "Throughput", waiting, oldest, "Processing time", "Consumer lag", "Dead letters",
            "Records of an unknown schema", "Held items", "Failed items",
            "Rebalances", "Commit latency", "Commit failures", *people,
        }
        # counts are counts, ages are seconds, each on its own panel (own axis)
        units = {title: p["fieldConfig"]["defaults"]["unit"] for title, p in mine.items()}
        assert units[waiting] == units["Rebalances"] == units["Dead letters"] == units["Consumer lag"] == "none"
        assert units[oldest] == units["Processing time"] == units["Commit latency"] == "s"
        assert units["Throughput"] == "ops"
        processing = [t["expr"] for t in mine["Processing time"]["targets"]]
        assert [q.split(",")[0] for q in processing] == [
            "histogram_quantile(0.5", "histogram_quantile(0.95", "histogram_quantile(0.99"
        ]
        for p in mine.values():
            assert p["datasource"]["uid"] == "${datasource}"
            for t in p["targets"]:
                for v in ("namespace", "workflow", "stage"):  # every query scoped by the variables
                    assert f'{v}=~"${v}"' in t["expr"], (p["title"], t["expr"])
                assert f'stage="{s.name}"' in t["expr"]
        # what SQLite cannot measure says so instead of drawing 0
        assert "kafka only" in mine["Consumer lag"]["fieldConfig"]["defaults"]["noValue"]
        assert "kafka only" not in mine[oldest]["description"]  # every backend measures the oldest age
        assert "noValue" not in mine["Throughput"]["fieldConfig"]["defaults"]
    # only names the runtime's metric families expose as samples
    exposed = set()
    for family, kind in METRICS.items():
        exposed |= {family + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {family}
    assert metric_names(model) <= exposed
    # panels fit the 24-column grid and never overlap
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine_cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine_cells, p["title"]
        cells |= mine_cells


def test_dashboard_expressions_substitute_like_grafana() -> None:
    [(_, expr), *_] = expressions(dashboard(TOPO))
    done = substitute(expr, {"workflow": TOPO.workflow})
    assert "$" not in done and f'workflow=~"{TOPO.workflow}"' in done and 'namespace=~".*"' in done


def test_compose_stack_matches_the_topology() -> None:
    stack = compose(TOPO, "out/compiled")
    services = stack["services"]
    stage_services = {compose_service_name(s): s for s in TOPO.stages}
    assert set(services) == {"kafka", "topics", "prometheus", "grafana", *stage_services}
    assert services["kafka"]["image"].startswith("apache/kafka:") and not services["kafka"]["image"].endswith(
        ":latest"
    )
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    host_ports = []
    for name, s in stage_services.items():
        svc = services[name]
        assert svc["command"][svc["command"].index("--stage") + 1] == s.name
        assert svc["command"][svc["command"].index("--port") + 1] == str(s.port)
        (mapping,) = svc["ports"]
        *bind, host, container = mapping.split(":")
        assert int(container) == s.port and bind == (["127.0.0.1"] if s.web else [])
        host_ports.append(host)
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert svc["user"] == "10001:10001" and svc["read_only"] is True
    assert len(set(host_ports)) == len(host_ports)
    targets = [c["targets"][0] for c in prometheus_config(TOPO)["scrape_configs"][0]["static_configs"]]
    assert targets == [f"{compose_service_name(s)}:{s.port}" for s in TOPO.stages]
    assert any("out/compiled/grafana/dashboard.json" in v for v in services["grafana"]["volumes"])


def test_dashboard_metric_families_are_the_runtime_contract() -> None:
    from pipeteer.runtime.metrics import METRIC_NAMES

    assert set(METRICS) == set(METRIC_NAMES)
