"""A real schema registry for the tests: Apicurio Registry 3 through its Confluent-compatible API.

Pipeteer speaks the Confluent Schema Registry REST API (through confluent-kafka's client); so does
Apicurio Registry under `/apis/ccompat/v7`. Confluent's own registry needs Docker or a download from
outside the package registries; Apicurio's server is on Maven Central, which this machine reaches:

1. `PIPETEER_TEST_SCHEMA_REGISTRY=URL` if set (an existing registry, used as it is: tests of
   compatibility expect BACKWARD, Confluent's default);
2. else Apicurio Registry `APICURIO_VERSION`: Maven fetches `io.apicurio:apicurio-registry-app:
   VERSION:tar.gz:all` (a Quarkus fast-jar, about 160 MB) once, unpacked into `~/.cache/pipeteer/`
   (`PIPETEER_APICURIO_HOME` overrides the place); it runs on a Java 21+ JDK (`java_home()`: Debian's
   default `java` here is 17), on a free loopback port, with a bounded heap, storing in an in-memory
   H2 database (Apicurio's default storage: nothing is left on disk), and is stopped at the end of the
   session. Its global compatibility is set to BACKWARD (Apicurio's default is NONE, Confluent's
   BACKWARD), so an incompatible schema is refused as a production registry would refuse it.

Start-up is about 3 s on two cores: the JVM runs C1 only (a test registry answers a few dozen
requests; C2 would spend a core compiling for nothing) and maps a class-data archive of the app
(AppCDS), written once beside the unpacked app when the first registry stops (that stop takes a few
seconds more); without it, start-up is about 5 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.kafka_broker import _terminate_with_parent, free_port

APICURIO_VERSION = "3.3.3"
ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MIN_JAVA = 21
"""Apicurio Registry 3.3 is built for Java 21."""
HEAP = ("-Xms64m", "-Xmx256m")
START_TIMEOUT = 120.0
"""Generous: about 3 s alone, but a loaded two-core machine (a Kafka broker, stage processes) can
stretch a JVM's start many times over; the wait ends at once if the process exits."""
CCOMPAT = "/apis/ccompat/v7"
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class SchemaRegistry:
    """A running schema registry: its Confluent-compatible URL, and how to stop it (if this process started it)."""

    url: str
    """What pipeteer is configured with, e.g. `http://127.0.0.1:PORT/apis/ccompat/v7`."""
    kind: str
    """`apicurio-3.3.3`, or `external`."""
    pid: int | None = None
    log: Path | None = None
    _stop: Any = field(default=None, repr=False)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One call of the registry's REST API (`path` below `url`); its JSON answer.

        `urllib.error.HTTPError` on an error status (its body says why: a 409 is an incompatible schema).
        """
        return request(method, f"{self.url}{path}", body)


def request(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    """A JSON request with the standard library (no client left open: the response is read and closed)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": CONTENT_TYPE})
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


# --- Java ----------------------------------------------------------------------------------------


def java_major(home: Path) -> int | None:
    """The major version of the JDK or JRE at `home`, from its `release` file (None: not a Java home)."""
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    found = re.search(r'^JAVA_VERSION="(\d+)', text, re.MULTILINE)
    if found is None or not os.access(home / "bin" / "java", os.X_OK):
        return None
    return int(found.group(1))


