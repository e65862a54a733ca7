"""Large images end to end: `pipeteer push` → a one-stage identity workflow (`pipeteer run`, its own
process) → `pipeteer pull` to files, beside copies of the same files made in the same run.

    python bench/bench_images.py --backend sqlite --count 1000 --size-mib 2
    python bench/bench_images.py --backend sqlite --count 200 --size-mib 10
    python bench/bench_images.py --backend kafka --count 200 --size-mib 5     # Apache Kafka (or noida-db) unless --bootstrap

Push, the stage and pull run at once (pull waits for `--count` outputs); the time is from the
start of push to the end of pull. The baselines and pipeteer take turns for `--repeat` rounds
(this machine is shared and its disk's fsync latency varies several-fold from one minute to the
next) and the table gives medians, each round's ratio computed within that round:

- `copyfile`: `shutil.copyfile` of every file, one after another (page cache; nothing durable),
  as the issue measured it; and `copyfile, N threads`, the same by `--concurrency` threads at once.
  Both copy into page-cache pages just freed by an untimed copy of the same files: on this
  project's VMs the first write into a page the guest gave back to its host faults in the host,
  and a copy into such pages ran at 400–500 MB/s against 2,300–3,300 into pages used again. The
  baselines are taken at their best, the strict comparison;
- `durable copy`: each file copied in the kernel (`shutil.copyfile`) to a temporary name, fsynced
  and renamed, by `--concurrency` threads: what pipeteer has to do twice (push stores each image
  as a blob, pull writes it out), so the fair ceiling for copies is about half of it.

Also reported: CPU seconds (user + system) per 1,000 items of each process, from `wait4`; the
peak RSS of every process (VmHWM, sampled until it exits); the SQLite WAL's peak size; the
largest Kafka record; and a check that every output is there once with its bytes identical.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeteer.codec.blobstore import content_key  # noqa: E402
from pipeteer.runtime.batch import item_id  # noqa: E402

APP = "tests.apps.photos:app"


def make_files(root: Path, count: int, size: int, distinct: int | None = None) -> dict[str, str]:
    """`count` files of `size` bytes (PNG signature + random bytes), `distinct` different contents
    (all, by default; fewer, hard links, to measure many items without as many bytes on disk);
    id -> content hash."""
    root.mkdir(parents=True, exist_ok=True)
    block = os.urandom(size)
    made = {}
    for i in range(count):
        path = root / f"img{i:05d}.png"
        if distinct is not None and i >= distinct:
            os.link(root / f"img{i % distinct:05d}.png", path)
            data = path.read_bytes()
        else:
            data = b"\x89PNG\r\n\x1a\n" + i.to_bytes(8, "big") + block[16:]
            path.write_bytes(data)
        made[item_id(path, data)] = content_key(data)
    return made


def drop_caches_hint(paths: list[Path]) -> None:
    """Read the inputs once, so copyfile and pipeteer both start from the page cache."""
    for p in paths:
        p.read_bytes()


def hash_rates(size: int) -> dict[str, float]:
    """MB/s of the hashes a blob store could use, on one value of `size` bytes (why BLAKE3)."""
    import hashlib

    import blake3

    data = os.urandom(size)
    hashes = {
        "blake3": lambda: blake3.blake3(data).digest(),
        "sha256": lambda: hashlib.sha256(data).digest(),
        "blake2b": lambda: hashlib.blake2b(data).digest(),
    }
    rates = {}
    for name, f in hashes.items():
        f()
        started = time.perf_counter()
        for _ in range(10):
            f()
        rates[name] = round(10 * size / (time.perf_counter() - started) / 1e6)
    return rates


def copyfile_rate(files: list[Path], dest: Path, threads: int = 1) -> float:
    """MB/s of `shutil.copyfile` of the files by `threads` threads (page cache, not durable)."""
    from concurrent.futures import ThreadPoolExecutor

    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda p: shutil.copyfile(p, dest / p.name), files))
    took = time.perf_counter() - started
    shutil.rmtree(dest)
    return sum(p.stat().st_size for p in files) / took / 1e6


def durable_copy_rate(files: list[Path], dest: Path, threads: int) -> float:
    """MB/s of copies that are durable when done (temporary name, fsync, rename, the directory
    fsynced at the end), `threads` at once; copied in the kernel (`shutil.copyfile`), the fastest
    way here (through Python's memory, read then write, costs ~6x the CPU and is ~3x slower)."""
    from concurrent.futures import ThreadPoolExecutor

    dest.mkdir(parents=True, exist_ok=True)

    def copy(p: Path) -> None:
        tmp = dest / f".tmp-{p.name}"
        shutil.copyfile(p, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, dest / p.name)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(copy, files))
    fd = os.open(dest, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    took = time.perf_counter() - started
    total = sum(p.stat().st_size for p in files)
    shutil.rmtree(dest)
    return total / took / 1e6


class Sampler(threading.Thread):
    """Peak RSS of processes (VmHWM from /proc) and the peak size of files, every 50 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.rss: dict[str, int] = {}
        self.files: dict[str, Path] = {}
        self.sizes: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.05)

    def sample(self) -> None:
        for name, p in list(self.procs.items()):
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.rss[name] = max(self.rss.get(name, 0), int(line.split()[1]) * 1024)
            except (FileNotFoundError, ProcessLookupError):
                pass
        for name, f in self.files.items():
            try:
                self.sizes[name] = max(self.sizes.get(name, 0), f.stat().st_size)
            except FileNotFoundError:
                pass


def pipeteer(*args: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeteer", *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def reap(p: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for `p` to exit (at most `timeout` s, then kill it); its CPU seconds, user + system."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            p.kill()
            deadline = float("inf")
        time.sleep(0.01)


def largest_kafka_record(bootstrap: str, prefix: str) -> int:
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient

    topics = [t for t in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics if t.startswith(prefix)]
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{prefix}-peek", "auto.offset.reset": "earliest",
         "enable.partition.eof": True, "receive.message.max.bytes": 1_000_000_000}
    )
    consumer.subscribe(topics)
    largest, idle = 0, time.monotonic()
    while time.monotonic() - idle < 3:
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        idle = time.monotonic()
        largest = max(largest, len(m.value() or b""))
    consumer.close()
    return largest


def one_round(args: argparse.Namespace, work: Path, url: str, env: dict[str, str], made: dict[str, str]) -> dict[str, Any]:
    """push | run | pull once, from an empty backend; the round's figures."""
    sampler = Sampler()
    if args.backend == "sqlite":
        sampler.files["wal"] = Path(f"{url.removeprefix('sqlite:///')}-wal")
    os.sync()
    sampler.start()
    started = time.perf_counter()
    link = ["--link"] if args.link else []
    jobs = ["--concurrency", str(args.concurrency)]
    push = pipeteer("push", APP, str(args.inputs), "--backend", url, "-q", *link, *jobs, "--ledger",
                    str(work / "pushed.ids"), cwd=work, env=env, log=work / "push.log")
    sampler.procs["push"] = push
    cpu: dict[str, float] = {}
    if args.backlog:  # the stage starts with every item waiting
        cpu["push"] = reap(push, args.timeout)
    stage = pipeteer("run", APP, "--backend", url, "--port", "0", cwd=work, env=env, log=work / "run.log")
    sampler.procs["stage (run)"] = stage
    pull = pipeteer("pull", APP, str(work / "out"), "--backend", url, "--expect", str(args.count), "-q", *link,
                    *jobs, cwd=work, env=env, log=work / "pull.log")
    sampler.procs["pull"] = pull
    try:
        for name, p in (("push", push), ("pull", pull)):
            if name not in cpu:
                cpu[name] = reap(p, args.timeout)
            if p.returncode != 0:
                raise SystemExit(f"{name} failed: see {work / (name + '.log')}")
        took = time.perf_counter() - started
    finally:
        sampler.sample()
        stage.terminate()
        cpu["stage (run)"] = reap(stage, 60)
        sampler.stop.set()
    records = [json.loads(line) for line in (work / "out" / "manifest.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "an output was written twice"
    assert sorted(ids) == sorted(made), "an output is missing"
    for r in records:
        assert content_key((work / "out" / r["files"]["img"]).read_bytes()) == made[r["id"]], f"{r['id']}: bytes differ"
    return {
        "mb_per_s": args.count * args.size / 1e6 / took,
        "cpu_s_per_1000": {k: 1000 * v / args.count for k, v in cpu.items()},
        "peak_rss_mb": {k: v / 1e6 for k, v in sampler.rss.items()},
        "wal_peak_mb": sampler.sizes.get("wal", 0) / 1e6,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    args.size = int(args.size_mib * (1 << 20))
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-images-"))
    args.inputs = root / "in"
    with ExitStack() as stack:
        made = make_files(args.inputs, args.count, args.size, args.distinct)
        files = sorted(args.inputs.iterdir())
        drop_caches_hint(files)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        bootstrap = None
        if args.backend == "kafka":
            from tests.kafka_broker import kafka_broker

            bootstrap = args.bootstrap or stack.enter_context(kafka_broker(root / "kafka")).bootstrap
            env["PIPETEER_KAFKA_RECEIVE_MESSAGE_MAX_BYTES"] = "1000000000"  # noida-db ignores fetch limits
        rounds: list[dict[str, Any]] = []
        for i in range(args.repeat):
            # The setup's (and the last round's) writes are flushed first, so that no variant's
            # first fsync (which on ext4 commits every dirty file in its journal transaction) pays for them.
            os.sync()
            copyfile_rate(files, root / "copy")  # (untimed: the timed copies write into pages used again)
            copy = copyfile_rate(files, root / "copy")
            copy_threads = copyfile_rate(files, root / "copy", args.concurrency)
            os.sync()
            durable = durable_copy_rate(files, root / "copy", args.concurrency)
            work = root / f"round{i}"
            work.mkdir()
            if args.backend == "sqlite":
                url = f"sqlite:///{work / 'q.db'}"
            else:
                url = f"kafka://{bootstrap}?prefix=b{os.getpid()}r{i}&partitions={args.partitions}"
                env["PIPETEER_BLOBS"] = str(work / "blobs")
            r = one_round(args, work, url, env, made)
            r.update(copyfile_mb_per_s=copy, copyfile_threads_mb_per_s=copy_threads, durable_copy_mb_per_s=durable)
            r["x_copyfile"] = r["mb_per_s"] / copy
            r["x_copyfile_threads"] = r["mb_per_s"] / copy_threads
            r["x_durable_copy"] = r["mb_per_s"] / durable
            if args.backend == "sqlite":
                r["db_mb_after"] = (work / "q.db").stat().st_size / 1e6
            else:
                r["largest_record_bytes"] = largest_kafka_record(bootstrap or "", f"b{os.getpid()}r{i}")
            rounds.append(r)
            print(f"round {i + 1}/{args.repeat}: {r['mb_per_s']:.0f} MB/s, {r['x_copyfile']:.3f} x copyfile "
                  f"({copy:.0f} MB/s), {r['x_copyfile_threads']:.3f} x copyfile by {args.concurrency} threads "
                  f"({copy_threads:.0f} MB/s), {r['x_durable_copy']:.3f} x durable copy ({durable:.0f} MB/s)",
                  file=sys.stderr)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)

        def med(key: str) -> float:
            return round(statistics.median(r[key] for r in rounds), 3)

        def med_by(key: str) -> dict[str, float]:
            return {k: round(statistics.median(r[key][k] for r in rounds), 1) for k in rounds[0][key]}

        result: dict[str, Any] = {
            "backend": args.backend,
            "files": "--link" if args.link else "copies",
            "items": args.count,
            "size_mib": args.size_mib,
            "total_mb": round(args.count * args.size / 1e6, 1),
            "rounds": args.repeat,
            "concurrency": args.concurrency,
            "median": {
                "pipeteer_mb_per_s": med("mb_per_s"),
                "copyfile_mb_per_s": med("copyfile_mb_per_s"),
                "copyfile_threads_mb_per_s": med("copyfile_threads_mb_per_s"),
                "durable_copy_mb_per_s": med("durable_copy_mb_per_s"),
                "x_copyfile": med("x_copyfile"),
                "x_copyfile_threads": med("x_copyfile_threads"),
                "x_durable_copy": med("x_durable_copy"),
            },
            "x_copyfile_each_round": [round(r["x_copyfile"], 3) for r in rounds],
            "cpu_s_per_1000_items": med_by("cpu_s_per_1000"),
            "peak_rss_mb": {k: round(max(r["peak_rss_mb"][k] for r in rounds), 1) for k in rounds[0]["peak_rss_mb"]},
            "outputs_once_and_identical": True,  # (asserted each round)
            "hash_mb_per_s": hash_rates(args.size),
        }
        if args.backend == "sqlite":
            result["wal_peak_mb"] = round(max(r["wal_peak_mb"] for r in rounds), 1)
            result["db_mb_after"] = round(max(r["db_mb_after"] for r in rounds), 2)
        else:
            result["largest_record_bytes"] = max(r["largest_record_bytes"] for r in rounds)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "kafka"], default="sqlite")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size-mib", type=float, default=2.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (baselines and pipeteer take turns); medians")
    parser.add_argument("--concurrency", type=int, default=8, help="push and pull --concurrency, and the durable copy's threads")
    parser.add_argument("--distinct", type=int, default=None, help="only this many different contents (hard links)")
    parser.add_argument("--backlog", action="store_true", help="push everything before the stage starts")
    parser.add_argument("--link", action="store_true", help="push --link and pull --link: blobs and outputs hard-linked, not copied")
    parser.add_argument("--bootstrap", default=os.environ.get("PIPETEER_TEST_KAFKA"), help="an existing broker")
    parser.add_argument("--workdir", default=None, help="where files, database and blobs go (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
