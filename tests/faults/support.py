"""Helpers of the fault-injection tests: numbered events, tallies, process stats.

Every event a test produces carries ``<sequence> <send time in ns> <padding>`` as
its payload, so a receiving client can tell gaps, duplicates, order and latency
without any other bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio
from aiokafka import AIOKafkaProducer

from tools.brokers import KafkaBroker, RedisServer

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def numbered(sequence: int, size: int = 0) -> bytes:
    """Return the payload of event ``sequence``, padded to about ``size`` bytes."""
    head = f"{sequence:09d} {time.time_ns()}"
    return (head + " " + "x" * max(0, size - len(head) - 1)).encode()


def sequence_of(message: str | bytes) -> int:
    """Return the sequence number at the start of a received payload."""
    text = message.decode() if isinstance(message, bytes) else message
    return int(text[:9])


@dataclass
class Tally:
    """What one client received: sequences in arrival order and latencies."""

    sequences: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def add(self, message: str | bytes) -> None:
        """Record one received payload."""
        text = message.decode() if isinstance(message, bytes) else message
        self.sequences.append(int(text[:9]))
        sent = int(text[10:29])
        self.latencies.append((time.time_ns() - sent) / 1e9)

    @property
    def duplicates(self) -> int:
        """Number of sequences received more than once."""
        return len(self.sequences) - len(set(self.sequences))

    def missing(self, expected: Iterable[int]) -> list[int]:
        """Return the expected sequences never received, in order."""
        seen = set(self.sequences)
        return [s for s in expected if s not in seen]

    def in_order(self) -> bool:
        """Return whether every sequence is larger than the one before."""
        pairs = zip(self.sequences, self.sequences[1:], strict=False)
        return all(a < b for a, b in pairs)

    def percentile(self, share: float) -> float:
        """Return the latency in seconds below which ``share`` of events arrived."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class RedisProducer:
    """Adds numbered entries to a Redis stream."""

    def __init__(self, server: RedisServer, stream: str, field: str = "v") -> None:
        self.client = redis.asyncio.Redis.from_url(server.url)
        self.stream = stream
        self.field = field
        self.next = 0

    async def send(self, count: int = 1, size: int = 0) -> list[int]:
        """Add ``count`` entries in one pipeline; return their sequences."""
        sequences = list(range(self.next, self.next + count))
        async with self.client.pipeline(transaction=False) as pipe:
            for sequence in sequences:
                pipe.xadd(self.stream, {self.field: numbered(sequence, size)})
            await pipe.execute()
        self.next += count
        return sequences

    async def close(self) -> None:
        """Close the connection."""
        await self.client.aclose()


class KafkaProducer:
    """Sends numbered records to a Kafka topic."""

    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap_servers, linger_ms=5
        )
        self.topic = topic
        self.next = 0

    async def start(self) -> None:
        """Connect to the broker."""
        await self.producer.start()

    async def send(self, count: int = 1, size: int = 0) -> list[int]:
        """Send ``count`` records and wait until the broker has them."""
        sequences = list(range(self.next, self.next + count))
        futures = [
            await self.producer.send(self.topic, numbered(s, size)) for s in sequences
        ]
        await asyncio.gather(*futures)
        self.next += count
        return sequences

    async def send_raw(self, value: bytes) -> None:
        """Send one record with ``value`` as it is."""
        await (await self.producer.send(self.topic, value))

    async def close(self) -> None:
        """Flush and disconnect."""
        await self.producer.stop()


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of process ``pid``, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Return the resident set size (VmRSS) of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    """Return the number of open file descriptors of process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def log_lines(text: str) -> list[str]:
    """Return the log records of a brokercast log, one per line, tracebacks out."""
    return [line for line in text.splitlines() if line[:4].isdigit()]


def report(scenario: str, **values: Any) -> None:
    """Print one measured result line; ``pytest -s`` shows it, -rA too."""
    pairs = " ".join(f"{k}={v}" for k, v in values.items())
    print(f"\nRESULT {scenario}: {pairs}", file=sys.stderr)
    path = os.environ.get("BROKERCAST_FAULTS_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"scenario": scenario, **values}) + "\n")


class ClientProcess:
    """A websocket client in a child process (``tests.faults.wsclient``).

    A separate process keeps the client's own latency free of the test's event
    loop, and lets a test freeze it with SIGSTOP like a stuck browser tab.
    """

    def __init__(self, url: str, out: Path, *options: str) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.wsclient", url, str(out), *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        """Process id of the client."""
        return self.process.pid

    def wait_connected(self, timeout: float) -> None:
        """Block until the client printed that its handshake completed."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().decode() if ready else ""
        if line.strip() != "connected":
            raise AssertionError(f"client did not connect in {timeout} s: {line!r}")

    def finish(self, timeout: float) -> dict[str, Any]:
        """Ask the client to stop (SIGTERM) and return its summary."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout)
        return dict(json.loads(self.out.read_text()))

    def kill(self) -> None:
        """Kill the client if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