def java_candidates() -> Iterator[Path]:
    """Java homes in order of preference: `JAVA_HOME`, the `java` on the PATH, then every one under
    /usr/lib/jvm (Debian's place for JDKs, Temurin's packages included), newest first."""
    if os.environ.get("JAVA_HOME"):
        yield Path(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    if java is not None:
        yield Path(os.path.realpath(java)).parent.parent
    jvms = Path("/usr/lib/jvm")
    if jvms.is_dir():
        homes = [p.resolve() for p in jvms.iterdir() if p.is_dir()]
        yield from sorted(homes, key=lambda p: java_major(p) or 0, reverse=True)


def java_home(minimum: int = MIN_JAVA) -> Path | None:
    """The first Java home of `java_candidates()` whose version is at least `minimum`."""
    for home in java_candidates():
        major = java_major(home)
        if major is not None and major >= minimum:
            return home
    return None


# --- Apicurio from Maven Central ----------------------------------------------------------------


def apicurio_home() -> Path:
    """Where the unpacked server is cached between runs (`PIPETEER_APICURIO_HOME` overrides it)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    default = cache / "pipeteer" / f"apicurio-registry-{APICURIO_VERSION}"
    return Path(os.environ.get("PIPETEER_APICURIO_HOME", default))


def _resolved(home: Path) -> bool:
    return (home / ".complete").is_file()


def unavailable() -> str | None:
    """Why no registry can be had here (None: one can), for a skip that says what to install."""
    if os.environ.get("PIPETEER_TEST_SCHEMA_REGISTRY"):
        return None
    if java_home() is None:
        return (
            f"the schema registry tests run Apicurio Registry {APICURIO_VERSION}, which needs Java {MIN_JAVA}+ "
            f"(none under JAVA_HOME, the PATH or /usr/lib/jvm); or set PIPETEER_TEST_SCHEMA_REGISTRY=URL"
        )
    if not _resolved(apicurio_home()) and shutil.which("mvn") is None:
        return (
            f"Apicurio Registry {APICURIO_VERSION} is not in {apicurio_home()} and `mvn` is not installed "
            "to fetch it from Maven Central; or set PIPETEER_TEST_SCHEMA_REGISTRY=URL"
        )
    return None


def resolve_apicurio() -> Path:
    """The unpacked Apicurio Registry server (its `quarkus-run.jar`), fetched with Maven on first use.

    Concurrent sessions take turns on a lock file; the server is unpacked in a temporary directory
    renamed into place, so a half-finished download is never used. The archive itself is not kept
    (Maven's local repository has a copy).
    """
    home = apicurio_home()
    if _resolved(home):
        return home
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(f"Apicurio Registry is not in {home} and `mvn` is not installed to fetch it")
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _resolved(home):
            return home
        partial = Path(tempfile.mkdtemp(prefix=f"{home.name}.", dir=home.parent))
        try:
            download = partial / "download"
            done = subprocess.run(
                [mvn, "-q", "-B", f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={ARTIFACT}",
                 f"-DoutputDirectory={download}"],
                capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                cwd=partial,  # no pom.xml here: the goal runs outside any project
            )
            archives = sorted(download.glob("*.tar.gz"))
            if done.returncode != 0 or not archives:
                raise RuntimeError(
                    f"mvn could not fetch {ARTIFACT} (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
                )
            unpacked = partial / "app"
            with tarfile.open(archives[0]) as tar:
                tar.extractall(unpacked, filter="data")
            if not (unpacked / "quarkus-run.jar").is_file():
                raise RuntimeError(f"{ARTIFACT} has no quarkus-run.jar at its top: {sorted(os.listdir(unpacked))}")
            (unpacked / ".complete").touch()
            shutil.rmtree(home, ignore_errors=True)
            unpacked.rename(home)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return home


def _archive(home: Path, java: Path) -> Path:
    """The class-data archive of the app for this JDK build (another build cannot map it)."""
    release = (java / "release").read_text()
    found = re.search(r'^JAVA_RUNTIME_VERSION="([^"]+)"', release, re.MULTILINE)
    build = re.sub(r"[^A-Za-z0-9.+-]", "_", found.group(1) if found else str(java_major(java)))
    return home / f"quarkus-run.{build}.jsa"


def apicurio_command(home: Path, java: Path, port: int, archive_option: str) -> list[str]:
    """The JVM's command line: loopback only, bounded heap, in-memory H2 (Apicurio's default storage)."""
    return [
        str(java / "bin" / "java"), *HEAP, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", archive_option,
        "-Djava.awt.headless=true",
        "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={port}",
        # the management interface (health, metrics) is built in; 0 = any free port, not 9000
        "-Dquarkus.management.host=127.0.0.1", "-Dquarkus.management.port=0",
        "-Dquarkus.http.access-log.enabled=false",
        "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2",
        # one connection is plenty for a test, and twenty cost start-up time
        "-Dapicurio.datasource.jdbc.initial-size=1", "-Dapicurio.datasource.jdbc.min-size=1",
        "-jar", str(home / "quarkus-run.jar"),
    ]


def wait_for_registry(url: str, timeout: float = START_TIMEOUT, alive: subprocess.Popen[bytes] | None = None,
                      log: Path | None = None) -> None:
    """Until `GET {url}/subjects` answers (or the process `alive` that should serve it exits)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
            raise RuntimeError(f"the schema registry for {url} exited with {alive.returncode} before answering:\n{tail}")
        try:
            request("GET", f"{url}/subjects", timeout=5)
            return
        except (OSError, urllib.error.URLError) as e:  # refused while it starts; 404 until its routes are up
            last = e
            time.sleep(0.1)
    raise RuntimeError(f"the schema registry at {url} did not answer within {timeout:.0f}s: {last}")


def set_compatibility(url: str, level: str) -> None:
    """The registry's global compatibility level (per-subject settings override it)."""
    request("PUT", f"{url}/config", {"compatibility": level})
    answer = request("GET", f"{url}/config")
    if answer.get("compatibilityLevel") != level:
        raise RuntimeError(f"the schema registry at {url} kept compatibility {answer} (asked for {level})")


def start_apicurio(work_dir: Path, attempts: int = 3) -> SchemaRegistry:
    """Start Apicurio Registry on a free loopback port, compatibility BACKWARD; stop it by its pid.

    A port found free can be taken by another process before the JVM binds it (a shared machine):
    then it is started again on another one, up to `attempts` times.
    """
    java = java_home()
    if java is None:
        raise RuntimeError(f"Apicurio Registry needs Java {MIN_JAVA}+: none found (see java_candidates())")
    home = resolve_apicurio()
    work_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        try:
            return _start(home, java, work_dir / f"registry.{attempt}.log")
        except PortTaken:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """The registry could not bind the port it was given."""


def _start(home: Path, java: Path, log_path: Path) -> SchemaRegistry:
    archive = _archive(home, java)
    # Map the archive if an earlier run wrote it; else write one at exit, under a name of this
    # process, then renamed into place (two sessions writing one file at once would corrupt it).
    fresh = home / f"{archive.name}.{os.getpid()}.tmp"
    archive_option = f"-XX:SharedArchiveFile={archive}" if archive.is_file() else f"-XX:ArchiveClassesAtExit={fresh}"
    port = free_port()
    url = f"http://127.0.0.1:{port}{CCOMPAT}"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        apicurio_command(home, java, port, archive_option),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        cwd=log_path.parent, preexec_fn=_terminate_with_parent,
    )

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)  # (writing the class-data archive takes a few seconds)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        if fresh.is_file():
            if proc.returncode in (0, 143):  # (143: exited on SIGTERM, the archive written)
                os.replace(fresh, archive)
            else:
                fresh.unlink()

    try:
        wait_for_registry(url, alive=proc, log=log_path)
        set_compatibility(url, "BACKWARD")
    except BaseException as e:
        stop()
        if proc.returncode not in (None, 0, 143) and "in use by another process" in log_path.read_text(errors="replace"):
            raise PortTaken(f"port {port} was taken before the schema registry bound it") from e
        raise
    return SchemaRegistry(url, f"apicurio-{APICURIO_VERSION}", proc.pid, log_path, stop)


@contextlib.contextmanager
def schema_registry(work_dir: Path) -> Iterator[SchemaRegistry]:
    """The registry the tests use (see the module docstring for the order)."""
    external = os.environ.get("PIPETEER_TEST_SCHEMA_REGISTRY")
    if external:
        url = external.rstrip("/")
        wait_for_registry(url)
        registry = SchemaRegistry(url, "external")
    else:
        registry = start_apicurio(work_dir)
    try:
        yield registry
    finally:
        registry.stop()
