"""Write a compiled topology to a directory, deterministically.

    DIR/topics.yaml                      every topic and its resolved settings
    DIR/strimzi/kafkatopics.yaml         the same topics as Strimzi KafkaTopic resources
    DIR/schemas/*.avsc                   Avro schemas of the state types (pipeteer.codec)
    DIR/helm/values.yaml                 values for helm/pipeteer, one entry per stage
    DIR/grafana/dashboard.json           Grafana dashboard, one row per stage
    DIR/prometheus/rules.yaml            Prometheus alerting rules (the chart renders them too)
    DIR/compose/prometheus.yml           scrape config for docker-compose.yml
    DIR/compose/grafana/*.yaml           Grafana provisioning for docker-compose.yml
    DIR/topology.json, topology.mmd, topology.txt

Files are rewritten only when their content changes, and no file carries a timestamp,
so regenerating an unchanged topology gives no diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipeteer.compile import alerts, describe, manifests
from pipeteer.compile.config import TopologyConfig
from pipeteer.compile.dashboard import dashboard as build_dashboard
from pipeteer.compile.topology import AppLike, Topology, build_topology

JSON_INDENT = 2


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=JSON_INDENT, sort_keys=True, ensure_ascii=False) + "\n"


def render(topology: Topology, *, strimzi_cluster: str = manifests.STRIMZI_CLUSTER) -> dict[str, str]:
    """Every generated text file of a topology, by path relative to the output directory."""
    files = {
        "topics.yaml": manifests.dump_yaml(manifests.topics_document(topology), manifests.TOPICS_HEADER),
        "strimzi/kafkatopics.yaml": manifests.dump_yaml_documents(
            manifests.strimzi_topics(topology, strimzi_cluster)
        ),
        "helm/values.yaml": manifests.dump_yaml(manifests.helm_values(topology)),
        "grafana/dashboard.json": dump_json(build_dashboard(topology)),
        "prometheus/rules.yaml": manifests.dump_yaml(alerts.rules(topology)),
        "compose/prometheus.yml": manifests.dump_yaml(manifests.prometheus_config(topology)),
        "topology.json": dump_json(topology.to_dict()),
        "topology.mmd": describe.mermaid(topology),
        "topology.txt": describe.describe_text(topology),
    }
    for name, doc in manifests.grafana_provisioning().items():
        files[f"compose/grafana/{name}"] = manifests.dump_yaml(doc)
    return files


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    path.write_text(text)


def export_schemas(app: AppLike, outdir: Path) -> list[Path]:
    """Avro schema files of the workflow's state types, via `pipeteer.codec` when it is available."""
    try:
        from pipeteer.codec import export_schemas as codec_export
    except ImportError:
        return []  # the codec layer is not installed in this build; schemas are written by `pipeteer schemas`
    written = codec_export(app.workflow.state_types(), outdir)
    return sorted(Path(p) for p in (written or []))


def compile_to(
    app: AppLike,
    outdir: str | os.PathLike[str],
    config: TopologyConfig | None = None,
    *,
    app_ref: str | None = None,
    compose_file: str | os.PathLike[str] | None = None,
    strimzi_cluster: str = manifests.STRIMZI_CLUSTER,
) -> list[Path]:
    """Compile `app` and write every artifact under `outdir`; returns the files, sorted.

    With `compose_file`, also writes a docker-compose stack there that mounts files from
    `outdir` by a path relative to the compose file's directory. `strimzi_cluster` names
    the Strimzi `Kafka` resource the KafkaTopics belong to.
    """
    out = Path(outdir)
    topology = build_topology(app, config, app_ref=app_ref)
    written = []
    for rel, text in sorted(render(topology, strimzi_cluster=strimzi_cluster).items()):
        _write(out / rel, text)
        written.append(out / rel)
    written += export_schemas(app, out / "schemas")
    if compose_file is not None:
        target = Path(compose_file)
        rel_dir = os.path.relpath(out.resolve(), target.resolve().parent).replace(os.sep, "/")
        _write(
            target,
            manifests.dump_yaml(
                manifests.compose(topology, rel_dir), manifests.compose_header(topology, rel_dir)
            ),
        )
        written.append(target)
    return sorted(written)
