"""Soak run: a steady stream, client churn and one broker restart, for minutes.

``python -m benchmarks.soak --minutes 30`` starts a Redis server and brokercast on
loopback. It produces numbered events at ``--rate`` per second into a stream read
with a consumer group and keeps one watching client connected. Meanwhile it opens
and closes ``--churn`` short-lived clients per second and restarts Redis (empty)
half-way. Every ``--interval`` seconds it prints brokercast's RSS, open file
descriptors, connected clients and the watcher's delivered, lost and duplicated
counts. It exits 1 when the watcher lost an event, 0 otherwise. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.faults.support import RedisProducer, Tally, open_fds, rss_bytes
from tests.faults.test_clients import short_visit
from tests.helpers import Brokercast
from tools.brokers import RedisServer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="run time in minutes"
    )
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--size", type=int, default=200, help="payload bytes")
    parser.add_argument("--churn", type=int, default=20, help="clients per second")
    parser.add_argument(
        "--interval", type=float, default=60.0, help="seconds between reports"
    )
    return parser.parse_args(argv)


async def produce(server: RedisServer, stream: str, rate: int, size: int) -> None:
    """Add ``rate`` entries a second, retrying while Redis is away."""
    producer = RedisProducer(server, stream)
    began = time.monotonic()
    batch = max(1, rate // 10)
    while True:
        due = began + (producer.next + batch) / rate
        try:
            await producer.send(batch, size)
        except (RedisConnectionError, OSError):
            await producer.client.aclose()
            producer.client = redis.asyncio.Redis.from_url(server.url)
            await asyncio.sleep(0.5)
            began += 0.5  # the outage does not count against the rate
            continue
        await asyncio.sleep(max(0.0, due - time.monotonic()))


async def watch(url: str, tally: Tally) -> None:
    with contextlib.suppress(ConnectionClosed):
        async with connect(url, max_size=None) as client:
            async for message in client:
                tally.add(message)


async def churn(url: str, per_second: int) -> None:
    tasks: set[asyncio.Task[None]] = set()
    while True:
        for _ in range(max(1, per_second // 10)):
            task = asyncio.create_task(short_visit(url))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(0.1)


def status(bc: Brokercast, tally: Tally, began: float) -> str:
    assert bc.process is not None
    pid = bc.process.pid
    sequences = tally.sequences
    lost = (
        len(tally.missing(range(sequences[0], sequences[-1] + 1))) if sequences else 0
    )
    return (
        f"t={(time.monotonic() - began) / 60:5.1f}min "
        f"rss={rss_bytes(pid) / 2**20:6.1f}MiB fds={open_fds(pid):3d} "
        f"clients={bc.metric('brokercast_clients_connected'):4.0f} "
        f"delivered={len(sequences)} lost={lost} duplicates={tally.duplicates}"
    )


async def soak(args: argparse.Namespace) -> int:
    stream = "soak"
    with RedisServer() as server:
        source = {
            "type": "redis",
            "url": server.url,
            "streams": [stream],
            "group": "soak",
            "block_ms": 1000,
        }
        with Brokercast({"sources": {"events": source}}) as bc:
            await bc.wait_listening()
            tally = Tally()
            watcher = asyncio.create_task(watch(bc.base_url, tally))
            await asyncio.sleep(1)
            began = time.monotonic()
            tasks = [
                asyncio.create_task(produce(server, stream, args.rate, args.size)),
                asyncio.create_task(churn(bc.base_url, args.churn)),
            ]
            duration = args.minutes * 60
            restarted = False
            next_report = began + args.interval
            while time.monotonic() - began < duration:
                await asyncio.sleep(1)
                if not restarted and time.monotonic() - began >= duration / 2:
                    print("restarting redis (empty)", flush=True)
                    server.stop()
                    server.start()
                    restarted = True
                if time.monotonic() >= next_report:
                    print(status(bc, tally, began), flush=True)
                    next_report += args.interval
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(3)  # the watcher receives what is in flight
            print("final " + status(bc, tally, began), flush=True)
            code = await bc.terminate()
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            print(f"brokercast exit code {code}", flush=True)
    sequences = tally.sequences
    lost = tally.missing(range(sequences[0], sequences[-1] + 1)) if sequences else []
    return 1 if lost or code != 0 else 0


def main(argv: list[str] | None = None) -> int:
    """Run the soak and return the exit code."""
    return asyncio.run(soak(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
