"""`pipeteer topics plan / apply`: bring a Kafka cluster's topics in line with topics.yaml.

`plan_topics` compares the wanted topics (the compiler's `TopicSpec`s, or any `WantedTopic`) with
the cluster (Kafka AdminClient) and lists the changes (`TopicChanges`): create, alter config, add
partitions; and, only with an explicit flag, delete (topics of the workflow that topics.yaml no
longer has) and recreate (to reduce partitions, which Kafka cannot do in place). Adding partitions
to a keyed topic remaps item ids to partitions, which breaks the lookup of items still pending in a
stage, so it is refused while any stage has pending items unless `allow_repartition` is given.
`apply_topics` carries the changes out; applying them twice changes nothing the second time.

The compile layer only describes topics; this module of the Kafka backend is what talks to a
cluster about them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from pipeteer.errors import ConfigError
from pipeteer.queues.kafka.changelog import committed
from pipeteer.queues.kafka.health import client_error, watch

KEYED_KINDS = ("data", "changelog")
DELETE_FLAG = "--allow-delete"
REPARTITION_FLAG = "--allow-repartition"


class WantedTopic(Protocol):
    """A topic as `plan_topics` wants it (`pipeteer.compile.TopicSpec` is one): its settings, and for
    a topic a stage reads, that stage, its consumer group and its pending-table changelog."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def partitions(self) -> int: ...
    @property
    def replication_factor(self) -> int: ...
    @property
    def config(self) -> Mapping[str, str]: ...
    @property
    def reader(self) -> str | None: ...
    @property
    def consumer_group(self) -> str | None: ...
    @property
    def changelog(self) -> str | None: ...


@dataclass(frozen=True)
class Action:
    """One change to the cluster; `refused` says why it needs `flag` (None: allowed)."""

    kind: str  # create | alter-config | add-partitions | delete | recreate
    topic: str
    partitions: int | None = None
    current_partitions: int | None = None
    replication_factor: int | None = None
    config: Mapping[str, str] = field(
        default_factory=dict
    )  # create/recreate: full config; alter: wanted values
    current_config: Mapping[str, str | None] = field(default_factory=dict)  # alter: values on the cluster
    refused: str | None = None
    flag: str | None = None

    def describe(self) -> str:
        if self.kind == "create":
            cfg = ", ".join(f"{k}={v}" for k, v in sorted(self.config.items()))
            text = f"+ create {self.topic} (partitions={self.partitions}, replication.factor={self.replication_factor}, {cfg})"
        elif self.kind == "alter-config":
            changes = ", ".join(
                f"{k}: {self.current_config.get(k)} -> {v}" for k, v in sorted(self.config.items())
            )
            text = f"~ alter config {self.topic}: {changes}"
        elif self.kind == "add-partitions":
            text = f"^ add partitions {self.topic}: {self.current_partitions} -> {self.partitions}"
        elif self.kind == "recreate":
            text = (
                f"! recreate {self.topic} to reduce partitions {self.current_partitions} -> {self.partitions} "
                "(deletes its records)"
            )
        else:
            text = f"- delete {self.topic} (not in topics.yaml; deletes its records)"
        if self.refused:
            text += f"\n    REFUSED: {self.refused}; pass {self.flag} to allow it"
        return text


@dataclass(frozen=True)
class TopicChanges:
    """What `apply_topics` would do to a cluster's topics, with the refused actions and warnings explained."""

    bootstrap: str
    actions: tuple[Action, ...]
    up_to_date: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def refused(self) -> list[Action]:
        return [a for a in self.actions if a.refused]

    @property
    def empty(self) -> bool:
        return not self.actions

    def text(self) -> str:
        """The changes as stable text (sorted by topic within each kind of action), as `topics plan` prints them."""
        lines = [f"plan for {len(self.actions) + len(self.up_to_date)} topics on {self.bootstrap}:"]
        lines += [f"  {a.describe()}".replace("\n", "\n  ") for a in self.actions]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines.append(f"  = {len(self.up_to_date)} topic(s) up to date")
        if not self.actions:
            lines.append("nothing to do")
        elif self.refused:
            lines.append(f"{len(self.refused)} action(s) refused: apply stops before changing anything")
        return "\n".join(lines) + "\n"


