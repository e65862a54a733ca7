"""Compile layer: from the workflow graph to topics, manifests, dashboards and diagrams (no I/O but files).

>>> from pipeteer.compile import build_topology, describe_text, compile_to  # doctest: +SKIP
>>> print(describe_text(build_topology(app)))  # doctest: +SKIP

Nothing here talks to a Kafka cluster: `topics plan / apply` is the Kafka backend's
(`pipeteer.queues.kafka.admin`), given the topics compiled here.
"""

from pipeteer.compile.config import LIBRARY_DEFAULTS, StageSettings, TopologyConfig
from pipeteer.compile.dashboard import dashboard
from pipeteer.compile.describe import describe_text, mermaid
from pipeteer.compile.emit import compile_to, render
from pipeteer.compile.topology import StageSpec, TopicSpec, Topology, build_topology

__all__ = [
    "LIBRARY_DEFAULTS",
    "StageSettings",
    "StageSpec",
    "TopicSpec",
    "Topology",
    "TopologyConfig",
    "build_topology",
    "compile_to",
    "dashboard",
    "describe_text",
    "mermaid",
    "render",
]
