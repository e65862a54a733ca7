"""Every `PIPETEER_*` environment variable, named once, with what it does; the one reader of the environment.

Precedence everywhere: library defaults < the backend URL's query (or the workflow's config file)
< command-line flags, where a command has one < these variables, except that a flag given on the
command line beats the variable of the same setting (`--auth-token-file` over
`PIPETEER_AUTH_TOKEN_FILE`). Code asks a `Variable` (`AUTH_TOKEN_FILE.get(env)`) or `environ(env)`;
`env` is a mapping given by a caller (tests, `connect(..., env=...)`), the process environment when None.

>>> BACKEND.get({"PIPETEER_BACKEND": "memory://"})
'memory://'
>>> NO_AUTH.flag({"PIPETEER_NO_AUTH": "yes"}), NO_AUTH.flag({})
(True, False)
>>> kafka_properties({"PIPETEER_KAFKA_SASL_USERNAME": "app", "HOME": "/root"})
{'sasl.username': 'app'}
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

from pipeteer.errors import ConfigError


def environ(env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """`env`, or the process environment when None: the one place `os.environ` is read."""
    return os.environ if env is None else env


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the group it is listed under, and what it does."""

    name: str
    group: str
    doc: str

    def get(self, env: Mapping[str, str] | None = None) -> str | None:
        """The value, or None when the variable is not set."""
        return environ(env).get(self.name)

    def flag(self, env: Mapping[str, str] | None = None) -> bool:
        """Whether the variable is set to a true word: 1, true, yes or on."""
        return (self.get(env) or "").strip().lower() in ("1", "true", "yes", "on")

    def positive(self, env: Mapping[str, str] | None = None, override: object = None) -> int | None:
        """A whole number > 0 (`override` from the command line first), None when neither is given."""
        text = str(override) if override not in (None, "") else self.get(env)
        if not text:
            return None
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{self.name} must be a whole number, not {text!r}") from None
        if value <= 0:
            raise ConfigError(f"{self.name} must be positive, not {value}")
        return value


VARIABLES: list[Variable] = []
"""Every variable, in the order `pipeteer --help` lists them."""


def _var(name: str, group: str, doc: str) -> Variable:
    variable = Variable(name, group, doc)
    VARIABLES.append(variable)
    return variable


# --- every backend -------------------------------------------------------------------------------

BACKEND = _var(
    "PIPETEER_BACKEND",
    "backend",
    "the backend URL when a command has no --backend: memory://, sqlite:///path.db (default sqlite:///queues.db) "
    "or kafka://host:port",
)
BLOBS = _var(
    "PIPETEER_BLOBS",
    "backend",
    "claim check: blob store URL for large bytes values (a directory, s3://bucket/prefix, or off); "
    "SQLite's default: a directory beside the database",
)
CLAIM_CHECK_BYTES = _var(
    "PIPETEER_CLAIM_CHECK_BYTES", "backend", "bytes values above this size go to the blob store (32 KiB)"
)
RETRIES = _var(
    "PIPETEER_RETRIES", "backend", "retries of an item whose stage fails, before it is a dead letter (4)"
)
RETRY_BACKOFF_MS = _var(
    "PIPETEER_RETRY_BACKOFF_MS", "backend", "wait before the first retry, doubling after (500)"
)
RETRY_BACKOFF_MAX_MS = _var(
    "PIPETEER_RETRY_BACKOFF_MAX_MS", "backend", "longest wait between retries (30000)"
)

# --- Kafka (each also a kafka:// URL option, in lower case without the prefix) --------------------

KAFKA_PROPERTY_PREFIX = "PIPETEER_KAFKA_"
KAFKA_PROPERTIES = _var(
    "PIPETEER_KAFKA_<PROPERTY>",
    "kafka",
    "any librdkafka client property, upper case with _ for . (PIPETEER_KAFKA_SECURITY_PROTOCOL=SASL_SSL, "
    "PIPETEER_KAFKA_SASL_PASSWORD, ...); PIPETEER_KAFKA_BOOTSTRAP_SERVERS replaces the URL's host:port",
)
KAFKA_BOOTSTRAP_SERVERS = Variable(
    "PIPETEER_KAFKA_BOOTSTRAP_SERVERS", "kafka", "the brokers, over the URL's host:port"
)  # listed with PIPETEER_KAFKA_<PROPERTY>
TOPIC_PREFIX = _var(
    "PIPETEER_TOPIC_PREFIX", "kafka", "first part of every topic, group and transactional id (pipeteer)"
)
TOPIC_PROFILE = _var(
    "PIPETEER_TOPIC_PROFILE",
    "kafka",
    "settings of the topics the backend creates when missing: local (4 partitions, 1 replica) or production "
    "(6 partitions, 3 replicas, min.insync.replicas 2); `pipeteer describe APP --backend URL` prints them",
)
PARTITIONS = _var(
    "PIPETEER_PARTITIONS", "kafka", "partitions of the topics the backend creates (over the profile)"
)
REPLICATION_FACTOR = _var(
    "PIPETEER_REPLICATION_FACTOR", "kafka", "replicas of the topics the backend creates (over the profile)"
)
CREATE_TOPICS = _var(
    "PIPETEER_CREATE_TOPICS", "kafka", "false: never create topics (`pipeteer topics apply` does)"
)
COMMIT_INTERVAL_MS = _var(
    "PIPETEER_COMMIT_INTERVAL_MS", "kafka", "a stage commits its transaction this often (100)"
)
COMMIT_RECORDS = _var("PIPETEER_COMMIT_RECORDS", "kafka", "... or after this many finished items (10000)")
TRANSACTION_TIMEOUT_MS = _var(
    "PIPETEER_TRANSACTION_TIMEOUT_MS", "kafka", "the producer's transaction timeout (10000)"
)
MAX_PENDING = _var(
    "PIPETEER_MAX_PENDING", "kafka", "a stage pauses consuming while it holds this many items (10000)"
)
MAX_PENDING_BYTES = _var("PIPETEER_MAX_PENDING_BYTES", "kafka", "... or this many bytes of records (64 MiB)")
INSTANCE = _var(
    "PIPETEER_INSTANCE",
    "kafka",
    "this instance's stable name (transactional ids; static group membership if asked); default $HOSTNAME-pid",
)
STATIC_MEMBERSHIP = _var(
    "PIPETEER_STATIC_MEMBERSHIP", "kafka",
    "true: join groups as a static member named by the instance (for restarts under the same name)"
)
SCHEMA_REGISTRY = _var(
    "PIPETEER_SCHEMA_REGISTRY", "kafka", "schema registry URL: records in the Confluent wire format"
)
SCHEMA_DIR = _var(
    "PIPETEER_SCHEMA_DIR", "backend", "directory of other .avsc versions, so their records decode (every backend)"
)

