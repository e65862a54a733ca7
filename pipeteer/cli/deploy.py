"""The deployment commands, over the compile layer: `describe`, `compile`, `topics plan`, `topics apply`.

Each `cmd_*` takes the parsed arguments and returns an exit code (0 ok, 1 refused / drift; errors
raise `PipeteerError`). `describe APP --backend kafka://…` prints the topics that backend creates
(its prefix and topic profile), the same settings `run` on that URL uses; `topics plan/apply APP
--backend kafka://…` plans and applies those. Brokers and client properties come from
`pipeteer.cli.common.kafka_settings`, as for every command: `--bootstrap`, `--backend` or the
environment, parsed once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeteer.cli.common import APP_HELP, command_name, kafka_settings
from pipeteer.compile.config import TopologyConfig
from pipeteer.compile.manifests import STRIMZI_CLUSTER
from pipeteer.compile.topology import TopicSpec, Topology, build_topology
from pipeteer.errors import ConfigError
from pipeteer.settings import TOPIC_PREFIX
from pipeteer.spec.names import DEFAULT_PREFIX

if TYPE_CHECKING:
    from pipeteer.queues.kafka.admin import TopicChanges
    from pipeteer.queues.kafka.config import KafkaSettings

TOPICS_NEED_KAFKA = "only a Kafka backend has topics"


def _config(args: argparse.Namespace) -> TopologyConfig:
    """The topic settings: those the `--backend` creates (its prefix, topic_profile, partitions,
    replication_factor and their variables), else the compiled manifests' (--config, --profile, --set)."""
    if getattr(args, "backend", None) is not None:
        if getattr(args, "config", None) or getattr(args, "profile", None) or getattr(args, "set", None):
            raise ConfigError(
                f"{command_name(args)}: --backend means the topics that backend creates, which no --config, "
                "--profile or --set changes (they are for compiled manifests): give one or the other"
            )
        backend = kafka_settings(args, TOPICS_NEED_KAFKA)
        return TopologyConfig(
            prefix=backend.connection.prefix,
            profile=backend.topics.profile,
            command_line=backend.topics.overrides(),
        )
    return TopologyConfig.load(
        getattr(args, "config", None),
        profile=getattr(args, "profile", None),
        sets=getattr(args, "set", None) or (),
    )


def _topology(args: argparse.Namespace) -> Topology:
    from pipeteer.runtime.app import require_app

    app = require_app(args.app)
    return build_topology(app, _config(args), app_ref=args.app)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """--config FILE, --profile NAME, --set KEY=VALUE (see pipeteer.compile.config for the precedence)."""
    p.add_argument(
        "--config", metavar="FILE", help="topology config (YAML): workflow, topics, stages, profiles"
    )
    p.add_argument("--profile", metavar="NAME", help="apply this profile from the config file's 'profiles:'")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a topic setting for every topic, last and strongest (e.g. --set replication.factor=1)",
    )


def cmd_describe(args: argparse.Namespace) -> int:
    """`pipeteer describe APP [--mermaid]`: the compiled topology as stable text or a Mermaid diagram."""
    from pipeteer.compile.describe import describe_text, mermaid

    topology = _topology(args)
    sys.stdout.write(mermaid(topology) if args.mermaid else describe_text(topology))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    """`pipeteer compile APP -o DIR [--compose FILE] [--check]`: write (or check) every artifact."""
    from pipeteer.compile.emit import compile_to
    from pipeteer.runtime.app import require_app

    app = require_app(args.app)
    if not args.check:
        for path in compile_to(
            app,
            args.output,
            _config(args),
            app_ref=args.app,
            compose_file=args.compose,
            strimzi_cluster=args.strimzi_cluster,
        ):
            print(path)
        return 0
    # --check: compile into a scratch copy laid out like the real one, then compare file by file
    with tempfile.TemporaryDirectory() as tmp:
        out, scratch = Path(args.output), Path(tmp) / "out"
        compose = Path(tmp) / "compose" / Path(args.compose).name if args.compose else None
        if compose is not None:
            # keep the compiled directory's path relative to the compose file as it is for real
            rel = os.path.relpath(out.resolve(), Path(args.compose).resolve().parent)
            scratch = (compose.parent / rel).resolve()
        fresh = compile_to(
            app,
            scratch,
            _config(args),
            app_ref=args.app,
            compose_file=compose,
            strimzi_cluster=args.strimzi_cluster,
        )
        pairs = [(p, out / p.relative_to(scratch)) for p in fresh if p != compose]
        if compose is not None and args.compose:
            pairs.append((compose, Path(args.compose)))
        drift = [real for new, real in pairs if not real.exists() or real.read_bytes() != new.read_bytes()]
    for real in drift:
        print(f"out of date: {real}", file=sys.stderr)
    if drift:
        print(f"regenerate with: pipeteer compile {args.app} -o {args.output}", file=sys.stderr)
        return 1
    return 0


def _wanted(args: argparse.Namespace) -> tuple[list[TopicSpec], str]:
    """The wanted topics (from --topics FILE, else compiled from APP) and the workflow's topic scope."""
    if args.topics:
        import yaml

        from pipeteer.compile.manifests import load_topics_document

        path = Path(args.topics)
        try:
            raw: Any = yaml.safe_load(path.read_text())
        except OSError as e:
            raise ConfigError(f"cannot read {str(path)!r}: {e.strerror}") from None
        topics = load_topics_document(raw, str(path))
        scope = ".".join(p for p in (raw.get("prefix"), raw.get("workflow")) if p) + "."
        return topics, scope
    topology = _topology(args)
    return list(topology.topics), ".".join(p for p in (topology.prefix, topology.workflow) if p) + "."


