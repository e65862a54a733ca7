"""The review console's server time as pending tasks grow, on SQLite and on Kafka, beside /healthz.

    python bench/bench_console.py [--sizes 1000,10000,100000] [--backends sqlite,kafka] [--repeat 30]
        [--bootstrap HOST:PORT] [--undo-seconds S] [--quick]

For each backend and each size N, a `pipeteer run tests.apps.review:app --stage review` process
(authentication on, with a token file, so every request goes through the real middleware) serves
the human stage `review` with N tasks pending in it: pushed to the stage's queue before the
process starts (SQLite) or produced to the stage's input topic (Kafka; the process then reads them
all before it is measured, its `max_pending` raised to N: at its default, 10,000, a Kafka stage holds
that many and leaves the rest in the topic). Over one keep-alive connection, each request below is sent `--repeat`
times (after two unmeasured ones), and the table gives the median of the server's own time, the
`Server-Timing: app;dur=` the middleware adds (from the request reaching it to the answer's
start: no client, no network), with its ratio to `/healthz`, the HTTP floor measured in the same
process at the same moment:

- `GET /healthz`: the baseline (routing, middleware, uvicorn);
- `GET /`: the index (the count of pending tasks per stage);
- `GET /console/api/tasks?stage=review&offset=0&limit=50`: the first page of the listing;
- the same at `offset=N/2`: a page in the middle;
- `POST /console/api/next?stage=review&after=<the last one>`: lease the next free task;
- `POST /console/api/decide?stage=review&id=<a task just leased>` with `{"value": true}`: a fresh
  task each time (leased by a `next` that is not measured); it is applied once the undo window
  (`--undo-seconds`, default the service's) has passed.

The live view (`GET /console/api/events`) is a stream and is left out. Per N it also prints the p90,
the client's round trip (median, p90), and the server process's RSS (VmRSS) once the tasks are
loaded and after the requests.

`--quick` is a smoke run: 1,000 and 10,000 tasks (unless `--sizes` says otherwise), SQLite only.
Kafka runs on `--bootstrap`, or `$PIPETEER_TEST_KAFKA`, or a single-node Apache Kafka started as the
tests start it (`tests/kafka_broker.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeteer import connect  # noqa: E402
from tests.apps.review import Draft, app  # noqa: E402

APP = "tests.apps.review:app"
STAGE = "review"
TOKEN = "bench-token-0123456789abcdef"
LOAD_TIMEOUT = 600.0
"""How long a process may take to list every task (Kafka: read the whole input topic)."""


@dataclass
class Figures:
    """One request's figures over its repeats, in ms."""

    server: list[float]
    client: list[float]

    @staticmethod
    def _p90(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[max(0, round(len(ordered) * 0.9) - 1)]

    @property
    def median(self) -> float:
        return statistics.median(self.server)

    def line(self, name: str, floor: float) -> str:
        return (f"  {name:34} {self.median:9.2f} {self._p90(self.server):8.2f} {self.median / floor:8.1f}"
                f" {statistics.median(self.client):10.2f} {self._p90(self.client):8.2f}")


@dataclass
class Run:
    """One backend at one size: the figures per request, and the server's RSS in MiB."""

    n: int
    push_seconds: float
    listed_seconds: float  # from the start of the process until it listed every task
    rows: dict[str, Figures]
    rss_loaded: float
    rss_after: float


def server_ms(r: httpx.Response) -> float:
    """The middleware's `Server-Timing: app;dur=<ms>`."""
    timing = r.headers.get("server-timing", "")
    for part in timing.split(","):
        name, _, params = part.strip().partition(";")
        if name == "app" and params.startswith("dur="):
            return float(params[4:])
    raise RuntimeError(f"{r.request.method} {r.request.url.path}: no Server-Timing app;dur= in {timing!r}")


def measure(repeat: int, call: Callable[[int], httpx.Response], warm: int = 2,
            before: Callable[[], object] | None = None) -> Figures:
    """`call(i)` `warm` times unmeasured, then `repeat` times: server and client ms of each
    (`before()`, if given, is called unmeasured before each call)."""
    server, client = [], []
    for i in range(warm + repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        r = call(i)
        elapsed = (time.perf_counter() - t0) * 1000
        if r.status_code >= 400:
            raise RuntimeError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}")
        if i >= warm:
            server.append(server_ms(r))
            client.append(elapsed)
    return Figures(server, client)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def load(url: str, n: int) -> None:
    """`n` drafts pending in the review stage: pushed to its own queue (on Kafka, its input topic)."""
    queues = connect(app, url)
    drafts = ((f"task-{i:06d}", Draft(f"text of task {i}", f"summary {i}")) for i in range(n))
    q = queues.stage(STAGE).Qin
    try:
        # One push alone first: on Kafka every push that starts before the queue has published its
        # schema publishes it too (in a thread each), and 256 at once take ~20 s.
        await q.push(*next(drafts))
        await q.push_many(drafts, concurrency=256)
    finally:
        queues.backend.close()  # (Kafka: flushes the producer)


@contextmanager
def service(url: str, tmp: Path, undo_seconds: float | None) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`pipeteer run` of the review stage on `url`, with authentication on; its output goes to a log in `tmp`."""
    tokens = tmp / "tokens"
    tokens.write_text(f"bench:{TOKEN}\n")
    port = free_port()
    log_path = tmp / f"run-{port}.log"
    log = open(log_path, "wb")
    undo = ("--undo-seconds", str(undo_seconds)) if undo_seconds is not None else ()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeteer", "run", APP, "--backend", url, "--stage", STAGE, "--port", str(port), *undo],
        cwd=ROOT, env={**os.environ, "PIPETEER_AUTH_TOKEN_FILE": str(tokens)},
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    log.close()
    try:
        yield proc, f"http://127.0.0.1:{port}", log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_tail(log: Path) -> str:
    """The end of the service's log, without the access log's lines."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if not line.startswith("INFO:     127.0.0.1:")]
    return "\n".join(lines[-40:])


def wait_listed(http: httpx.Client, proc: subprocess.Popen[bytes], n: int, log: Path) -> None:
    """Until the process answers and lists all `n` tasks."""
    deadline = time.monotonic() + LOAD_TIMEOUT
    total = -1
    while total < n:
        if proc.poll() is not None:
            raise RuntimeError(f"pipeteer run exited with {proc.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{total} of {n} tasks listed after {LOAD_TIMEOUT:.0f} s:\n{log_tail(log)}")
        try:
            r = http.get("/console/api/tasks", params={"stage": STAGE, "limit": 1})
            total = r.json()["total"] if r.status_code == 200 else -1
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def bench_one(url: str, n: int, repeat: int, tmp: Path, undo_seconds: float | None) -> Run:
    t0 = time.perf_counter()
    asyncio.run(load(url, n))
    push_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    with service(url, tmp, undo_seconds) as (proc, base, log), httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
    ) as http:
        wait_listed(http, proc, n, log)
        listed_seconds = time.perf_counter() - t0
        rss_loaded = rss_mib(proc.pid)
        stage = {"stage": STAGE}
        last: list[str | None] = [None]  # the task `next` opened last: the next `next` starts after it

        def lease() -> httpx.Response:
            r = http.post("/console/api/next", params={**stage, **({"after": last[0]} if last[0] else {})})
            r.raise_for_status()
            task = r.json()["task"]
            if task is None:
                raise RuntimeError(f"no task left to lease (n={n}): give more tasks or fewer --repeat")
            last[0] = task["id"]
            return r

        def decide(i: int) -> httpx.Response:
            return http.post("/console/api/decide", params={**stage, "id": last[0]}, json={"value": True})

        rows = {
            "GET /healthz": measure(repeat, lambda i: http.get("/healthz")),
            "GET / (index)": measure(repeat, lambda i: http.get("/")),
            "GET tasks, first page": measure(repeat, lambda i: http.get(
                "/console/api/tasks", params={**stage, "offset": 0, "limit": 50})),
            "GET tasks, middle page": measure(repeat, lambda i: http.get(
                "/console/api/tasks", params={**stage, "offset": n // 2, "limit": 50})),
            "POST next (lease a task)": measure(repeat, lambda i: lease()),
            "POST decide (a fresh task)": measure(repeat, decide, before=lease),
        }
        rss_after = rss_mib(proc.pid)
    return Run(n, push_seconds, listed_seconds, rows, rss_loaded, rss_after)


def print_run(backend: str, run: Run) -> None:
    floor = run.rows["GET /healthz"].median
    print(f"\n{backend}, {run.n:,} pending (pushed in {run.push_seconds:.1f} s, all listed {run.listed_seconds:.1f} s "
          "after the process started); "
          f"RSS {run.rss_loaded:.0f} MiB loaded, {run.rss_after:.0f} MiB after the requests")
    print(f"  {'request':34} {'server ms':>9} {'p90':>8} {'x healthz':>8} {'client ms':>10} {'p90':>8}")
    for name, figures in run.rows.items():
        print(figures.line(name, floor))
    sys.stdout.flush()


def print_table(backend: str, runs: list[Run], repeat: int) -> None:
    print(f"\n{backend}: server time (Server-Timing app;dur): median ms of {repeat} requests, and x /healthz in the same run")
    head = "".join(f" {f'{r.n:,} pending':>21}" for r in runs)
    print(f"{'request':34}{head}")
    for name in runs[0].rows:
        cells = "".join(f" {r.rows[name].median:10.2f} {r.rows[name].median / r.rows['GET /healthz'].median:8.1f}x"
                        for r in runs)
        print(f"{name:34}{cells}")
    rss = ", ".join(f"{r.n:,}: {r.rss_loaded:.0f} -> {r.rss_after:.0f}" for r in runs)
    print(f"server RSS MiB (loaded -> after the requests): {rss}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", help="pending tasks, comma-separated (default 1000,10000,100000)")
    parser.add_argument("--backends", default="sqlite,kafka", help="sqlite, kafka (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=30, help="measured requests of each kind")
    parser.add_argument("--undo-seconds", type=float, help="the console's undo window (default: the service's)")
    parser.add_argument("--bootstrap", default=os.environ.get("PIPETEER_TEST_KAFKA"), help="an existing Kafka broker")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1,000 and 10,000 tasks, SQLite only")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in (args.sizes or ("1000,10000" if args.quick else "1000,10000,100000")).split(",")]
    backends = ["sqlite"] if args.quick else [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"sqlite", "kafka"}:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))} (sqlite, kafka)")
    if min(sizes) < 2 * (args.repeat + 2):
        parser.error(f"--sizes: each needs at least {2 * (args.repeat + 2)} tasks for {args.repeat} next and decide requests")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `timeout` still stops the broker started here
    print(f"review console: {', '.join(backends)}; sizes {', '.join(f'{n:,}' for n in sizes)}; "
          f"{args.repeat} requests each over one keep-alive connection", flush=True)
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="pipeteer-bench-console-") as tmp_dir:
            tmp = Path(tmp_dir)
            runs = []
            with backend_urls(backend, tmp, args.bootstrap) as url_for:
                for n in sizes:
                    run = bench_one(url_for(n), n, args.repeat, tmp, args.undo_seconds)
                    print_run(backend, run)
                    runs.append(run)
            print_table(backend, runs, args.repeat)
    return 0


@contextmanager
def backend_urls(backend: str, tmp: Path, bootstrap: str | None) -> Iterator[Callable[[int], str]]:
    """A fresh backend URL per size: a SQLite file, or a topic prefix on the broker."""
    if backend == "sqlite":
        yield lambda n: f"sqlite:///{tmp / f'q{n}.db'}"
        return
    from tests.kafka_broker import Broker, delete_topics, start_broker, wait_for_kafka

    broker: Broker | None = None
    if bootstrap:
        wait_for_kafka(bootstrap)
    else:
        broker = start_broker("apache-kafka", tmp / "broker")
        bootstrap = broker.bootstrap
    print(f"\nkafka: {'a single-node Apache Kafka started here' if broker else 'external'} at {bootstrap}", flush=True)
    run = f"benchconsole{uuid.uuid4().hex[:6]}"
    try:
        # A Kafka stage holds at most `max_pending` items (10,000 by default) and leaves the rest in
        # its input topic until some are done: raised to N, so that the console lists all of them.
        yield lambda n: f"kafka://{bootstrap}?prefix={run}n{n}&max_pending={max(n, 10_000)}"
    finally:
        delete_topics(bootstrap, run)
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
