"""Run the whole bridge locally: brokers, brokercast, a producer and a watcher.

Starts Redis and Apache Kafka on free loopback ports, brokercast on
127.0.0.1:3232 (``--port`` to change) reading the Kafka topic ``orders`` and the
Redis stream ``sensors``, a producer that writes one event to each every
``--interval`` seconds, and a websocket client that prints what arrives. Stop it
with Ctrl-C, or give ``--duration`` in seconds.

While it runs, any other client can watch too, e.g.
``python -m websockets ws://127.0.0.1:3232/`` or ``.../sensors`` for one channel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

import redis.asyncio
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped, unused-ignore]
from websockets.asyncio.client import connect

from tools.brokers import KafkaBroker, RedisServer

TOPIC = "orders"
STREAM = "sensors"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=3232, help="brokercast port")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between events"
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="seconds to run; 0: until Ctrl-C"
    )
    parser.add_argument("--codec", default="json", choices=("plain", "json", "raw"))
    return parser.parse_args(argv)


def brokercast_environment(
    kafka: KafkaBroker, redis_server: RedisServer, args: argparse.Namespace
) -> dict[str, str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("BROKERCAST")
    }
    environment.update(
        {
            "BROKERCAST_HOST": "127.0.0.1",
            "BROKERCAST_PORT": str(args.port),
            "BROKERCAST_CODEC": args.codec,
            "BROKERCAST_SOURCES__ORDERS__TYPE": "kafka",
            "BROKERCAST_SOURCES__ORDERS__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "BROKERCAST_SOURCES__ORDERS__TOPICS": TOPIC,
            "BROKERCAST_SOURCES__SENSORS__TYPE": "redis",
            "BROKERCAST_SOURCES__SENSORS__URL": redis_server.url,
            "BROKERCAST_SOURCES__SENSORS__STREAMS": STREAM,
        }
    )
    return environment


async def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("demo: brokercast exited; see its log above")
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise SystemExit("demo: brokercast did not become ready within 60 s")


async def produce(kafka: KafkaBroker, redis_url: str, interval: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        for n in itertools.count(1):
            order = {"order": n, "amount": round(9.99 * n, 2), "sent": time.time()}
            await producer.send_and_wait(TOPIC, json.dumps(order).encode())
            reading = {"sensor": "s-1", "celsius": 20 + n % 5, "sent": time.time()}
            await client.xadd(STREAM, {"data": json.dumps(reading)})
            await asyncio.sleep(interval)
    finally:
        await producer.stop()
        await client.aclose()


async def watch(port: int) -> None:
    async with connect(f"ws://127.0.0.1:{port}/") as client:
        print(f"demo: watching ws://127.0.0.1:{port}/", flush=True)
        print(f"demo: open http://127.0.0.1:{port}/ in a browser", flush=True)
        async for message in client:
            print(f"client received: {message!s}", flush=True)


async def run(args: argparse.Namespace) -> None:
    with RedisServer() as redis_server, KafkaBroker() as kafka:
        print(f"demo: kafka at {kafka.bootstrap_servers}", flush=True)
        print(f"demo: redis at {redis_server.url}", flush=True)
        kafka.create_topic(TOPIC)
        process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            env=brokercast_environment(kafka, redis_server, args),
        )
        try:
            await wait_ready(args.port, process)
            tasks = [
                asyncio.create_task(watch(args.port)),
                asyncio.create_task(produce(kafka, redis_server.url, args.interval)),
            ]
            await asyncio.sleep(0.2)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration or None)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
            print(f"demo: brokercast exited with code {code}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
