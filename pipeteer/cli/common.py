"""What every `pipeteer` command shares: how an APP and a backend are given, and how a command's
Kafka client errors become one line naming the brokers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from pipeteer import settings
from pipeteer.errors import PipeteerError
from pipeteer.runtime.app import App, load_app
from pipeteer.spec import Workflow

Command = Callable[[argparse.Namespace], int]

APP_HELP = "the app, as module:attribute (e.g. topologies.perspective_correction:app)"
BACKEND_HELP = f"memory://, sqlite:///path.db or kafka://host:port (default: ${settings.BACKEND.name}, else sqlite:///queues.db)"


def add_app(p: argparse.ArgumentParser, what: str = APP_HELP) -> None:
    p.add_argument("app", help=what)


def add_backend(p: argparse.ArgumentParser, what: str = BACKEND_HELP) -> None:
    p.add_argument("--backend", default=None, help=what)


def workflow_of(ref: str) -> Workflow[Any, Any]:
    """The workflow of an APP (an `App`, or a bare `Workflow`), as `module:attribute`."""
    obj = load_app(ref)
    return obj.workflow if isinstance(obj, App) else obj


def backend_url(args: argparse.Namespace) -> str | None:
    """The backend a command uses: `--backend`, else `$PIPETEER_BACKEND` (None: the SQLite default)."""
    return getattr(args, "backend", None) or settings.BACKEND.get()


def kafka_brokers(args: argparse.Namespace) -> str | None:
    """The Kafka bootstrap servers a command talks to, if it talks to Kafka: `--bootstrap`, or the
    host:port of a kafka:// backend URL (secrets never are in that part)."""
    if getattr(args, "bootstrap", None):
        return str(args.bootstrap)
    url = backend_url(args) or ""
    if url.startswith("kafka://"):
        return settings.KAFKA_BOOTSTRAP_SERVERS.get() or url[len("kafka://") :].split("?")[0].split("/")[0]
    return None


class KafkaClientError(PipeteerError):
    """A Kafka client error a command met, said in one line: the brokers, the command, the error."""


def translate_kafka_error(error: BaseException, args: argparse.Namespace) -> PipeteerError | None:
    """A Kafka client exception (librdkafka's `KafkaException`) as one clear error naming the brokers
    and what failed; None for any other exception."""
    kafka = sys.modules.get("confluent_kafka")  # loaded if, and only if, the command used a Kafka client
    if kafka is None or not isinstance(error, kafka.KafkaException):
        return None
    from pipeteer.queues.kafka.health import translate

    brokers = kafka_brokers(args) or "(unknown brokers)"
    unreachable = translate(error, brokers)
    if isinstance(unreachable, PipeteerError):
        return unreachable
    err = error.args[0] if error.args else error
    said = f"{err.str()} ({err.name()})" if isinstance(err, kafka.KafkaError) else str(err)
    return KafkaClientError(f"{command_name(args)}: the Kafka brokers at {brokers} answered: {said}")


def command_name(args: argparse.Namespace) -> str:
    """`dlq list`, `topics apply`, `status`: the command as typed."""
    words = [getattr(args, "command", None)]
    words += [getattr(args, f"{args.command}_command", None)] if getattr(args, "command", None) else []
    return " ".join(w for w in words if w) or "pipeteer"
