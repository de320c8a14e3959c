"""Redis source defects found by breaking the broker under brokercast."""

from __future__ import annotations

import redis.asyncio
from websockets.asyncio.client import connect

from tests.helpers import Brokercast, receive, seconds, wait_for
from tools.brokers import RedisServer


async def test_group_keeps_entries_after_restart(
    name: str,
) -> None:
    """With ``group`` set, entries written to a Redis that restarted without
    persistence, before brokercast reconnects, must still be delivered.

    Today the group is recreated at ``$`` after a connection error (only a
    NOGROUP error switches to ``0``), so those entries are skipped for good.
    """
    with RedisServer() as server:
        source = {
            "type": "redis",
            "url": server.url,
            "streams": [name],
            "group": "g",
        }
        with Brokercast({"sources": {"events": source}}) as bc:
            await bc.wait_ready()
            async with connect(f"{bc.base_url}/{name}") as ws:
                await wait_for(
                    lambda: bc.metric("brokercast_clients_connected") == 1,
                    seconds(5),
                    "client registered",
                )
                server.stop()
                await wait_for(
                    lambda: bc.http("/readyz")[0] == 503, seconds(20), "outage seen"
                )
                server.start()
                client = redis.asyncio.Redis.from_url(server.url)
                try:
                    await client.xadd(name, {"v": "during"})
                finally:
                    await client.aclose()
                messages = await receive(ws, 1, seconds(30))
                assert messages == ["during"]


async def test_source_recovers_after_wrongtype(
    redis_server: RedisServer, name: str
) -> None:
    """A stream key that briefly holds another type (WRONGTYPE) must not fail
    the source for good: once the key is a stream again, entries flow.

    Today the ResponseError escapes consume(), the source is marked failed and
    never retries, so /readyz stays 503 until the process is restarted.
    """
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await client.set(name, "not a stream")
        source = {"type": "redis", "url": redis_server.url, "streams": [name]}
        with Brokercast({"sources": {"events": source}}) as bc:
            await bc.wait_listening()
            await wait_for(
                lambda: "source not connected" in bc.log(), seconds(20), "failure"
            )
            await client.delete(name)
            await client.xadd(name, {"v": "first"})
            await bc.wait_ready(timeout=seconds(30))
            async with connect(f"{bc.base_url}/{name}") as ws:
                await wait_for(
                    lambda: bc.metric("brokercast_clients_connected") == 1,
                    seconds(5),
                    "client registered",
                )
                await client.xadd(name, {"v": "second"})
                assert await receive(ws, 1, seconds(10)) == ["second"]
    finally:
        await client.aclose()
