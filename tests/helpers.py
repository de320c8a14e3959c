"""Shared test helpers: a brokercast child process, waiting and collecting."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from websockets.asyncio.client import ClientConnection

from tools.brokers import KafkaBroker, RedisServer, free_port

#: Every wait in the tests is a multiple of this many seconds; raise it with
#: BROKERCAST_TEST_TIME_UNIT on a slow machine.
TIME_UNIT = float(os.environ.get("BROKERCAST_TEST_TIME_UNIT", "1.0"))


def seconds(count: float) -> float:
    """Return ``count`` time units in seconds."""
    return count * TIME_UNIT


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    message: str,
    interval: float = 0.05,
) -> None:
    """Poll ``condition`` until it holds; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s: {message}")
        await asyncio.sleep(interval)


def to_environment(
    settings: Mapping[str, Any], prefix: str = "BROKERCAST"
) -> dict[str, str]:
    """Flatten nested settings into ``BROKERCAST_*`` variables with ``__``."""
    result: dict[str, str] = {}
    for key, value in settings.items():
        name = (
            f"{prefix}__{key.upper()}"
            if prefix != "BROKERCAST"
            else f"{prefix}_{key.upper()}"
        )
        if isinstance(value, Mapping):
            result.update(to_environment(value, name))
        elif isinstance(value, (list, tuple)):
            result[name] = "[" + ", ".join(f'"{v}"' for v in value) + "]"
        else:
            result[name] = str(value)
    return result


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Return the status and body of a GET, without raising on 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def kafka_source(
    broker: KafkaBroker, *topics: str, **options: object
) -> dict[str, object]:
    """Return settings of a Kafka source reading ``topics`` from the start."""
    source: dict[str, object] = {
        "type": "kafka",
        "bootstrap_servers": broker.bootstrap_servers,
        "topics": list(topics),
        "start": "earliest",
    }
    return {**source, **options}


def redis_source(
    server: RedisServer, *streams: str, **options: object
) -> dict[str, object]:
    """Return settings of a Redis source reading ``streams``."""
    source: dict[str, object] = {"type": "redis", "url": server.url}
    return {**source, "streams": list(streams), **options}


class Brokercast:
    """brokercast run as a child process, the way users run it.

    ``settings`` become ``BROKERCAST_*`` environment variables; host and port
    default to 127.0.0.1 and a free port. Use as a context manager: the process is
    killed on exit if a test left it running.
    """

    def __init__(
        self,
        settings: Mapping[str, Any] | None = None,
        *,
        args: tuple[str, ...] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        base = {"host": "127.0.0.1", "port": self.port, "shutdown_timeout": 10}
        self.settings = {**base, **(settings or {})}
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith("BROKERCAST_")
        }
        environment.update(to_environment(self.settings))
        environment.update(extra_env or {})
        self.environment = environment
        self.args = args
        self.log_path = Path(tempfile.mkstemp(prefix="brokercast-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Return ``ws://127.0.0.1:<port>``."""
        return f"ws://127.0.0.1:{self.port}"

    def http(self, path: str) -> tuple[int, bytes]:
        """GET ``path`` from the server."""
        return http_get(f"http://127.0.0.1:{self.port}{path}")

    def start(self) -> Self:
        """Start the process."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", *self.args],
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self) -> str:
        """Return everything the process has written so far."""
        return self.log_path.read_text(errors="replace")

    def returncode(self) -> int | None:
        """Return the exit code, or ``None`` while running."""
        assert self.process is not None
        return self.process.poll()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until ``/readyz`` returns 200."""
        await self._wait_for_status("/readyz", timeout)

    async def wait_listening(self, timeout: float = 30.0) -> None:
        """Wait until ``/healthz`` returns 200, whatever the sources do."""
        await self._wait_for_status("/healthz", timeout)

    async def _wait_for_status(self, path: str, timeout: float) -> None:
        def returns_200() -> bool:
            if self.returncode() is not None:
                raise AssertionError(f"brokercast exited early:\n{self.log()}")
            try:
                return self.http(path)[0] == 200
            except OSError:
                return False

        await wait_for(returns_200, timeout, f"{path} not 200; log:\n{self.log()}")

    async def terminate(self, timeout: float = 15.0) -> int:
        """Send SIGTERM and return the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        await wait_for(
            lambda: self.returncode() is not None, timeout, "brokercast did not exit"
        )
        code = self.returncode()
        assert code is not None
        return code

    async def wait_clients(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` clients are registered with the hub."""
        await wait_for(
            lambda: self.metric("brokercast_clients_connected") == count,
            seconds(timeout),
            f"{count} client(s) registered",
        )

    def metric(self, name: str) -> float:
        """Return the value of one metric line such as ``x_total{reason="a"}``."""
        status, body = self.http("/metrics")
        assert status == 200, body
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if error is not None:
            sys.stderr.write(f"--- brokercast log ---\n{self.log()}\n")
        self.log_path.unlink(missing_ok=True)


async def produce_to_kafka(
    bootstrap_servers: str,
    topic: str,
    values: list[bytes],
    partition: int | None = None,
) -> None:
    """Send ``values`` to ``topic`` in order and wait until all are written.

    With ``partition`` ``None`` the producer's partitioner chooses the partition.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def receive(client: ClientConnection, count: int, timeout: float) -> list[Any]:
    """Receive ``count`` messages or fail after ``timeout`` seconds."""
    messages: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(messages) < count:
                messages.append(await client.recv())
    except TimeoutError:
        raise AssertionError(
            f"received {len(messages)} of {count} messages in {timeout:.1f} s: "
            f"{messages[:5]!r}"
        ) from None
    return messages
