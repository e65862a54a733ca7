"""Large images end to end: `pipeteer push` → a one-stage identity workflow (`pipeteer run`, its own
process) → `pipeteer pull` to files, beside `shutil.copyfile` of the same files in the same run.

    python bench/bench_images.py --backend sqlite --count 1000 --size-mib 2
    python bench/bench_images.py --backend sqlite --count 200 --size-mib 10
    python bench/bench_images.py --backend kafka --count 200 --size-mib 5     # noida-db unless --bootstrap

Push, the stage and pull run at once (pull waits for `--count` outputs); the time is from the
start of push to the end of pull. Reported: MB/s and its ratio to copyfile, the peak RSS of every
process (VmHWM, sampled until it exits), the SQLite WAL's peak size, the largest Kafka record, and
a check that every output is there once with its bytes identical.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def copyfile_rate(files: list[Path], dest: Path) -> float:
    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for p in files:
        shutil.copyfile(p, dest / p.name)
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    size = int(args.size_mib * (1 << 20))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-images-"))
    with ExitStack() as stack:
        made = make_files(work / "in", args.count, size, args.distinct)
        files = sorted((work / "in").iterdir())
        drop_caches_hint(files)
        # The setup's own writes are flushed first, so that neither copyfile nor pipeteer's first
        # fsync (which on ext4 commits every dirty file in its journal transaction) pays for them.
        os.sync()
        copy = copyfile_rate(files, work / "copy")
        os.sync()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        sampler = Sampler()
        if args.backend == "sqlite":
            db = work / "q.db"
            url = f"sqlite:///{db}"
            sampler.files["wal"] = Path(f"{db}-wal")
        else:
            from tests.kafka_broker import kafka_broker

            bootstrap = args.bootstrap or stack.enter_context(kafka_broker(work / "kafka")).bootstrap
            prefix = f"b{os.getpid()}"
            url = f"kafka://{bootstrap}?prefix={prefix}&partitions={args.partitions}"
            env["PIPETEER_BLOBS"] = str(work / "blobs")
            env["PIPETEER_KAFKA_RECEIVE_MESSAGE_MAX_BYTES"] = "1000000000"  # noida-db ignores fetch limits
        sampler.start()
        started = time.perf_counter()
        link = ["--link"] if args.link else []
        push = pipeteer("push", APP, str(work / "in"), "--backend", url, "-q", *link, cwd=work, env=env,
                        log=work / "push.log")
        sampler.procs["push"] = push
        if args.backlog:  # the stage starts with every item waiting
            push.wait()
        stage = pipeteer("run", APP, "--backend", url, "--port", "0", cwd=work, env=env, log=work / "run.log")
        sampler.procs["stage (run)"] = stage
        pull = pipeteer("pull", APP, str(work / "out"), "--backend", url, "--expect", str(args.count), "-q", *link,
                        cwd=work, env=env, log=work / "pull.log")
        sampler.procs["pull"] = pull
        try:
            for name, p in (("push", push), ("pull", pull)):
                if p.wait(args.timeout) != 0:
                    raise SystemExit(f"{name} failed: see {work / (name + '.log')}")
            took = time.perf_counter() - started
        finally:
            sampler.sample()
            stage.terminate()
            stage.wait(60)
            sampler.stop.set()
        lines = (work / "out" / "manifest.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        ids = [r["id"] for r in records]
        identical = all(content_key((work / "out" / r["files"]["img"]).read_bytes()) == made[r["id"]] for r in records)
        assert len(ids) == len(set(ids)), "an output was written twice"
        result: dict[str, Any] = {
            "backend": args.backend,
            "files": "--link" if args.link else "copies",
            "items": args.count,
            "size_mib": args.size_mib,
            "total_mb": round(args.count * size / 1e6, 1),
            "seconds": round(took, 2),
            "mb_per_s": round(args.count * size / 1e6 / took, 1),
            "copyfile_mb_per_s": round(copy, 1),
            "ratio": round(args.count * size / 1e6 / took / copy, 3),
            "peak_rss_mb": {k: round(v / 1e6, 1) for k, v in sampler.rss.items()},
            "outputs_once": sorted(ids) == sorted(made),
            "hash_mb_per_s": hash_rates(size),
            "bytes_identical": identical,
        }
        if args.backend == "sqlite":
            result["wal_peak_mb"] = round(sampler.sizes.get("wal", 0) / 1e6, 1)
            result["db_mb_after"] = round((work / "q.db").stat().st_size / 1e6, 2)
        else:
            result["largest_record_bytes"] = largest_kafka_record(bootstrap, prefix)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "kafka"], default="sqlite")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size-mib", type=float, default=2.0)
    parser.add_argument("--partitions", type=int, default=4)
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
