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

A `kafka://` backend URL is read here too, once (`kafka_url`), since its options are these variables
in lower case: the Kafka backend (`KafkaSettings.from_url`) and the compiler
(`TopologyConfig.of_backend`) read the same brokers, prefix and topic options from it.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import parse_qsl, unquote, urlsplit

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

RETRY_OPTIONS = {"retries": RETRIES.name, "retry_backoff_ms": RETRY_BACKOFF_MS.name,
                 "retry_backoff_max_ms": RETRY_BACKOFF_MAX_MS.name}
"""The retry policy's URL options and the environment variables that override them, on every backend."""

KAFKA_OPTIONS = {
    "prefix": TOPIC_PREFIX.name,
    "topic_profile": TOPIC_PROFILE.name,
    "partitions": PARTITIONS.name,
    "replication_factor": REPLICATION_FACTOR.name,
    "create_topics": CREATE_TOPICS.name,
    "commit_interval_ms": COMMIT_INTERVAL_MS.name,
    "commit_records": COMMIT_RECORDS.name,
    "transaction_timeout_ms": TRANSACTION_TIMEOUT_MS.name,
    "max_pending": MAX_PENDING.name,
    "max_pending_bytes": MAX_PENDING_BYTES.name,
    **RETRY_OPTIONS,
    "instance": INSTANCE.name,
    "static_membership": STATIC_MEMBERSHIP.name,
    "schema_registry": SCHEMA_REGISTRY.name,
    "schema_dir": SCHEMA_DIR.name,
    "blobs": BLOBS.name,
    "claim_check_bytes": CLAIM_CHECK_BYTES.name,
}
"""Each option of a kafka:// URL and the variable that overrides it (a dotted name is a client property)."""

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


# --- secrets, and the one reader of a kafka:// URL -----------------------------------------------

_SECRET_WORDS = ("password", "secret", "token", "key.pem", "keystore", "private", "sasl.jaas", "oauthbearer.config")


def is_secret(key: str) -> bool:
    """Whether a client property holds a secret (its value is never printed)."""
    k = key.lower()
    return any(w in k for w in _SECRET_WORDS)


def mask_url(url: str) -> str:
    """`url` with the values of secret query options (and any password) replaced by `***`.

    >>> mask_url("kafka://b:9093?sasl.username=app&sasl.password=hunter2")
    'kafka://b:9093?sasl.username=app&sasl.password=***'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{k}={'***' if is_secret(k) else v}" for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def mask(properties: Mapping[str, str]) -> dict[str, str]:
    """The properties with secret values replaced by `***`, for logs and reprs."""
    return {k: ("***" if is_secret(k) else v) for k, v in properties.items()}


@dataclass(frozen=True, repr=False)
class KafkaUrl:
    """A kafka:// URL read under the environment (`kafka_url`): which brokers, which librdkafka client
    properties (dotted names), which of pipeteer's own options (`KAFKA_OPTIONS`). Secrets are masked in
    `repr`.

    >>> kafka_url("kafka://k1:9092,k2:9092?prefix=acme&sasl.password=x", {"PIPETEER_PARTITIONS": "8"})
    KafkaUrl(servers='k1:9092,k2:9092', properties={'sasl.password': '***'}, options={'prefix': 'acme', 'partitions': '8'})
    """

    shown: str
    """The URL as given, secrets masked: what messages name."""
    servers: str
    properties: Mapping[str, str]
    options: Mapping[str, str]

    @property
    def where(self) -> str:
        """`backend URL '...'`: the subject of a message about this URL."""
        return f"backend URL {self.shown!r}"

    def number(self, key: str, default: int) -> int:
        """The option `key` as a whole number >= 0 (`default` when not given)."""
        raw = self.options.get(key)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"Kafka backend option {key}={raw!r} is not an integer") from None
        if value < 0:
            raise ConfigError(f"Kafka backend option {key}={raw!r} must not be negative")
        return value

    def positive(self, key: str) -> int | None:
        """The option `key` as a whole number >= 1, None when not given."""
        if not self.options.get(key):
            return None
        value = self.number(key, 0)
        if value < 1:
            raise ConfigError(f"Kafka backend option {key}={self.options[key]!r} must be at least 1")
        return value

    def __repr__(self) -> str:
        return (
            f"KafkaUrl(servers={self.servers!r}, properties={mask(self.properties)!r}, "
            f"options={mask(self.options)!r})"
        )


def kafka_url(url: str, env: Mapping[str, str] | None = None) -> KafkaUrl:
    """Read `kafka://host:port[,host2:port]?options`: the one parser of a Kafka backend URL.

    Each variable wins over the URL: `PIPETEER_KAFKA_BOOTSTRAP_SERVERS` over its host:port,
    `PIPETEER_KAFKA_<PROPERTY>` over its dotted options, the variable of each of `KAFKA_OPTIONS` over
    that option. `ConfigError` for another scheme or an unknown option (secrets masked).
    """
    env = environ(env)
    parts = urlsplit(url)
    if parts.scheme != "kafka":
        raise ConfigError(f"not a Kafka backend URL: {mask_url(url)!r} (write kafka://host:port)")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    properties = {k: v for k, v in query.items() if "." in k}
    options = {k: v for k, v in query.items() if "." not in k}
    properties.update(kafka_properties(env))
    options.update({key: env[var] for key, var in KAFKA_OPTIONS.items() if var in env})
    unknown = sorted(set(options) - set(KAFKA_OPTIONS))
    if unknown:
        raise ConfigError(
            f"backend URL {mask_url(url)!r}: unknown option(s) {unknown}; known: {sorted(KAFKA_OPTIONS)} "
            "and librdkafka client properties by their dotted names"
        )
    servers = KAFKA_BOOTSTRAP_SERVERS.get(env) or unquote(parts.netloc)
    properties.pop("bootstrap.servers", None)
    # The producer's transaction timeout is the backend's own option (the engine sets it, and
    # bounds its waits by it): the client property, e.g. PIPETEER_KAFKA_TRANSACTION_TIMEOUT_MS,
    # sets that option when the option itself is not given, instead of being overridden unseen.
    if "transaction.timeout.ms" in properties:
        options.setdefault("transaction_timeout_ms", properties.pop("transaction.timeout.ms"))
    return KafkaUrl(mask_url(url), servers, MappingProxyType(properties), MappingProxyType(options))
