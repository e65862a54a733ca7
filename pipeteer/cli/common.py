"""What every `pipeteer` command shares: how an APP and a backend are given, which Kafka brokers a
command talks to (`kafka_settings`, the one answer), and how a command's Kafka client errors become
one line naming the brokers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipeteer import settings
from pipeteer.errors import ConfigError, PipeteerError
from pipeteer.runtime.app import App, load_app
from pipeteer.spec import Workflow

if TYPE_CHECKING:
    from pipeteer.queues.kafka.config import KafkaSettings

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


def kafka_settings(args: argparse.Namespace, needed: str, env: Mapping[str, str] | None = None) -> KafkaSettings:
    """The Kafka backend a command talks to, parsed by the one parser of a kafka:// URL
    (`pipeteer.settings.kafka_url`, through `KafkaSettings.from_url`): every command that takes brokers asks this.

    The precedence is `pipeteer.settings`'. The backend URL is `--backend`, else `$PIPETEER_BACKEND`;
    its brokers are replaced by `$PIPETEER_KAFKA_BOOTSTRAP_SERVERS`, and both by `--bootstrap` (the flag
    beats the variable of the same setting); with no kafka:// URL, `--bootstrap` or that variable
    names the brokers alone. Every other option (client properties such as `security.protocol`,
    `prefix`, `topic_profile`, ...) is the URL's query under the `PIPETEER_*` variables. A `ConfigError`
    names the command, where the value was given and what is wrong (secrets masked); `needed` says
    why the command needs Kafka (e.g. "only a Kafka backend has topics").
    """
    from pipeteer.queues.kafka.config import KafkaSettings

    where, url = _kafka_url(args, needed, env)
    try:
        parsed = KafkaSettings.from_url(url, env)
    except ConfigError as e:
        raise ConfigError(f"{command_name(args)} {where}: {e}") from None
    flag = getattr(args, "bootstrap", None)
    if flag:
        parsed = replace(parsed, connection=replace(parsed.connection, bootstrap_servers=str(flag)))
    return parsed


def _kafka_url(args: argparse.Namespace, needed: str, env: Mapping[str, str] | None) -> tuple[str, str]:
    """Where the command's kafka:// URL is given, and the URL (`--bootstrap` or the variable alone make one)."""
    command = command_name(args)
    flag = getattr(args, "bootstrap", None)
    if flag and any(c in str(flag) for c in "/?@ "):
        raise ConfigError(
            f"{command} --bootstrap {str(flag)!r}: not HOST:PORT[,HOST:PORT...] (a URL with options goes in --backend)"
        )
    servers = settings.KAFKA_BOOTSTRAP_SERVERS.get(env)
    given = getattr(args, "backend", None)
    where, url = ("--backend", given) if given else (f"${settings.BACKEND.name}", settings.BACKEND.get(env))
    if url:
        if urlsplit(url).scheme == "kafka" and "://" in url:
            return where, url
        if given or not (flag or servers):  # a backend URL set in the environment for other commands yields
            shown = settings.mask_url(url) if "://" in url else settings.mask_url(url).removeprefix("://")
            raise ConfigError(
                f"{command} {where} {shown!r}: not a kafka:// URL ({needed}); give kafka://HOST:PORT[?options]"
            )
    if flag:
        return "--bootstrap", f"kafka://{flag}"
    if servers:
        return f"${settings.KAFKA_BOOTSTRAP_SERVERS.name}", f"kafka://{servers}"
    bootstrap = " --bootstrap HOST:PORT or" if hasattr(args, "bootstrap") else ""
    raise ConfigError(
        f"{command}: which Kafka brokers? ({needed}) give{bootstrap} --backend kafka://HOST:PORT[?options], "
        f"or set {settings.BACKEND.name}=kafka://HOST:PORT or {settings.KAFKA_BOOTSTRAP_SERVERS.name}=HOST:PORT"
    )


def kafka_brokers(args: argparse.Namespace) -> str | None:
    """The Kafka bootstrap servers a command talks to (`kafka_settings`' answer; secrets never are in
    it), None if it names none or names them wrongly (said elsewhere)."""
    try:
        return kafka_settings(args, "its Kafka client").connection.bootstrap_servers
    except PipeteerError:
        return None


def translate_kafka_error(error: BaseException, args: argparse.Namespace) -> PipeteerError | None:
    """A Kafka client exception (librdkafka's `KafkaException`) as one clear error naming the brokers
    and what failed; None for any other exception."""
    kafka = sys.modules.get("confluent_kafka")  # loaded if, and only if, the command used a Kafka client
    if kafka is None or not isinstance(error, kafka.KafkaException):
        return None
    from pipeteer.queues.kafka.health import client_error

    translated = client_error(error, kafka_brokers(args) or "(unknown brokers)", command_name(args))
    return translated if isinstance(translated, PipeteerError) else None


def command_name(args: argparse.Namespace) -> str:
    """`dlq list`, `topics apply`, `status`: the command as typed."""
    words = [getattr(args, "command", None)]
    words += [getattr(args, f"{args.command}_command", None)] if getattr(args, "command", None) else []
    return " ".join(w for w in words if w) or "pipeteer"
