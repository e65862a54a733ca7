"""Human-readable views of a topology: stable text (`pipeteer describe`) and a Mermaid diagram.

Both are pure functions of the topology, with no timestamps, so they can be golden-tested.
"""

from __future__ import annotations

import re

from pipeteer.compile.topology import OUTPUT_TARGET, Topology
from pipeteer.plan import INPUT_SOURCE


def describe_text(topology: Topology) -> str:
    """The topology as stable text: stages with their topics, groups and routes, then every topic."""
    lines = [f"workflow {topology.workflow}"]
    if topology.app:
        lines.append(f"app      {topology.app}")
    lines += [
        f"prefix   {topology.prefix}",
        f"profile  {topology.profile} (topic defaults: pipeteer.topics.TOPIC_PROFILES)",
        f"partitions {topology.partitions} (every data and changelog topic; an item keeps its partition)",
        "",
        f"input   {topology.input_topic}",
        f"output  {topology.output_topic}",
        "",
        "stages:",
    ]
    for s in topology.stages:
        lines += [
            f"  {s.name} [{s.kind}] reads {s.state}",
            f"    input topic       {s.input_topic}",
            f"    pending table     {s.changelog_topic}",
            f"    dead letters      {s.dead_letter_topic}",
            f"    consumer group    {s.consumer_group}",
            f"    transactional ids {s.transactional_id_prefix}<instance>",
            f"    service           {s.k8s_name}:{s.port}"
            + (f" (web app under /{s.name}/)" if s.web else ""),
        ]
        if s.routes:
            lines.append("    routes")
            lines += [f"      {r.state} -> {r.target} via {r.topic}" for r in s.routes]
        else:
            lines.append("    routes            (post has no return annotation: not known before running)")
    lines += ["", "states:"]
    lines += [f"  {st.name} ({st.qualname}) in {st.topic}" for st in topology.states]
    lines += ["", "topics:"]
    for t in topology.topics:
        cfg = " ".join(f"{k}={v}" for k, v in sorted(t.config.items()))
        lines.append(
            f"  {t.name} [{t.kind}] partitions={t.partitions} replication.factor={t.replication_factor} {cfg}"
        )
    return "\n".join(lines) + "\n"


def _node_id(name: str) -> str:
    return "stage_" + re.sub(r"[^A-Za-z0-9]", "_", name)


def mermaid(topology: Topology) -> str:
    """A Mermaid flowchart: the input, each stage (web stages as parallelograms), the output.

    Edges are labelled with the state type they carry.
    """
    lines = [
        "flowchart LR",
        f'  input(["input: {topology.input_topic}"])',
        f'  output(["output: {topology.output_topic}"])',
    ]
    for s in topology.stages:
        label = f"{s.name}<br/>{s.kind}"
        shape = f'[/"{label}"/]' if s.web else f'["{label}"]'
        lines.append(f"  {_node_id(s.name)}{shape}")
    for r in topology.routes:
        src = "input" if r.source == INPUT_SOURCE else _node_id(r.source)
        dst = "output" if r.target == OUTPUT_TARGET else _node_id(r.target)
        lines.append(f"  {src} -->|{r.state}| {dst}")
    return "\n".join(lines) + "\n"