# --- pipeteer run: security and the review console ----------------------------------------------

AUTH_TOKEN_FILE = _var(
    "PIPETEER_AUTH_TOKEN_FILE", "run", "reviewers' bearer tokens, one name:token a line (--auth-token-file)"
)
AUTH_PROXY_HEADER = _var(
    "PIPETEER_AUTH_PROXY_HEADER", "run", "trust this header from an auth proxy (--auth-proxy-header)"
)
AUTH_TRUSTED_PROXIES = _var(
    "PIPETEER_AUTH_TRUSTED_PROXIES",
    "run",
    "comma-separated addresses or networks of the auth proxy (--trusted-proxy)",
)
SESSION_SECRET = _var(
    "PIPETEER_SESSION_SECRET", "run", "signs the console's cookies (default: derived from the token file)"
)
METRICS_AUTH = _var("PIPETEER_METRICS_AUTH", "run", "1: /metrics needs credentials too (--metrics-auth)")
API_DOCS = _var("PIPETEER_API_DOCS", "run", "1: serve /docs and /openapi.json (--api-docs)")
MAX_BODY_BYTES = _var(
    "PIPETEER_MAX_BODY_BYTES", "run", "cap on JSON and form bodies (1 MiB; --max-body-bytes)"
)
MAX_UPLOAD_BYTES = _var("PIPETEER_MAX_UPLOAD_BYTES", "run", "cap on uploads (64 MiB; --max-upload-bytes)")
ALLOWED_ORIGINS = _var(
    "PIPETEER_ALLOWED_ORIGINS", "run", "other origins allowed to send state-changing requests"
)
NO_AUTH = _var(
    "PIPETEER_NO_AUTH",
    "run",
    "1: serve people's pages on a public address without authentication (--no-auth)",
)
CONSOLE_PEERS = _var(
    "PIPETEER_CONSOLE_PEERS",
    "run",
    "the other instances of the human stages: http://host:port,... or dns:HOST:PORT (Kafka)",
)
STALL_SECONDS = _var(
    "PIPETEER_STALL_SECONDS",
    "run",
    "a stage with work waiting and no progress this long fails /healthz, and pipeteer run exits (60; --stall-seconds)",
)
EXIT_ON_STALL = _var(
    "PIPETEER_EXIT_ON_STALL",
    "run",
    "0: a stalled pipeteer run keeps running (its /healthz still fails) instead of exiting with status 3",
)

GROUPS = {
    "backend": "every backend (also URL options: ?blobs=...&retries=...)",
    "kafka": "the Kafka backend (also kafka:// URL options, lower case: ?partitions=8&topic_profile=production)",
    "run": "pipeteer run (command-line flags win)",
}


def kafka_properties(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka client properties from `PIPETEER_KAFKA_<PROPERTY>` (`PIPETEER_KAFKA_SASL_USERNAME` ->
    `sasl.username`)."""
    prefix = KAFKA_PROPERTY_PREFIX
    return {
        k[len(prefix) :].lower().replace("_", "."): v
        for k, v in environ(env).items()
        if k.startswith(prefix) and len(k) > len(prefix)
    }


def help_text(width: int = 100) -> str:
    """Every variable by group, for the end of `pipeteer --help`."""
    lines = ["environment variables:"]
    for group, title in GROUPS.items():
        lines.append(f"  {title}:")
        for v in VARIABLES:
            if v.group == group:
                lines += textwrap.wrap(
                    f"{v.name}: {v.doc}", width, initial_indent="    ", subsequent_indent="        "
                )
    return "\n".join(lines)