def _config(bootstrap: str, client_config: Mapping[str, str] | None) -> dict[str, Any]:
    # librdkafka's logs through Python logging, rate-limited, rather than a line per connection attempt
    return {"bootstrap.servers": bootstrap, **watch(bootstrap).client_config(), **dict(client_config or {})}


def _admin(bootstrap: str, client_config: Mapping[str, str] | None) -> AdminClient:
    return AdminClient(_config(bootstrap, client_config))


def _result(future: Any, what: str, timeout: float, bootstrap: str) -> Any:
    try:
        return future.result(timeout=timeout)
    except KafkaException as e:
        raise client_error(e, bootstrap, what) from None


def _offsets(admin: AdminClient, partitions: Sequence[Any], spec: Any, timeout: float,
             bootstrap: str) -> dict[tuple[str, int], int]:
    """The offsets `spec` of `partitions`, asked again while a leader is moving or not elected yet
    (a partition created a moment ago answers "not leader" for a while)."""
    if not partitions:
        return {}
    moving = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART)
    deadline = time.monotonic() + timeout
    while True:
        futures = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=timeout)
        try:
            return {(tp.topic, tp.partition): f.result(timeout=timeout).offset for tp, f in futures.items()}
        except KafkaException as e:
            err = e.args[0] if e.args else None
            transient = isinstance(err, KafkaError) and (err.retriable() or err.code() in moving)
            if not transient or time.monotonic() >= deadline:
                raise client_error(e, bootstrap, f"offsets of {sorted({tp.topic for tp in partitions})}") from None
        time.sleep(0.1)