def _admin_config(backend: KafkaSettings) -> dict[str, str]:
    """The client properties an admin client takes (the URL's and the environment's, security included)."""
    connection = backend.connection
    return {k: str(v) for k, v in connection.client_config("admin").items() if k in connection.properties}


def _changes(args: argparse.Namespace) -> tuple[TopicChanges, KafkaSettings]:
    """What `topics plan` prints and `topics apply` carries out, and the backend they talk to."""
    from pipeteer.queues.kafka.admin import plan_topics

    backend = kafka_settings(args, TOPICS_NEED_KAFKA)
    topics, scope = _wanted(args)
    prefix = backend.connection.prefix
    if prefix != DEFAULT_PREFIX and not scope.startswith(f"{prefix}."):
        # the URL's ?prefix= (or $PIPETEER_TOPIC_PREFIX) names other topics than these: never planned silently
        raise ConfigError(
            f"{command_name(args)}: the backend's topic prefix is {prefix!r} (its URL's ?prefix= or "
            f"${TOPIC_PREFIX.name}) but the topics are {scope}* (the prefix of --config or --topics): the "
            "stages would not use them; give the same prefix to both"
        )
    changes = plan_topics(
        topics,
        backend.connection.bootstrap_servers,
        scope=scope,
        allow_delete=args.allow_delete,
        allow_repartition=args.allow_repartition,
        client_config=_admin_config(backend),
    )
    return changes, backend


def cmd_topics_plan(args: argparse.Namespace) -> int:
    """`pipeteer topics plan APP --bootstrap HOST:PORT`: print what apply would do; 1 if some of it is refused."""
    changes, _ = _changes(args)
    sys.stdout.write(changes.text())
    return 1 if changes.refused else 0


def cmd_topics_apply(args: argparse.Namespace) -> int:
    """`pipeteer topics apply APP --bootstrap HOST:PORT`: create/alter topics; refuses destructive changes."""
    from pipeteer.queues.kafka.admin import apply_topics

    changes, backend = _changes(args)
    sys.stdout.write(changes.text())
    if changes.refused:
        print("pipeteer: nothing applied: some actions are refused (see above)", file=sys.stderr)
        return 1
    done = apply_topics(changes, client_config=_admin_config(backend))
    print(f"applied {len(done)} action(s)")
    return 0


def register(sub: Any) -> None:
    """Add `describe`, `compile` and `topics {plan,apply}` to an argparse subparsers object."""
    app_help = APP_HELP

    p = sub.add_parser("describe", help="print the compiled topology (stages, topics, groups, routes)")
    p.add_argument("app", help=app_help)
    p.add_argument("--mermaid", action="store_true", help="print a Mermaid flowchart instead of text")
    p.add_argument(
        "--backend",
        metavar="URL",
        help="print the topics the Kafka backend at URL creates (prefix, topic_profile, partitions, ...), "
        "as `pipeteer run APP --backend URL` does; default: the compiled manifests' topics",
    )
    add_config_arguments(p)
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("compile", help="write topics.yaml, Strimzi topics, Helm values, dashboard, diagrams")
    p.add_argument("app", help=app_help)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--compose", metavar="FILE", help="also write a docker-compose stack to FILE")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if DIR is out of date")
    p.add_argument(
        "--strimzi-cluster",
        default=STRIMZI_CLUSTER,
        metavar="NAME",
        help="Strimzi Kafka resource of the KafkaTopics",
    )
    add_config_arguments(p)
    p.set_defaults(func=cmd_compile)

    topics = sub.add_parser("topics", help="compare and apply the workflow's Kafka topics")
    tsub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    for name, func, text in (
        ("plan", cmd_topics_plan, "show what apply would change"),
        ("apply", cmd_topics_apply, "create topics, alter configs, add partitions"),
    ):
        t = tsub.add_parser(name, help=text)
        t.add_argument("app", help=app_help)
        t.add_argument(
            "--bootstrap",
            metavar="HOST:PORT",
            help="the Kafka brokers, over --backend's and $PIPETEER_KAFKA_BOOTSTRAP_SERVERS "
            "(default: $PIPETEER_KAFKA_BOOTSTRAP_SERVERS, else the backend URL's host:port)",
        )
        t.add_argument(
            "--backend",
            metavar="URL",
            help="the Kafka backend kafka://HOST:PORT?options (default: $PIPETEER_BACKEND): its brokers and "
            "client properties, and the topics it creates (prefix, topic_profile, ...) as `describe --backend` "
            "prints them; without it, the compiled manifests' topics (--config, --profile, --set)",
        )
        t.add_argument(
            "--topics", metavar="FILE", help="use this compiled topics.yaml instead of compiling APP"
        )
        t.add_argument(
            "--allow-delete", action="store_true", help="allow deleting/recreating topics (loses records)"
        )
        t.add_argument(
            "--allow-repartition",
            action="store_true",
            help="allow adding partitions to keyed topics while stages have pending items",
        )
        add_config_arguments(t)
        t.set_defaults(func=func)
