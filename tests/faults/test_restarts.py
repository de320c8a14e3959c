"""Restarts of brokercast with a consumer group: nothing broadcast is skipped.

A producer numbers every event and keeps producing while instance A is stopped
(SIGTERM) or killed (SIGKILL) and instance B takes over with the same group. The
events B reads before its client connects are dropped and counted as
``no_clients``, as documented, so B's first read is ``first received - dropped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.faults.support import KafkaProducer, RedisProducer, Tally, report
from tests.helpers import Brokercast, seconds, wait_for
from tools.brokers import KafkaBroker, RedisServer

NO_CLIENTS = 'brokercast_events_dropped_total{reason="no_clients"}'

Send = Callable[[int], Awaitable[list[int]]]


async def collect(client: ClientConnection, tally: Tally) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in client:
            tally.add(message)


@contextlib.asynccontextmanager
async def producing(send: Send, rate: int) -> AsyncIterator[list[int]]:
    """Send ``rate`` events per second in the background; yield the sequences."""
    sent: list[int] = []

    async def loop() -> None:
        while True:
            sent.extend(await send(rate // 10))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(loop())
    try:
        yield sent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def registered(bc: Brokercast) -> None:
    await wait_for(
        lambda: bc.metric("brokercast_clients_connected") == 1,
        seconds(5),
        "client registered",
    )


async def handover(
    settings: dict[str, object], send: Send, stop: signal.Signals
) -> dict[str, int]:
    """Run A, stop it with ``stop`` mid-stream, run B; return what was measured."""
    first, second = Tally(), Tally()
    async with producing(send, RATE) as sent:
        with Brokercast(settings) as a:
            await a.wait_ready()
            async with connect(a.base_url) as client:
                await registered(a)
                reader = asyncio.create_task(collect(client, first))
                await wait_for(
                    lambda: len(first.sequences) >= RATE, seconds(30), "A delivers"
                )
                assert a.process is not None
                a.process.send_signal(stop)
                await asyncio.wait_for(reader, seconds(15))
            a_code = a.process.wait(seconds(15))

        with Brokercast(settings) as b:
            await b.wait_listening()
            async with connect(b.base_url) as client:
                await registered(b)
                reader = asyncio.create_task(collect(client, second))
                await wait_for(
                    lambda: len(second.sequences) >= RATE, seconds(40), "B delivers"
                )
                await stop_producing(sent)
                last = sent[-1]
                await wait_for(
                    lambda: bool(second.sequences) and second.sequences[-1] == last,
                    seconds(20),
                    f"B delivers the last event {last}",
                )
                dropped = int(b.metric(NO_CLIENTS))
            b_code = await b.terminate()

    for tally in (first, second):
        assert tally.in_order()
        assert tally.duplicates == 0
        assert tally.missing(range(tally.sequences[0], tally.sequences[-1] + 1)) == []
    resumed_at = second.sequences[0] - dropped
    return {
        "a_exit": a_code,
        "b_exit": b_code,
        "a_last": first.sequences[-1],
        "b_first_read": resumed_at,
        "b_dropped_before_client": dropped,
        "skipped": max(0, resumed_at - first.sequences[-1] - 1),
        "duplicated": max(0, first.sequences[-1] + 1 - resumed_at),
    }


async def stop_producing(sent: list[int]) -> None:
    """Wait for the producer task's next batch, then let the caller stop it."""
    count = len(sent)
    await wait_for(lambda: len(sent) > count, seconds(5), "producer still running")


#: Events per second produced during a handover.
RATE = 200


def redis_group_source(server: RedisServer, stream: str) -> dict[str, object]:
    return {
        "type": "redis",
        "url": server.url,
        "streams": [stream],
        "group": "bridge",
        "start": "0",
        "block_ms": 500,
    }


def kafka_group_source(broker: KafkaBroker, topic: str) -> dict[str, object]:
    return {
        "type": "kafka",
        "bootstrap_servers": broker.bootstrap_servers,
        "topics": [topic],
        "group_id": f"{topic}-group",
        "start": "earliest",
        "commit_interval": 0.5,
    }


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
async def test_redis_group_handover(
    redis_server: RedisServer, name: str, stop: signal.Signals
) -> None:
    """Same instance id after a restart: pending entries are read again."""
    settings = {
        "id": f"{name}-instance",
        "sources": {"events": redis_group_source(redis_server, name)},
    }
    producer = RedisProducer(redis_server, name)
    try:
        result = await handover(settings, producer.send, stop)
    finally:
        await producer.close()
    report(f"redis-group-{stop.name}", **result)
    check(result, stop)

    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        summary = await client.xpending(name, "bridge")
    finally:
        await client.aclose()
    assert summary["pending"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
async def test_kafka_group_handover(
    kafka_broker: KafkaBroker, name: str, stop: signal.Signals
) -> None:
    """Committed offsets carry a restart; only unflushed commits are replayed."""
    kafka_broker.create_topic(name)
    settings = {"sources": {"orders": kafka_group_source(kafka_broker, name)}}
    producer = KafkaProducer(kafka_broker, name)
    await producer.start()
    try:
        result = await handover(settings, producer.send, stop)
    finally:
        await producer.close()
    report(f"kafka-group-{stop.name}", **result)
    check(result, stop)


def check(result: dict[str, int], stop: signal.Signals) -> None:
    assert result["b_exit"] == 0
    assert result["skipped"] == 0
    if stop is signal.SIGTERM:
        assert result["a_exit"] == 0
        assert result["duplicated"] == 0
    else:
        assert result["a_exit"] == -signal.SIGKILL
        # Unacknowledged work is bounded by a second or two of events.
        assert result["duplicated"] <= 2 * RATE
