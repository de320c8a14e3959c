"""Demo producer for the docker compose stack.

Writes one small JSON event per interval to a Kafka topic and to a Redis
stream, so that a websocket client of brokercast has something to show.
Configured by environment variables (defaults in brackets):

- ``DEMO_KAFKA_BOOTSTRAP_SERVERS`` [kafka:9092], ``DEMO_KAFKA_TOPIC`` [orders]
- ``DEMO_REDIS_URL`` [redis://redis:6379/0], ``DEMO_REDIS_STREAM`` [clicks]
- ``DEMO_INTERVAL_SECONDS`` [1]: seconds between two events
- ``DEMO_COUNT`` [0]: events to write to each broker before exiting; 0 runs
  until SIGTERM or SIGINT

Exits 0 on SIGTERM or SIGINT, or after ``DEMO_COUNT`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

import orjson
import redis.asyncio
from aiokafka import AIOKafkaProducer

logger = logging.getLogger("brokercast.demo")

#: Entries the demo stream keeps; older ones are trimmed so Redis stays small.
STREAM_MAX_ENTRIES = 10_000


def environment(name: str, default: str) -> str:
    """Return the environment variable ``name``, or ``default`` when unset."""
    return os.environ.get(name) or default


async def produce(stop: asyncio.Event) -> int:
    """Write events until ``stop`` is set or the count is reached; return it."""
    topic = environment("DEMO_KAFKA_TOPIC", "orders")
    stream = environment("DEMO_REDIS_STREAM", "clicks")
    interval = float(environment("DEMO_INTERVAL_SECONDS", "1"))
    count = int(environment("DEMO_COUNT", "0"))

    producer = AIOKafkaProducer(
        bootstrap_servers=environment("DEMO_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    )
    client = redis.asyncio.Redis.from_url(
        environment("DEMO_REDIS_URL", "redis://redis:6379/0")
    )
    await producer.start()
    sequence = 0
    try:
        while not stop.is_set() and (count == 0 or sequence < count):
            sequence += 1
            event = {"sequence": sequence, "sent_at": time.time()}
            await producer.send_and_wait(topic, orjson.dumps(event))
            await client.xadd(
                stream,
                {"data": orjson.dumps(event)},
                maxlen=STREAM_MAX_ENTRIES,
                approximate=True,
            )
            if sequence % 10 == 1:
                logger.info("wrote event %d to %s and %s", sequence, topic, stream)
            # Sleep for the interval, but wake up at once on SIGTERM.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        await producer.stop()
        await client.aclose()
    return sequence


async def main() -> None:
    """Run the producer until SIGTERM, SIGINT or the configured count."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    written = await produce(stop)
    logger.info("stopped after %d events", written)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(main())
