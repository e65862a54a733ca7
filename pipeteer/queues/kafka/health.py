"""What the Kafka clients say about the cluster: librdkafka's logs through Python logging, rate-limited,
and an unreachable cluster reported once, clearly, with what to check.

librdkafka logs each failed connection attempt of each client (admin, producers, consumers) on
stderr: with the brokers away that is a line every few hundred milliseconds per client, none
naming what to do. Here every client of a process gets the same `ClientLog` (its `logger`
property: logs are delivered by the client's own poll/consume calls, on the thread that makes
them) and the same `BrokerWatch` (its `error_cb`): a message is logged once per `interval` per
distinct text (numbers masked), with the count of repeats it stood for; the first error that
says the cluster cannot be reached is logged once as an error naming the bootstrap servers and
what to check, and `reason()` says the same to `/readyz` and to pages until the cluster answers.

One broker away is not the cluster away (a rolling restart, a broker killed or stalled: the others
serve meanwhile): it is one warning naming that broker, and one more when the clients' statistics
see it up again (`broker_down`, `brokers_seen`); librdkafka's own per-connection FAIL lines, one per
client and attempt, are debug lines.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from pipeteer.errors import BrokerUnreachable, KafkaClientError

log = logging.getLogger("pipeteer.kafka.client")

INTERVAL = 60.0
"""Seconds during which a repeated message is counted instead of logged again."""

UNREACHABLE = frozenset({
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TRANSPORT,
    KafkaError._RESOLVE,
    KafkaError._TIMED_OUT,
})
"""Errors of a client call that mean: no broker of the cluster answered it (`translate`). As the
`error_cb` of a client, only `_ALL_BROKERS_DOWN` means that; the others are about one broker."""

_DOWN_COUNT = re.compile(r"\b(\d+)/(\d+) brokers are down")
_VARYING = re.compile(r"\d+(\.\d+)?")


def _key(text: str) -> str:
    """What makes two messages "the same": their text with numbers masked (times, counts, client ids).

    >>> _key("rdkafka#consumer-2: Connect failed (after 0ms in state CONNECT)")
    'rdkafka#consumer-#: Connect failed (after #ms in state CONNECT)'
    """
    return _VARYING.sub("#", text)


class RateLimiter:
    """Logs a message at most once per `interval` per distinct text; the next one says how many were held back.

    >>> r = RateLimiter(logging.getLogger("doc"), interval=60, clock=iter([0, 1, 2, 61]).__next__)
    >>> [r.allow("connect failed (after 0ms)"), r.allow("connect failed (after 1ms)"),
    ...  r.allow("connect failed (after 5ms)"), r.allow("connect failed (after 0ms)")]
    [(True, 0), (False, 0), (False, 0), (True, 2)]
    """

    def __init__(self, logger: logging.Logger, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last logged at, repeats held back since)
        self._lock = threading.Lock()

    def allow(self, text: str, key: str | None = None) -> tuple[bool, int]:
        """(log it now?, repeats held back since it was last logged); `key` says what counts as the same."""
        key = _key(key if key is not None else text)
        now = self.clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.interval:
                self._seen[key] = (last[0], last[1] + 1)
                return False, 0
            if len(self._seen) > 1000:  # distinct texts are few; this bounds a pathological stream
                self._seen.clear()
            self._seen[key] = (now, 0)
            return True, 0 if last is None else last[1]

    def log(self, level: int, text: str, key: str | None = None) -> None:
        ok, held = self.allow(text, key)
        if ok:
            more = f" (and {held} more like it in the last {self.interval:g}s)" if held else ""
            self.logger.log(level, "%s%s", text, more)


QUIET_FACILITIES = frozenset({"FAIL"})
"""librdkafka's lines about a connection that failed or closed, one per client and attempt: the
`BrokerWatch` says each broker's change of state once, by name, so these are debug lines."""


