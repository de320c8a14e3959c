"""Start real Redis and Apache Kafka servers on free loopback ports.

Tests, the demo command and fault-injection tests use this module to run the
brokers that brokercast reads from. Every server listens on 127.0.0.1 only, keeps
its files in its own temporary folder and is stopped and cleaned up by `close()`.

Each server is a child process in a session of its own, so a Ctrl-C in the
terminal reaches only the Python process, which then stops the servers in order.

`python -m tools.brokers` starts both servers, prints their addresses and runs
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import concurrent.futures
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import redis

# aiokafka 0.14 ships no py.typed marker.
from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaAdminClient,
    NewTopic,
)
from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "BrokerError",
    "KafkaBroker",
    "RedisServer",
    "free_port",
    "kafka_libs",
    "main",
]

log = logging.getLogger("tools.brokers")

LOOPBACK = "127.0.0.1"
KAFKA_VERSION = "4.4.0"

# Default cache folder is ~/.cache/brokercast. tools/setup.sh fills it.
CACHE_ENV = "BROKERCAST_CACHE"

# tools/setup.sh writes this file next to libs/ after every jar was copied.
LIBS_MARKER = ".libs-complete"

# C1-only compilation cut the cold start from 2.8 s to 2.2 s (OpenJDK 17, 2
# cores) at a cost in peak throughput that a test broker does not need. The serial
# collector made no difference to start time but runs fewer GC threads.
DEFAULT_KAFKA_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-Djava.awt.headless=true",
)

LOG_TAIL_LINES = 40
POLL_INTERVAL = 0.05  # seconds between readiness probes

_T = TypeVar("_T")


class BrokerError(RuntimeError):
    """A broker failed to start, stop or respond to a request."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free when this function ran.

    The port is released before returning, so another process can take it
    before the caller binds it. A server that then fails to start reports
    "Address already in use" in its log tail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def cache_dir() -> Path:
    """Return the cache folder: $BROKERCAST_CACHE, else ~/.cache/brokercast."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "brokercast"


def kafka_libs() -> Path:
    """Return the folder that contains the Apache Kafka jars.

    Raises BrokerError when tools/setup.sh has not finished copying the jars.
    """
    home = cache_dir() / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    if not (home / LIBS_MARKER).is_file():
        raise BrokerError(
            f"Kafka {KAFKA_VERSION} jars not found in {libs}: run tools/setup.sh "
            f"(set {CACHE_ENV} to use another cache folder)"
        )
    return libs


def _read_log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no log output)"


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion on a private event loop in a worker thread.

    A worker thread keeps the blocking API usable from synchronous fixtures and
    from code that already runs inside an event loop, where asyncio.run() raises.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, factory()).result()


# Servers started and not yet closed. The servers run in sessions of their own,
# so nothing else stops them when this interpreter exits.
_open_servers: set[_ServerProcess] = set()


@atexit.register
def _close_open_servers() -> None:
    # NOTE: atexit does not run when this process gets SIGKILL, which leaves the
    # servers running, and leaves a draft class archive in the cache folder.
    for server in list(_open_servers):
        server.close()


class _ServerProcess:
    """One server process with its temporary folder, log file and signals."""

    name = "server"

    def __init__(self, start_timeout: float, stop_timeout: float) -> None:
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._tmp = Path(tempfile.mkdtemp(prefix=f"brokercast-{self.name}-"))
        self._log_path = self._tmp / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False

    @property
    def pid(self) -> int:
        """Process id of the running server."""
        return self._require_process().pid

    @property
    def running(self) -> bool:
        """Whether the server process exists and has not exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        """File that receives the server's stdout and stderr."""
        return self._log_path

    def start(self) -> None:
        """Start the server and block until it serves requests.

        Raises BrokerError if it is already running, was closed, exits early or
        does not respond within `start_timeout` seconds.
        """
        if self._closed:
            raise BrokerError(f"{self.name} was closed and cannot start again")
        if self.running:
            raise BrokerError(f"{self.name} is already running (pid {self.pid})")

        _open_servers.add(self)
        self._prepare()
        started = time.monotonic()
        self._spawn(self._command())
        try:
            self._wait_until_ready(started + self.start_timeout)
        except BaseException:
            self.kill()
            raise
        log.info(
            "%s started: pid=%d seconds=%.2f",
            self.name,
            self.pid,
            time.monotonic() - started,
        )

    def stop(self) -> None:
        """Send SIGTERM and wait for the exit, also when the server is paused.

        After `stop_timeout` seconds the server gets SIGKILL instead.
        """
        if not self.running:
            return
        process = self._require_process()
        process.terminate()
        # A stopped process acts on SIGTERM only once it runs again.
        process.send_signal(signal.SIGCONT)
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "%s did not exit %.0f s after SIGTERM, sending SIGKILL: pid=%d",
                self.name,
                self.stop_timeout,
                process.pid,
            )
            self.kill()
            return
        self._after_exit(clean=True)
        log.info("%s stopped: pid=%d", self.name, process.pid)

    def kill(self) -> None:
        """Send SIGKILL and reap the process, as if the machine lost power."""
        if not self.running:
            return
        process = self._require_process()
        process.kill()
        process.wait()
        self._after_exit(clean=False)
        log.info("%s killed: pid=%d", self.name, process.pid)

    def pause(self) -> None:
        """Freeze the server with SIGSTOP. Connections stay open without responses."""
        self._require_process().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused server with SIGCONT."""
        self._require_process().send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and delete its temporary folder. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            _open_servers.discard(self)
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.close()

    def _prepare(self) -> None:
        """Write files the server needs before each start. Subclasses override."""

    def _after_exit(self, clean: bool) -> None:
        """Handle files the process left. `clean` is False after SIGKILL."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        """Return True once the server responds to a request."""
        raise NotImplementedError

    def _spawn(self, command: list[str]) -> None:
        with self._log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                command,
                cwd=self._tmp,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_until_ready(self, deadline: float) -> None:
        process = self._require_process()
        while not self._probe():
            code = process.poll()
            if code is not None:
                raise self._start_error(f"exited with code {code} during start-up")
            if time.monotonic() > deadline:
                raise self._start_error(
                    f"start-up timed out after {self.start_timeout:.0f} s"
                )
            time.sleep(POLL_INTERVAL)

    def _start_error(self, reason: str) -> BrokerError:
        tail = _read_log_tail(self._log_path)
        return BrokerError(
            f"{self.name} {reason}. Last lines of {self._log_path}:\n{tail}"
        )

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise BrokerError(f"{self.name} was never started")
        return self._process


class RedisServer(_ServerProcess):
    """A `redis-server` on 127.0.0.1 and a free port, without persistence.

    The constructor only picks the port; `start()` or `with` launches it. Every
    start, restarts included, begins with an empty database on the same port.

    Args:
        executable: the redis-server binary, looked up on PATH by default.
        start_timeout: seconds to wait for PING to answer.
        stop_timeout: seconds to wait after SIGTERM before SIGKILL.
    """

    name = "redis"

    def __init__(
        self,
        *,
        executable: str = "redis-server",
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        resolved = shutil.which(executable)
        if resolved is None:
            raise BrokerError(
                f"{executable} not found on PATH: run tools/setup.sh "
                "or apt-get install redis-server"
            )
        self._executable = resolved
        self._port = free_port()
        super().__init__(start_timeout, stop_timeout)

    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1."""
        return self._port

    @property
    def url(self) -> str:
        """Connection URL, e.g. redis://127.0.0.1:6379."""
        return f"redis://{LOOPBACK}:{self._port}"

    def _command(self) -> list[str]:
        return [
            self._executable,
            "--bind",
            LOOPBACK,
            "--port",
            str(self._port),
            "--dir",
            str(self._tmp),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]

    def _probe(self) -> bool:
        client = redis.Redis(host=LOOPBACK, port=self._port, socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


class KafkaBroker(_ServerProcess):
    """A single-node Apache Kafka 4.4 broker in KRaft combined mode on 127.0.0.1.

    One JVM is both broker and controller. The constructor picks two free ports,
    one for PLAINTEXT clients and one for the controller, and `start()` or `with`
    launches the JVM. Data stays in the temporary folder across `stop()`/`start()`
    and `kill()`/`start()`, so topics and committed offsets survive restarts.

    Args:
        num_partitions: partitions of auto-created topics.
        start_timeout: seconds to wait until the broker answers a metadata request.
        stop_timeout: seconds to wait after SIGTERM before SIGKILL.
        jvm_options: options placed before the main class, heap size included.
        properties: extra or overriding server.properties entries.
        libs: folder with the Kafka jars, kafka_libs() by default.
        java: the java binary, looked up on PATH by default.
        class_archive: share one class-data archive (JDK CDS) between all
            brokers that use the same jars. The first broker without an archive
            writes it when it stops after SIGTERM, which adds about 2.5 s to that
            stop. Cold starts that use it took 1.4 s instead of 2.6 s, measured
            with OpenJDK 17 on 2 cores.
    """

    name = "kafka"

    def __init__(
        self,
        *,
        num_partitions: int = 1,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        jvm_options: Sequence[str] = DEFAULT_KAFKA_JVM_OPTIONS,
        properties: Mapping[str, str] | None = None,
        libs: Path | None = None,
        java: str = "java",
        class_archive: bool = True,
    ) -> None:
        if num_partitions < 1:
            raise ValueError(f"num_partitions must be at least 1, got {num_partitions}")
        resolved = shutil.which(java)
        if resolved is None:
            raise BrokerError(f"{java} not found on PATH: install a Java 17+ runtime")
        self._java = resolved
        libs = libs or kafka_libs()
        self._classpath = str(libs / "*")
        self._archive = libs.parent / "kafka-classes.jsa" if class_archive else None
        self._archive_draft: Path | None = None
        self._jvm_options = list(jvm_options)
        self._num_partitions = num_partitions
        self._extra_properties = dict(properties or {})
        self._port = free_port()
        self._controller_port = free_port()
        super().__init__(start_timeout, stop_timeout)

    @property
    def port(self) -> int:
        """PLAINTEXT client port on 127.0.0.1."""
        return self._port

    @property
    def controller_port(self) -> int:
        """KRaft controller port on 127.0.0.1."""
        return self._controller_port

    @property
    def bootstrap_servers(self) -> str:
        """Client bootstrap address, e.g. 127.0.0.1:9092."""
        return f"{LOOPBACK}:{self._port}"

    @property
    def data_dir(self) -> Path:
        """Log directory that contains topic data and KRaft metadata."""
        return self._tmp / "data"

    def create_topic(
        self, name: str, partitions: int = 1, timeout: float = 30.0
    ) -> None:
        """Create a topic and block until every partition has a leader.

        This is a blocking call that runs aiokafka's admin client on a private
        event loop in a worker thread, so it also works inside async tests, where
        it blocks the calling loop for the duration. `timeout` is in seconds.
        Raises BrokerError if the broker rejects the request, for example because
        the topic exists, or if leaders are not elected in time.
        """
        _run_coroutine(lambda: self._create_topic(name, partitions, timeout))

    def _properties(self) -> dict[str, str]:
        controller = f"{LOOPBACK}:{self._controller_port}"
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # A static voter set needs no dynamic-quorum bootstrap at format time.
            "controller.quorum.voters": f"1@{controller}",
            "listeners": (
                f"PLAINTEXT://{LOOPBACK}:{self._port},CONTROLLER://{controller}"
            ),
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self._port}",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self._num_partitions),
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the restarted broker cannot register until the
            # controller expires its old session (9 s by default in Kafka 4.4). The
            # shorter session cut that restart from 11.6 s to 4.5 s on 2 cores.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
        }
        properties.update(self._extra_properties)
        return properties

    def _prepare(self) -> None:
        config = self._tmp / "config"
        config.mkdir(exist_ok=True)
        lines = [f"{key}={value}" for key, value in self._properties().items()]
        (config / "server.properties").write_text("\n".join(lines) + "\n")
        (config / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)
        if not (self.data_dir / "meta.properties").is_file():
            self._format_storage()

    def _java_command(
        self, main_class: str, *arguments: str, write_archive: bool = False
    ) -> list[str]:
        log_config = self._tmp / "config" / "log4j2.properties"
        return [
            self._java,
            *self._jvm_options,
            *self._archive_options(write_archive),
            f"-Dlog4j2.configurationFile={log_config}",
            "-cp",
            self._classpath,
            main_class,
            *arguments,
        ]

    def _archive_options(self, write_archive: bool) -> list[str]:
        """Return JVM options that read the class archive, or write a draft of it.

        Java ignores an archive that does not match the class path or JVM
        options, with a warning in the log, so a stale archive only costs speed.
        """
        if self._archive is None:
            return []
        if self._archive.is_file():
            return [f"-XX:SharedArchiveFile={self._archive}"]
        if not write_archive:
            return []
        # A unique draft name keeps brokers that stop at the same time from
        # writing into one file. _after_exit() renames it into place.
        draft = self._archive.with_name(f".{self._archive.name}.{uuid.uuid4().hex}")
        self._archive_draft = draft
        return [f"-XX:ArchiveClassesAtExit={draft}"]

    def _after_exit(self, clean: bool) -> None:
        draft, self._archive_draft = self._archive_draft, None
        if draft is None or self._archive is None:
            return
        try:
            if clean and draft.is_file() and draft.stat().st_size > 0:
                os.replace(draft, self._archive)
                log.info("kafka class archive written: path=%s", self._archive)
            else:
                draft.unlink(missing_ok=True)
        except OSError as error:
            log.warning("writing kafka class archive failed: %s", error)

    def _format_storage(self) -> None:
        """Write meta.properties and the bootstrap metadata into the log directory.

        Kafka 4 does not start on an unformatted log directory. The storage tool
        of 4.4 is the Scala class kafka.tools.StorageTool in kafka_2.13.
        """
        command = self._java_command(
            "kafka.tools.StorageTool",
            "format",
            "--config",
            str(self._tmp / "config" / "server.properties"),
            "--cluster-id",
            _random_cluster_id(),
        )
        with self._log_path.open("ab") as log_file:
            result = subprocess.run(
                command,
                cwd=self._tmp,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=self.start_timeout,
                check=False,
            )
        if result.returncode != 0:
            raise self._start_error(
                f"storage format failed with exit code {result.returncode}"
            )

    def _command(self) -> list[str]:
        return self._java_command(
            "kafka.Kafka",
            str(self._tmp / "config" / "server.properties"),
            write_archive=True,
        )

    def _probe(self) -> bool:
        # A plain connect first: it is cheap and keeps aiokafka from logging a
        # connection error on every poll while the JVM boots.
        try:
            socket.create_connection((LOOPBACK, self._port), timeout=1.0).close()
        except OSError:
            return False
        try:
            return _run_coroutine(self._has_live_broker)
        except (KafkaError, OSError, TimeoutError):
            return False

    def _admin_client(self, timeout: float = 5.0) -> Any:
        return AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            client_id="brokercast-tools",
            request_timeout_ms=int(timeout * 1000),
        )

    async def _has_live_broker(self) -> bool:
        admin = self._admin_client(timeout=2.0)
        try:
            await admin.start()
            cluster: dict[str, Any] = await admin.describe_cluster()
            return bool(cluster["brokers"])
        finally:
            await admin.close()

    async def _create_topic(self, name: str, partitions: int, timeout: float) -> None:
        admin = self._admin_client(timeout=timeout)
        try:
            await admin.start()
            topic = NewTopic(name, num_partitions=partitions, replication_factor=1)
            response = await admin.create_topics([topic])
            _raise_topic_errors(response.to_object())
            await _wait_for_leaders(admin, name, time.monotonic() + timeout)
        finally:
            await admin.close()


_LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
"""


def _random_cluster_id() -> str:
    """Return a cluster id as Kafka writes it: a base64url UUID without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # An id that starts with "-" reads as an option on the command line.
        if not text.startswith("-"):
            return text


def _raise_topic_errors(response: Mapping[str, Any]) -> None:
    for entry in response.get("topics", response.get("topic_errors", [])):
        if entry["error_code"]:
            message = entry.get("error_message") or f"error code {entry['error_code']}"
            raise BrokerError(f"creating topic {entry['topic']!r} failed: {message}")


async def _wait_for_leaders(admin: Any, name: str, deadline: float) -> None:
    while True:
        topics: list[dict[str, Any]] = await admin.describe_topics([name])
        partitions = [p for t in topics if not t["error_code"] for p in t["partitions"]]
        if partitions and all(p["leader"] >= 0 for p in partitions):
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"timed out waiting for leaders of topic {name!r}")
        await asyncio.sleep(POLL_INTERVAL)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.brokers",
        description=(
            "Start Apache Kafka and Redis on free 127.0.0.1 ports, print their "
            "addresses and run until SIGTERM or SIGINT."
        ),
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--kafka-only", action="store_true", help="start only Kafka")
    only.add_argument("--redis-only", action="store_true", help="start only Redis")
    parser.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="partitions of auto-created Kafka topics (default: 1)",
    )
    return parser.parse_args(argv)


