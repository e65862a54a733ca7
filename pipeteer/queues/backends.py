"""Backends named by URL: `memory://`, `sqlite:///path/queues.db` (the default), `kafka://host:port`.

Each backend is in its own module (`memory`, `sqlite/`, `kafka/`); this one reads a URL, the options
the embedded backends share, and hands the rest to the backend it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from pipeteer import settings
from pipeteer.codec.claimcheck import claim_check_from
from pipeteer.errors import ConfigError
from pipeteer.queues.base import NO_HOOKS, Backend, QueueHooks, Retry
from pipeteer.queues.memory import MemoryBackend

if TYPE_CHECKING:
    from pipeteer.plan import Plan

DEFAULT_BACKEND = "sqlite:///queues.db"

SQLITE_OPTIONS = ("claim_seconds", "schema_dir")
"""The URL options of `sqlite:` besides those of every embedded backend (`blobs=`, `claim_check_bytes=`, retries)."""


def backend_from_url(
    url: str | None,
    *,
    workflow_name: str | None = None,
    env: Mapping[str, str] | None = None,
    plan: Plan | None = None,
    hooks: QueueHooks = NO_HOOKS,
) -> Backend:
    """The backend a URL names. None means `$PIPETEER_BACKEND`, else the SQLite default.

    With `plan`, the backend is bound to it at once (`Backend.bind`: a Kafka backend reads nothing
    unbound) and `workflow_name` defaults to the plan's workflow's. `hooks`: what a service gives the
    queues the backend makes (its retry policy, who counts dead letters).

    >>> backend_from_url("sqlite:///data/q.db", workflow_name="wf").path
    'data/q.db'
    >>> backend_from_url("sqlite:////var/lib/q.db", workflow_name="wf").path
    '/var/lib/q.db'
    >>> backend_from_url("sqlite:///q.db?blobs=off", workflow_name="wf", env={}).claim is None
    True
    """
    backend = _from_url(url, workflow_name, env, plan, hooks)
    if plan is not None:
        backend.bind(plan)
    return backend


def _from_url(
    url: str | None, workflow_name: str | None, env: Mapping[str, str] | None, plan: Plan | None, hooks: QueueHooks
) -> Backend:
    env = settings.environ(env)
    url = url or settings.BACKEND.get(env) or DEFAULT_BACKEND
    parts = urlsplit(url)
    if parts.scheme in ("memory", "sqlite"):
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        known = ["blobs", "claim_check_bytes", *settings.RETRY_OPTIONS, *(SQLITE_OPTIONS if parts.scheme == "sqlite" else ())]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"backend URL {url!r}: unknown option(s) {unknown}; known: {', '.join(known)}")
        blobs = env.get(settings.BLOBS.name, options.get("blobs"))
        threshold = env.get(settings.CLAIM_CHECK_BYTES.name, options.get("claim_check_bytes"))
        # the retry policy: URL query < environment, as on Kafka
        retry = Retry.from_options({k: env.get(v, options.get(k, "")) for k, v in settings.RETRY_OPTIONS.items()},
                                   f"backend URL {url!r}")
    if parts.scheme == "memory":
        claim = claim_check_from(blobs, threshold, where=f"backend URL {url!r}")
        return MemoryBackend(url, claim=claim, retry=retry, hooks=hooks)
    if parts.scheme == "sqlite":
        from pipeteer.queues.sqlite import SqliteBackend  # here: the Kafka commands need no SQLite

        return SqliteBackend.from_url(url, options, env, blobs=blobs, threshold=threshold, retry=retry, hooks=hooks)
    if parts.scheme == "kafka":
        try:
            from pipeteer.queues.kafka import KafkaBackend
        except ImportError as e:
            raise ConfigError(
                f"backend URL {url!r} needs the Kafka extra: pip install 'pipeteer[kafka]' ({e})"
            ) from e
        return KafkaBackend.from_url(url, workflow_name=workflow_name, env=env, plan=plan, hooks=hooks)
    raise ConfigError(
        f"unknown backend URL {url!r}: use memory://, sqlite:///path/queues.db or kafka://host:port "
        f"(query options: {dict(parse_qsl(parts.query)) or 'none'})"
    )
