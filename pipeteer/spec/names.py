"""Derived names: topics, consumer groups, transactional ids, Kubernetes resources.

Every name that leaves the process is derived here, deterministically, from the
workflow's own names (never from positions), and checked by one function.

Queue paths are the `path` that `make_queues` hands to `make_queue`: `("input",)`,
`("output",)`, and one path per stage (`("validation",)`, `("review", "manual")` for
a stage nested in a sub-workflow). The workflow's entry stage reads the input queue.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeteer.errors import ConfigError

DEFAULT_PREFIX = "pipeteer"
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_DNS = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_topic(name: str) -> str:
    """Return `name` if it is a legal Kafka topic name, else raise `ConfigError` saying why."""
    if not _TOPIC.match(name) or name in (".", ".."):
        raise ConfigError(
            f"derived topic name {name!r} is not a valid Kafka topic name "
            "(1-249 characters of letters, digits, '.', '_' or '-'): shorten the prefix, workflow or stage names"
        )
    return name


def queue_topic(workflow: str, path: Sequence[str], prefix: str = DEFAULT_PREFIX) -> str:
    """The data topic of the queue at `path`: `pipeteer.perspective-correction.validation`."""
    return check_topic(".".join([p for p in (prefix, workflow) if p] + list(path)))


def schemas_topic(workflow: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The compacted topic where the workflow's processes publish the schemas they write with:
    `pipeteer.perspective-correction._schemas` (a leading underscore: no stage or queue is named so).

    >>> schemas_topic("wf", "acme")
    'acme.wf._schemas'
    """
    return check_topic(".".join([p for p in (prefix, workflow) if p] + ["_schemas"]))


def stage_id(workflow: str, stage_path: Sequence[str], prefix: str = DEFAULT_PREFIX) -> str:
    """Base of a stage's consumer group, transactional ids and side topics."""
    return check_topic(".".join([p for p in (prefix, workflow) if p] + ["stage", *stage_path]))


def changelog_topic(workflow: str, stage_path: Sequence[str], prefix: str = DEFAULT_PREFIX) -> str:
    """Compacted topic backing the stage's pending table."""
    return check_topic(stage_id(workflow, stage_path, prefix) + ".pending")


def dead_letter_topic(workflow: str, stage_path: Sequence[str], prefix: str = DEFAULT_PREFIX) -> str:
    return check_topic(stage_id(workflow, stage_path, prefix) + ".dlq")


def consumer_group(workflow: str, stage_path: Sequence[str], prefix: str = DEFAULT_PREFIX) -> str:
    return stage_id(workflow, stage_path, prefix)


def transactional_id(
    workflow: str, stage_path: Sequence[str], instance: str, prefix: str = DEFAULT_PREFIX
) -> str:
    """Transactional id of one stage instance; stable per instance so a restart fences its zombie."""
    return check_topic(f"{stage_id(workflow, stage_path, prefix)}.{instance}")


def k8s_name(*parts: str) -> str:
    """A DNS-1123 label for Kubernetes resources: `perspective-correction-validation`."""
    raw = "-".join(parts).lower().replace("_", "-").replace(".", "-")
    raw = re.sub(r"-+", "-", raw).strip("-")[:63].rstrip("-")
    if not _DNS.match(raw):
        raise ConfigError(f"cannot derive a Kubernetes name from {parts!r}: got {raw!r}")
    return raw