class _ShutdownRequested(Exception):
    """Raised by the signal handler so start-up and waiting both unwind."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_shutdown(signum: int, frame: types.FrameType | None) -> None:
    # Later signals are ignored so the bounded shutdown in main() can finish.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _ShutdownRequested(signum)


def _start_servers(args: argparse.Namespace, servers: list[_ServerProcess]) -> None:
    """Start the requested servers, appending each before it starts for cleanup."""
    if not args.redis_only:
        kafka = KafkaBroker(num_partitions=args.partitions)
        servers.append(kafka)
        kafka.start()
        print(f"KAFKA={kafka.bootstrap_servers}", flush=True)
    if not args.kafka_only:
        redis_server = RedisServer()
        servers.append(redis_server)
        redis_server.start()
        print(f"REDIS={redis_server.url}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the brokers until SIGTERM or SIGINT. Return the process exit code."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    # Handlers go in first, so a signal during a slow Kafka start still stops
    # the JVM instead of leaving it running in its own session.
    signal.signal(signal.SIGTERM, _raise_shutdown)
    signal.signal(signal.SIGINT, _raise_shutdown)
    servers: list[_ServerProcess] = []
    try:
        _start_servers(args, servers)
        while True:
            signal.pause()
    except _ShutdownRequested as request:
        log.info("received %s, stopping", request)
        return 0
    except BrokerError as error:
        log.error("%s", error)
        return 1
    finally:
        for server in reversed(servers):
            server.close()


if __name__ == "__main__":
    sys.exit(main())
