"""Redis faults: restarts, flushes, deleted streams, idle reads, bad entries."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio
from websockets.asyncio.client import ClientConnection, connect

from tests.faults.support import RedisProducer, cpu_seconds, log_lines, report
from tests.helpers import Brokercast, receive, redis_source, seconds, wait_for
from tools.brokers import RedisServer

GROUP = "bridge"


def group_source(
    server: RedisServer, stream: str, **options: object
) -> dict[str, object]:
    return redis_source(server, stream, group=GROUP, **options)


async def next_sequence(client: ClientConnection, timeout: float) -> int:
    message = await asyncio.wait_for(client.recv(), timeout)
    return int(message[:9])


async def test_redis_restart_and_flush_recreate_group(
    private_redis: RedisServer, name: str
) -> None:
    """An empty restart, FLUSHALL and DEL each lose the group; it comes back."""
    server = private_redis
    block_ms = 1000
    settings = {"sources": {"events": group_source(server, name, block_ms=block_ms)}}
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        assert bc.process is not None
        async with connect(bc.base_url) as client:
            await bc.wait_clients(1)
            producer = RedisProducer(server, name)
            await producer.send()
            assert await next_sequence(client, seconds(5)) == 0

            # Restart without persistence: the server comes back empty.
            lines = len(log_lines(bc.log()))
            cpu = cpu_seconds(bc.process.pid)
            server.stop()
            began = time.monotonic()
            await wait_for(lambda: bc.http("/readyz")[0] == 503, seconds(10), "503")
            await asyncio.sleep(5)  # the outage being measured
            cpu_share = (cpu_seconds(bc.process.pid) - cpu) / (time.monotonic() - began)
            outage_lines = len(log_lines(bc.log())) - lines
            server.start()
            # Added before brokercast reconnects: the recreated group must see it.
            await producer.client.aclose()
            producer.client = redis.asyncio.Redis.from_url(server.url)
            await producer.send()
            restarted = time.monotonic()
            assert await next_sequence(client, seconds(20)) == 1
            restart_recovery = time.monotonic() - restarted
            await wait_for(lambda: bc.http("/readyz")[0] == 200, seconds(10), "200")

            # FLUSHALL while a read blocks, then a new entry at once.
            await asyncio.sleep(block_ms / 1000 / 2)
            await producer.client.flushall()
            flushed = time.monotonic()
            await producer.send()
            assert await next_sequence(client, seconds(10)) == 2
            flush_recovery = time.monotonic() - flushed

            # DEL of the stream while a read blocks is noticed within one block.
            await asyncio.sleep(block_ms / 1000 / 2)
            await producer.client.delete(name)
            deleted = time.monotonic()
            await producer.send()
            assert await next_sequence(client, seconds(10)) == 3
            delete_recovery = time.monotonic() - deleted
            await producer.close()
        assert await bc.terminate() == 0
        log = bc.log()

    report(
        "redis-restart-flush-del",
        outage_cpu_share=round(cpu_share, 4),
        outage_log_lines=outage_lines,
        restart_recovery_s=round(restart_recovery, 2),
        flush_recovery_s=round(flush_recovery, 2),
        delete_recovery_s=round(delete_recovery, 2),
    )
    assert cpu_share < 0.05
    assert outage_lines <= 2
    assert delete_recovery < block_ms / 1000 + seconds(2)
    assert log.count("Traceback") == 0
    assert log.count(" ERROR ") == 0


async def test_redis_idle_block_longer_than_socket_timeout(
    redis_server: RedisServer, name: str
) -> None:
    """A read blocking 6 s on an idle stream is no error and no reconnect."""
    block_ms = 6000
    settings = {
        "sources": {"events": group_source(redis_server, name, block_ms=block_ms)}
    }
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as client:
            await bc.wait_clients(1)
            lines = len(log_lines(bc.log()))
            connections = (await admin.info("stats"))["total_connections_received"]
            await asyncio.sleep(2 * block_ms / 1000 + 1)  # two idle reads
            reconnects = (await admin.info("stats"))[
                "total_connections_received"
            ] - connections
            producer = RedisProducer(redis_server, name)
            await producer.send()
            await producer.close()
            assert await next_sequence(client, seconds(5)) == 0
            idle_lines = len(log_lines(bc.log())) - lines
    await admin.aclose()
    report(
        "redis-idle-block",
        block_ms=block_ms,
        reconnects=reconnects,
        log_lines=idle_lines,
    )
    # The /metrics request of wait_clients() and the producer are two connections.
    assert reconnects == 0
    assert idle_lines == 0


async def test_redis_claims_entries_of_crashed_consumer(
    redis_server: RedisServer, name: str
) -> None:
    """Entries another consumer read and never acked are claimed and delivered."""
    producer = RedisProducer(redis_server, name)
    await producer.client.xgroup_create(name, GROUP, id="0", mkstream=True)
    await producer.send(3)
    # A consumer that read three entries and crashed before acking them.
    await producer.client.xreadgroup(GROUP, "crashed", {name: ">"})
    settings = {
        "sources": {"events": group_source(redis_server, name, claim_idle_ms=4000)}
    }
    with Brokercast(settings) as bc:
        await bc.wait_listening()
        async with connect(bc.base_url) as client:
            await bc.wait_clients(1)
            messages = await receive(client, 3, seconds(15))
        assert [int(m[:9]) for m in messages] == [0, 1, 2]
        await wait_for(pending_is(producer.client, name, 0), seconds(5), "all acked")
    await producer.close()


def pending_is(client: redis.asyncio.Redis, stream: str, count: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return (await client.xpending(stream, GROUP))["pending"] == count

    return check


async def test_redis_invalid_utf8_entry_acked(
    redis_server: RedisServer, name: str
) -> None:
    """Non-UTF-8 bytes are replaced, counted and acked; the next entry follows."""
    settings = {"sources": {"events": group_source(redis_server, name)}}
    client = redis.asyncio.Redis.from_url(redis_server.url)
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as ws:
            await bc.wait_clients(1)
            await client.xadd(name, {"v": b"fo\xff\xfeo"})
            await client.xadd(name, {"v": b"ok"})
            assert await receive(ws, 2, seconds(5)) == ["fo\ufffd\ufffdo", "ok"]
        assert bc.metric("brokercast_invalid_utf8_total") == 1
        await wait_for(pending_is(client, name, 0), seconds(5), "both acked")
    await client.aclose()


@pytest.mark.parametrize("codec", ["plain", "json"])
async def test_redis_oversize_entry_dropped(
    redis_server: RedisServer, name: str, codec: str
) -> None:
    """An entry over max_event_bytes is dropped and counted, the next delivered."""
    settings = {
        "codec": codec,
        "max_event_bytes": 1000,
        "sources": {"events": group_source(redis_server, name)},
    }
    client = redis.asyncio.Redis.from_url(redis_server.url)
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as ws:
            await bc.wait_clients(1)
            await client.xadd(name, {"v": "a" * 1001})
            await client.xadd(name, {"v": "b" * 1000})
            (message,) = await receive(ws, 1, seconds(5))
            assert "b" * 1000 in message
            assert bc.metric('brokercast_events_dropped_total{reason="oversize"}') == 1
        await wait_for(pending_is(client, name, 0), seconds(5), "both acked")
    await client.aclose()