def pending_counts(
    admin: AdminClient, topics: Sequence[WantedTopic], cluster_partitions: Mapping[str, int], timeout: float,
    bootstrap: str, client_config: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Per stage reader: records not yet consumed by its group plus records in its pending-table changelog.

    Conservative on purpose: a compacted changelog counts tombstones too, so a stage
    that once had pending items may count as having some; refusing is the safe side.

    A group's committed offsets are asked of a consumer of that group (which never subscribes nor
    commits), not of the admin client: librdkafka 2.16's `list_consumer_group_offsets` crashes the
    process (SIGSEGV in `rd_kafka_cgrp_op`) when the answer is an error while the group's coordinator
    loads, as the lag monitor found (`lag.py`).
    """
    out: dict[str, int] = {}
    for t in topics:
        if t.reader is None or t.consumer_group is None or t.name not in cluster_partitions:
            continue
        tps = [TopicPartition(t.name, p) for p in range(cluster_partitions[t.name])]
        ends = _offsets(admin, tps, OffsetSpec.latest(), timeout, bootstrap)
        starts = _offsets(admin, tps, OffsetSpec.earliest(), timeout, bootstrap)
        group = Consumer({**_config(bootstrap, client_config), "group.id": t.consumer_group, "enable.auto.commit": False})
        try:
            done = committed(group, t.name, [tp.partition for tp in tps], timeout=timeout)
        except KafkaException as e:
            raise client_error(e, bootstrap, f"offsets of group {t.consumer_group}") from None
        finally:
            group.close()
        positions = {(tp.topic, tp.partition): tp.offset for tp in done}
        count = 0
        for key, end in ends.items():
            position = positions.get(key, -1)
            count += max(0, end - (position if position >= 0 else starts[key]))
        if t.changelog and t.changelog in cluster_partitions:
            ctps = [TopicPartition(t.changelog, p) for p in range(cluster_partitions[t.changelog])]
            cends = _offsets(admin, ctps, OffsetSpec.latest(), timeout, bootstrap)
            cstarts = _offsets(admin, ctps, OffsetSpec.earliest(), timeout, bootstrap)
            count += sum(max(0, cends[k] - cstarts[k]) for k in cends)
        out[t.reader] = count
    return out


def _describe_configs(admin: AdminClient, names: Iterable[str], timeout: float,
                      bootstrap: str) -> dict[str, dict[str, str | None]]:
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in sorted(names)]
    if not resources:
        return {}
    out: dict[str, dict[str, str | None]] = {}
    for res, future in admin.describe_configs(resources, request_timeout=timeout).items():
        entries = _result(future, f"config of topic {res.name}", timeout, bootstrap)
        out[res.name] = {k: v.value for k, v in entries.items()}
    return out


def plan_topics(
    topics: Sequence[WantedTopic],
    bootstrap: str,
    *,
    scope: str | None = None,
    allow_delete: bool = False,
    allow_repartition: bool = False,
    client_config: Mapping[str, str] | None = None,
    timeout: float = 15.0,
) -> TopicChanges:
    """Compare `topics` with the cluster at `bootstrap` and list the changes that would bring it in line.

    `scope` is the topic-name prefix owned by the workflow (`<prefix>.<workflow>.`):
    cluster topics under it that `topics` does not list are planned for deletion
    (refused unless `allow_delete`).
    """
    admin = _admin(bootstrap, client_config)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as e:
        raise client_error(e, bootstrap, "listing the cluster's topics") from None
    finally:
        admin.poll(0)  # serves the client's log messages
    cluster = {name: t for name, t in metadata.topics.items() if not name.startswith("__")}
    cluster_partitions = {name: len(t.partitions) for name, t in cluster.items()}
    wanted = {t.name: t for t in topics}
    existing = [t for t in topics if t.name in cluster]
    configs = _describe_configs(admin, (t.name for t in existing), timeout, bootstrap)

    creates: list[Action] = []
    alters: list[Action] = []
    grows: list[Action] = []
    destructive: list[Action] = []
    warnings: list[str] = []
    up_to_date: list[str] = []
    for t in sorted(topics, key=lambda t: t.name):
        if t.name not in cluster:
            creates.append(Action("create", t.name, t.partitions, None, t.replication_factor, dict(t.config)))
            continue
        changed = False
        current = cluster_partitions[t.name]
        if t.partitions < current:
            changed = True
            destructive.append(
                Action(
                    "recreate",
                    t.name,
                    t.partitions,
                    current,
                    t.replication_factor,
                    dict(t.config),
                    refused=None
                    if allow_delete
                    else "Kafka cannot reduce partitions; only deleting and recreating the topic can, which loses its records",
                    flag=DELETE_FLAG,
                )
            )
            continue
        if t.partitions > current:
            changed = True
            grows.append(Action("add-partitions", t.name, t.partitions, current))
        have = configs.get(t.name, {})
        diff = {k: v for k, v in sorted(t.config.items()) if have.get(k) != v}
        if diff:
            changed = True
            alters.append(
                Action("alter-config", t.name, config=diff, current_config={k: have.get(k) for k in diff})
            )
        replicas = {len(p.replicas) for p in cluster[t.name].partitions.values()}
        if replicas and replicas != {t.replication_factor}:
            warnings.append(
                f"{t.name}: replication factor is {'/'.join(map(str, sorted(replicas)))} on the cluster, "
                f"topics.yaml wants {t.replication_factor}; a config change cannot alter it: reassign the partitions "
                "(kafka-reassign-partitions) or set replication.factor to match"
            )
        if not changed:
            up_to_date.append(t.name)

    grows = _check_repartition(admin, grows, topics, cluster_partitions, allow_repartition, timeout, bootstrap,
                               client_config)
    if scope:
        for name in sorted(cluster):
            if name.startswith(scope) and name not in wanted:
                destructive.append(
                    Action(
                        "delete",
                        name,
                        refused=None if allow_delete else "deleting a topic loses its records",
                        flag=DELETE_FLAG,
                    )
                )
    return TopicChanges(bootstrap, tuple(creates + alters + grows + destructive), tuple(up_to_date), tuple(warnings))


def _check_repartition(
    admin: AdminClient,
    grows: list[Action],
    topics: Sequence[WantedTopic],
    cluster_partitions: Mapping[str, int],
    allow: bool,
    timeout: float,
    bootstrap: str,
    client_config: Mapping[str, str] | None,
) -> list[Action]:
    kinds = {t.name: t.kind for t in topics}
    keyed = [a for a in grows if kinds.get(a.topic) in KEYED_KINDS]
    if allow or not keyed:
        return grows
    pending = {
        stage: n for stage, n in pending_counts(admin, topics, cluster_partitions, timeout, bootstrap, client_config).items() if n
    }
    if not pending:
        return grows
    busy = ", ".join(f"{stage} ({n})" for stage, n in sorted(pending.items()))
    # Data and changelog topics are co-partitioned: all grow together or none does.
    reason = (
        f"adding partitions remaps item ids to partitions and stages have pending items: {busy}; "
        "drain them first (or accept that their lookup by id may fail)"
    )
    return [
        Action(a.kind, a.topic, a.partitions, a.current_partitions, refused=reason, flag=REPARTITION_FLAG)
        if a in keyed
        else a
        for a in grows
    ]


def apply_topics(
    changes: TopicChanges,
    *,
    client_config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> list[Action]:
    """Carry out the changes (all of them, or nothing if any action is refused); returns what was done."""
    if changes.refused:
        reasons = "; ".join(f"{a.kind} {a.topic}: {a.refused} ({a.flag})" for a in changes.refused)
        raise ConfigError(f"refusing to apply the topic plan on {changes.bootstrap}: {reasons}")
    admin = _admin(changes.bootstrap, client_config)
    done: list[Action] = []
    by_kind: dict[str, list[Action]] = {}
    for a in changes.actions:
        by_kind.setdefault(a.kind, []).append(a)

    removed = [a.topic for a in by_kind.get("delete", []) + by_kind.get("recreate", [])]
    if removed:
        for name, f in admin.delete_topics(removed, operation_timeout=timeout).items():
            _result(f, f"delete topic {name}", timeout, changes.bootstrap)
        _wait_gone(admin, removed, timeout)
        done += by_kind.get("delete", [])
    creates = by_kind.get("create", []) + by_kind.get("recreate", [])
    if creates:
        new = [
            NewTopic(a.topic, a.partitions or 1, a.replication_factor or 1, config=dict(a.config))
            for a in creates
        ]
        for name, f in admin.create_topics(new, operation_timeout=timeout).items():
            _result(f, f"create topic {name}", timeout, changes.bootstrap)
        done += creates
    alters = by_kind.get("alter-config", [])
    if alters:
        resources = [
            ConfigResource(
                ResourceType.TOPIC,
                a.topic,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in sorted(a.config.items())
                ],
            )
            for a in alters
        ]
        for res, f in admin.incremental_alter_configs(resources, request_timeout=timeout).items():
            _result(f, f"alter config of topic {res.name}", timeout, changes.bootstrap)
        done += alters
    grows = by_kind.get("add-partitions", [])
    if grows:
        parts = [NewPartitions(a.topic, a.partitions or 1) for a in grows]
        for name, f in admin.create_partitions(parts, operation_timeout=timeout).items():
            _result(f, f"add partitions to topic {name}", timeout, changes.bootstrap)
        done += grows
    _wait_applied(admin, done, timeout, changes.bootstrap)
    return done


def _wait_applied(admin: AdminClient, done: Sequence[Action], timeout: float, bootstrap: str) -> None:
    """Until the cluster shows every action in `done`.

    Kafka applies topic changes asynchronously: an admin request answers once the controller
    has made the change, and brokers' metadata and configs follow a moment later. Returning
    earlier would let the next `plan_topics` (or a stage starting on a new topic) see the old state.
    """
    deadline = time.monotonic() + timeout
    while waiting := _not_yet_visible(admin, done, timeout, bootstrap):
        if time.monotonic() >= deadline:
            raise ConfigError(f"not visible in the cluster {timeout:.0f}s after they were applied: {', '.join(waiting)}")
        time.sleep(0.1)


def _not_yet_visible(admin: AdminClient, done: Sequence[Action], timeout: float, bootstrap: str) -> list[str]:
    listed = admin.list_topics(timeout=timeout).topics
    waiting: list[str] = []
    alters: list[Action] = []
    for a in done:
        t = listed.get(a.topic)
        if a.kind == "delete":
            if t is not None:
                waiting.append(f"delete {a.topic}")
        elif a.kind == "alter-config":
            alters.append(a)
        elif (
            t is None
            or len(t.partitions) != (a.partitions or 1)
            or any(p.leader < 0 for p in t.partitions.values())
        ):
            waiting.append(f"{a.kind} {a.topic}")
    if alters:
        configs = _describe_configs(admin, (a.topic for a in alters), timeout, bootstrap)
        waiting += [
            f"alter-config {a.topic}"
            for a in alters
            if any(configs.get(a.topic, {}).get(k) != v for k, v in a.config.items())
        ]
    return waiting


def _wait_gone(admin: AdminClient, names: Sequence[str], timeout: float) -> None:
    """Deletion is asynchronous in Kafka; creating the same name too early fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        present = set(admin.list_topics(timeout=timeout).topics)
        if not present.intersection(names):
            return
        time.sleep(0.2)
    raise ConfigError(f"topics {', '.join(names)} were still listed {timeout:.0f}s after deletion")