class ClientLog:
    """librdkafka's `logger`: its messages as Python log records (confluent-kafka gives Python levels), rate-limited."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    def log(self, level: int, fmt: str, *args: Any) -> None:  # called by confluent-kafka: ("%s [%s] %s", fac, client, text)
        try:
            text = fmt % args if args else fmt
        except (TypeError, ValueError):
            text = " ".join(str(a) for a in (fmt, *args))
        # the same message from another client of the process (its name differs) is the same message
        key = f"{args[0]} {args[-1]}" if len(args) == 3 else text
        level = level if isinstance(level, int) else logging.INFO
        if len(args) == 3 and args[0] in QUIET_FACILITIES:
            level = min(level, logging.DEBUG)
        self.limiter.log(level, text, key)


SEEN_UP_AFTER = 2.0
"""Seconds after a broker was said unreachable before a client's statistics saying it is "UP" count:
statistics taken a moment before the client noticed the failure still say "UP"."""

BROKER_ERRORS = frozenset({KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._TIMED_OUT})
"""Client errors about one broker (the message names it): the others may well answer."""

_BROKER = re.compile(
    r"^(?:[^:\s]+: )?(?P<address>\[?[\w.:-]+?\]?:\d+)/(?P<node>\d+|bootstrap)\b"  # host:port/2: ...
    r"|^(?:GroupCoordinator|TxnCoordinator)(?:/\d+)?: (?P<coordinator>\[?[\w.:-]+?\]?:\d+): "  # the coordinators' links
)


def broker_named(text: str) -> str | None:
    """The broker a librdkafka message is about, as `host:port` (None when it names none).

    >>> broker_named("127.0.0.1:9092/2: Connect to ipv4#127.0.0.1:9092 failed: Connection refused")
    '127.0.0.1:9092'
    >>> broker_named("kafka-1.example:9093/bootstrap: Disconnected (after 2ms in state UP)")
    'kafka-1.example:9093'
    >>> broker_named("GroupCoordinator: 127.0.0.1:9094: Connect to ipv4#127.0.0.1:9094 failed: Connection refused")
    '127.0.0.1:9094'
    >>> broker_named("1/1 brokers are down") is None
    True
    """
    m = _BROKER.match(text)
    return None if m is None else m.group("address") or m.group("coordinator")


class BrokerWatch:
    """One process's view of one cluster: whether it is reachable, which of its brokers are not, and why.

    Two levels, said once per change each: a broker that a client cannot reach (the others may serve
    meanwhile, as they do while a broker restarts) is a warning naming that broker, and its return
    a line too; the whole cluster unreachable (`_ALL_BROKERS_DOWN`, or a call that no broker answered)
    is an error naming the bootstrap servers and what to check, and `reason()` says it to `/readyz`
    until the cluster answers again (`up`)."""

    def __init__(self, bootstrap: str, limiter: RateLimiter, clock: Callable[[], float] = time.monotonic) -> None:
        self.bootstrap = bootstrap
        self.limiter = limiter
        self.clock = clock
        self.down_since: float | None = None
        self.last_error: str | None = None
        self._told = False
        self.brokers_down: dict[str, tuple[float, str]] = {}
        """Brokers (host:port) a client could not reach, since when and why, until seen up again."""
        self.brokers_known: set[str] = set()
        """Every broker a client of this process has named (in its statistics or errors)."""
        self._lock = threading.Lock()

    def on_error(self, err: KafkaError) -> None:
        """The clients' `error_cb`."""
        text = str(err.str())
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            if self._whole_cluster(text):
                self.down(text)
            else:
                log.debug("a client's partial view: %s", text)
            return
        broker = broker_named(text) if err.code() in BROKER_ERRORS else None
        if broker is not None:
            self.broker_down(broker, text)
        else:
            self.limiter.log(logging.WARNING, f"Kafka client error: {text}")

    def _whole_cluster(self, text: str) -> bool:
        """Whether librdkafka's "k/N brokers are down" is about the whole cluster: not when k is 0 (it says
        so as a broker leaves the metadata), nor when the client knows fewer brokers than the bootstrap
        servers name (a client that has learned only its coordinator says "1/1" when that one dies)."""
        m = _DOWN_COUNT.search(text)
        if m is None:
            return True
        down, known = int(m.group(1)), int(m.group(2))
        return down > 0 and known >= len([b for b in self.bootstrap.split(",") if b.strip()])

    def broker_down(self, broker: str, why: str) -> None:
        """A client could not reach `broker`: said once, until it is seen up again."""
        with self._lock:
            self.brokers_known.add(broker)
            if broker in self.brokers_down:
                return
            self.brokers_down[broker] = (self.clock(), why)
        log.warning("Kafka broker %s unreachable (%s); the clients go on with the other brokers of %s",
                    broker, _detail(why, broker), self.bootstrap)

    def brokers_seen(self, states: dict[str, str]) -> None:
        """A client's view of its brokers (`host:port` -> librdkafka's state, from its statistics): a broker
        said down and now "UP" is back, said once."""
        back = []
        now = self.clock()
        with self._lock:
            self.brokers_known.update(states)
            for broker, state in states.items():
                since = self.brokers_down.get(broker, (now, ""))[0]
                # (statistics a client took before it noticed the broker leave still say "UP")
                if state == "UP" and broker in self.brokers_down and now - since >= SEEN_UP_AFTER:
                    back.append((broker, now - self.brokers_down.pop(broker)[0]))
        for broker, seconds in back:
            log.warning("Kafka broker %s reachable again after %.0fs", broker, seconds)

    def down(self, why: str) -> None:
        """No broker of the cluster answers."""
        self.last_error = why
        if self.down_since is None:
            self.down_since = self.clock()
        if not self._told:  # once per outage, as an error; the client messages themselves are rate-limited
            self._told = True
            log.error("%s", BrokerUnreachable(self.bootstrap, why))
        else:
            self.limiter.log(logging.WARNING, f"Kafka brokers at {self.bootstrap} still unreachable: {why}")

    def up(self) -> None:
        """The cluster answered."""
        if self.down_since is not None:
            log.warning("Kafka brokers at %s reachable again after %.0fs", self.bootstrap,
                        self.clock() - self.down_since)
        self.down_since = None
        self._told = False

    def all_down(self) -> bool:
        """Every broker this process knows is unreachable, each said so by a client: the cluster is away
        for this process (a network cut) before librdkafka says "all brokers are down", which it does
        only once every connection has failed again (20 s and more while requests time out)."""
        with self._lock:
            return bool(self.brokers_known) and self.brokers_known <= set(self.brokers_down)

    def reason(self) -> str | None:
        """Why the cluster cannot be used now (None: it answered since its last failure)."""
        if self.down_since is None:
            return None
        return str(BrokerUnreachable(self.bootstrap, self.last_error or "no answer",
                                     seconds=self.clock() - self.down_since))

    def client_config(self) -> dict[str, Any]:
        """The properties that route a client's logs and errors here."""
        return {"logger": ClientLog(self.limiter), "error_cb": self.on_error}


