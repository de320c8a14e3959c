"""The producer: writes benchmark events to a Redis stream or a Kafka topic.

Open loop: event ``k`` of a run is due at ``start + k / rate`` and carries that
intended time as ``t0``, whether or not the producer managed to send it on time,
so a stalled pipeline shows up as latency instead of a slower producer.

Commands, one per line on stdin; replies are JSON lines on stdout:

* ``run RATE WARM MEASURE`` produces RATE events/s for WARM + MEASURE seconds and
  replies ``{"window": [lo, hi]}`` at once (the sequence numbers sent during the
  MEASURE part) and ``{"done": ..., "behind_ms": ...}`` at the end;
* ``burst COUNT`` sends COUNT events as fast as it can, all due now;
* ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import uvloop

from benchmarks.common import CHANNEL, emit, make_event

#: Events written by one pipeline or one batch of Kafka sends at most.
CHUNK = 500
TICK_SECONDS = 0.001
#: Centrifugo's consumers read the target channel from this field or header; the
#: other contenders ignore it.
ROUTING = b"centrifugo-channels"
CHANNEL_BYTES = CHANNEL.encode()


class RedisSink:
    """Writes events to a Redis stream with pipelined XADD, capped in length."""

    def __init__(self, url: str, stream: str) -> None:
        from redis.asyncio import Redis

        self.client = Redis.from_url(url)
        self.stream = stream

    async def send(self, events: list[bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            fields = {b"data": event, ROUTING: CHANNEL_BYTES}
            pipe.xadd(self.stream, fields, maxlen=100_000, approximate=True)
        await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()


class KafkaSink:
    """Writes events to a Kafka topic with aiokafka, one batch per tick."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from aiokafka import AIOKafkaProducer

        self.topic = topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=1, acks=1, max_batch_size=1 << 20
        )

    async def start(self) -> None:
        await self.producer.start()

    async def send(self, events: list[bytes]) -> None:
        headers = [(ROUTING.decode(), CHANNEL_BYTES)]
        futures = [
            await self.producer.send(self.topic, event, headers=headers)
            for event in events
        ]
        await asyncio.gather(*futures)

    async def close(self) -> None:
        await self.producer.stop()


class Producer:
    """Keeps the next sequence number across runs, so clients see no gap."""

    def __init__(self, sink: Any, size: int) -> None:
        self.sink = sink
        self.size = size
        self.next_seq = 0

    async def run(self, rate: float, warm: float, measure: float) -> None:
        first = self.next_seq
        total = round(rate * (warm + measure))
        lo = first + round(rate * warm)
        emit({"window": [lo, first + total - 1]})
        start = time.monotonic_ns()
        period_ns = 1e9 / rate
        sent = 0
        behind_ns = 0
        while sent < total:
            now = time.monotonic_ns()
            due = min(total, int((now - start) / period_ns) + 1)
            if due <= sent:
                await asyncio.sleep(TICK_SECONDS)
                continue
            due = min(due, sent + CHUNK)
            events = [
                make_event(first + k, start + int(k * period_ns), self.size)
                for k in range(sent, due)
            ]
            behind_ns = max(behind_ns, now - (start + int(sent * period_ns)))
            await self.sink.send(events)
            sent = due
        self.next_seq = first + total
        emit({"done": self.next_seq, "behind_ms": round(behind_ns / 1e6, 2)})

    async def burst(self, count: int) -> None:
        first = self.next_seq
        emit({"window": [first, first + count - 1]})
        t0 = time.monotonic_ns()
        for lo in range(0, count, CHUNK):
            hi = min(count, lo + CHUNK)
            await self.sink.send(
                [make_event(first + k, t0, self.size) for k in range(lo, hi)]
            )
        self.next_seq = first + count
        behind_ms = round((time.monotonic_ns() - t0) / 1e6, 2)
        emit({"done": self.next_seq, "behind_ms": behind_ms})


async def serve(args: argparse.Namespace) -> None:
    sink: Any
    if args.kafka:
        sink = KafkaSink(args.kafka, args.stream)
        await sink.start()
    else:
        sink = RedisSink(args.redis, args.stream)
    producer = Producer(sink, args.size)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    emit({"ready": True})
    try:
        while line := (await reader.readline()).decode().split():
            if line[0] == "run":
                await producer.run(float(line[1]), float(line[2]), float(line[3]))
            elif line[0] == "burst":
                await producer.burst(int(line[1]))
            elif line[0] == "quit":
                break
    finally:
        await sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="Redis URL, e.g. redis://127.0.0.1:6379")
    parser.add_argument("--kafka", help="Kafka bootstrap servers, host:port")
    parser.add_argument("--stream", required=True, help="stream key or topic")
    parser.add_argument("--size", type=int, default=1024, help="event size, bytes")
    uvloop.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