def _detail(why: str, broker: str) -> str:
    """A client's message about `broker` without the broker's name repeated in front."""
    m = _BROKER.match(why)
    return why[m.end():].lstrip(": ") if m is not None else why


def broker_states(stats: dict[str, Any]) -> dict[str, str]:
    """`host:port` -> state of each broker in a client's statistics (librdkafka's `stats_cb` JSON, parsed);
    the coordinator pseudo-entries are left out.

    >>> broker_states({"brokers": {"127.0.0.1:9092/1": {"state": "UP", "nodeid": 1},
    ...                            "GroupCoordinator": {"state": "UP", "nodeid": -1}}})
    {'127.0.0.1:9092': 'UP'}
    """
    out = {}
    for name, b in stats.get("brokers", {}).items():
        broker = broker_named(name)
        if broker is not None and b.get("nodeid", -1) >= 0:
            out[broker] = str(b.get("state", ""))
    return out


_watches: dict[str, BrokerWatch] = {}
_watches_lock = threading.Lock()


def watch(bootstrap: str) -> BrokerWatch:
    """The process's watch of the cluster at `bootstrap` (one per cluster: every client shares it)."""
    with _watches_lock:
        w = _watches.get(bootstrap)
        if w is None:
            w = _watches[bootstrap] = BrokerWatch(bootstrap, RateLimiter(log))
        return w


def client_error(error: BaseException, bootstrap: str, doing: str) -> BaseException:
    """The one translation of a Kafka client's exception into pipeteer's words: "no broker answered"
    as `BrokerUnreachable`, any other `KafkaException` as a `KafkaClientError` naming what was being
    done, the brokers and what they answered; anything else unchanged.

    >>> from confluent_kafka import KafkaError, KafkaException
    >>> e = client_error(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")), "b:9092",
    ...                  "creating topic 't'")
    >>> type(e).__name__, e.code == KafkaError.TOPIC_AUTHORIZATION_FAILED
    ('KafkaClientError', True)
    >>> print(e)
    creating topic 't': the Kafka brokers at b:9092 answered: denied (TOPIC_AUTHORIZATION_FAILED)
    """
    unreachable = translate(error, bootstrap)
    if unreachable is not error or not isinstance(error, KafkaException):
        return unreachable
    err = error.args[0] if error.args else None
    if not isinstance(err, KafkaError):
        return KafkaClientError(f"{doing}: the Kafka brokers at {bootstrap} answered: {err or error}")
    return KafkaClientError(f"{doing}: the Kafka brokers at {bootstrap} answered: {err.str()} ({err.name()})",
                            code=err.code())


def translate(error: BaseException, bootstrap: str) -> BaseException:
    """A client exception that means "no broker answered" as a `BrokerUnreachable`; others unchanged."""
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        err = error.args[0]
        if err.code() in UNREACHABLE:
            return BrokerUnreachable(bootstrap, str(err.str()))
    return error
