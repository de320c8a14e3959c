"""End to end: real brokers, brokercast as a child process, real websocket clients."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
import redis.asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import (
    Brokercast,
    kafka_source,
    produce_to_kafka,
    receive,
    redis_source,
    seconds,
)
from tools.brokers import KafkaBroker, RedisServer


async def test_kafka_two_clients_get_ten_in_order(
    kafka_broker: KafkaBroker, name: str
) -> None:
    kafka_broker.create_topic(name)
    with Brokercast({"sources": {"orders": kafka_source(kafka_broker, name)}}) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url + "/") as first, connect(bc.base_url) as second:
            await bc.wait_clients(2)
            values = [f"event-{i}".encode() for i in range(10)]
            await produce_to_kafka(kafka_broker.bootstrap_servers, name, values)
            expected = [v.decode() for v in values]
            assert await receive(first, 10, seconds(20)) == expected
            assert await receive(second, 10, seconds(20)) == expected


async def test_redis_two_clients_get_ten_in_order(
    redis_server: RedisServer, name: str
) -> None:
    settings = {
        "codec": "json",
        "sources": {"events": redis_source(redis_server, name)},
    }
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as first, connect(bc.base_url) as second:
            await bc.wait_clients(2)
            client = redis.asyncio.Redis.from_url(redis_server.url)
            ids = [
                await client.xadd(name, {"data": f'{{"n": {i}}}'}) for i in range(10)
            ]
            await client.aclose()
            for ws in (first, second):
                documents = [json.loads(m) for m in await receive(ws, 10, seconds(10))]
                assert [d["payload"] for d in documents] == [
                    {"n": i} for i in range(10)
                ]
                assert [d["position"] for d in documents] == [i.decode() for i in ids]
                assert {d["channel"] for d in documents} == {name}
                assert {d["source"] for d in documents} == {"events"}


async def test_channel_client_gets_only_its_channel(
    redis_server: RedisServer, name: str
) -> None:
    wanted, other = f"{name}-a", f"{name}-b"
    settings = {"sources": {"events": redis_source(redis_server, wanted, other)}}
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with (
            connect(f"{bc.base_url}/{wanted}") as channel_client,
            connect(bc.base_url) as all_client,
        ):
            await bc.wait_clients(2)
            client = redis.asyncio.Redis.from_url(redis_server.url)
            for i in range(4):
                await client.xadd(wanted if i % 2 == 0 else other, {"v": f"m{i}"})
            await client.aclose()
            everything = await receive(all_client, 4, seconds(10))
            # Order is kept within a stream, not across streams.
            assert [m for m in everything if m in ("m0", "m2")] == ["m0", "m2"]
            assert [m for m in everything if m in ("m1", "m3")] == ["m1", "m3"]
            assert await receive(channel_client, 2, seconds(10)) == ["m0", "m2"]
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(seconds(0.5)):
                    await channel_client.recv()


async def test_stalled_client_closed_healthy_gets_all(
    redis_server: RedisServer, name: str
) -> None:
    """A client that stops reading is closed with 1013; the other loses nothing."""
    settings = {
        "client_queue_bytes": 262_144,
        "sources": {"events": redis_source(redis_server, name, count=1000)},
    }
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        # A small receive buffer and max_queue=1 make this client stop reading
        # early, the way a frozen browser tab does.
        stalled_socket = socket.socket()
        stalled_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled_socket.connect(("127.0.0.1", bc.port))
        async with (
            connect(bc.base_url, sock=stalled_socket, max_queue=1) as stalled,
            connect(bc.base_url, max_size=None) as healthy,
        ):
            await bc.wait_clients(2)
            slow_metric = 'brokercast_clients_disconnected_total{reason="slow_client"}'
            produced = await produce_until(
                redis_server, name, lambda: bc.metric(slow_metric) == 1
            )

            received = await receive(healthy, produced, seconds(30))
            assert [m[:6] for m in received] == [f"{i:06d}" for i in range(produced)]
            assert bc.metric(slow_metric) == 1
            # Frames the stalled client missed count as dropped, not delivered.
            delivered = bc.metric("brokercast_frames_delivered_total")
            assert produced <= delivered < 2 * produced
            dropped = bc.metric('brokercast_events_dropped_total{reason="slow_client"}')
            assert dropped >= 1
            # Reading now drains what was buffered, then the close frame.
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(stalled.recv(), seconds(10))
            assert stalled.close_code == 1013
            assert stalled.close_reason == "client too slow"
        assert "slow client disconnected" in bc.log()


async def produce_until(
    server: RedisServer, stream: str, done: Callable[[], bool], limit: int = 60_000
) -> int:
    """XADD 1 KB entries at about 4 MB/s until ``done()``; return the count."""
    client = redis.asyncio.Redis.from_url(server.url)
    padding = "x" * 1000
    produced = 0
    try:
        while produced < limit and not done():
            async with client.pipeline(transaction=False) as pipe:
                for i in range(produced, produced + 200):
                    pipe.xadd(stream, {"v": f"{i:06d}{padding}"})
                await pipe.execute()
            produced += 200
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    assert done(), f"condition not reached after {produced} entries"
    return produced


async def test_sigterm_closes_clients_with_1001(
    redis_server: RedisServer, name: str
) -> None:
    settings = {"sources": {"events": redis_source(redis_server, name)}}
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as client:
            await bc.wait_clients(1)
            code = await bc.terminate(timeout=seconds(5))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(client.recv(), seconds(5))
            assert client.close_code == 1001
        assert code == 0
        assert "brokercast stopped" in bc.log()
        assert "clients_closed=1" in bc.log()


def run_cli(
    *args: str, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERCAST_")}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {"BROKERCAST_PORT": "abc"},
            "brokercast: invalid setting port='abc' (from environment variable "
            "BROKERCAST_PORT): expected an integer from 1 to 65535\n",
        ),
        (
            {"BROKERCAST_CODEC": "protobuf"},
            "brokercast: invalid setting codec='protobuf' (from environment variable "
            "BROKERCAST_CODEC): expected one of plain, json, raw\n",
        ),
        (
            {"BROKERCAST_PORT": ""},
            "brokercast: invalid setting BROKERCAST_PORT='' (from environment "
            "variable BROKERCAST_PORT): the value is empty; unset the variable or "
            "give it a value\n",
        ),
    ],
)
def test_bad_setting_exits_2_with_one_line(
    environment: dict[str, str], message: str
) -> None:
    result = run_cli(environment=environment)
    assert result.returncode == 2
    assert result.stderr == message
    assert result.stdout == ""


def test_config_file_error_names_file(tmp_path: object) -> None:
    from pathlib import Path

    config = Path(str(tmp_path)) / "settings.toml"
    config.write_text("[sources.orders]\ntype = 'kafka'\nbootstrap_servers = 'k:1'\n")
    result = run_cli("--config", str(config), environment={})
    assert result.returncode == 2
    assert result.stderr == (
        "brokercast: missing setting sources.orders.topics: expected a non-empty "
        "list of names; set it in a settings file or with the environment variable "
        "BROKERCAST_SOURCES__ORDERS__TOPICS\n"
    )


async def test_client_frames_after_handshake_are_handled(
    redis_server: RedisServer, name: str
) -> None:
    """Pongs, pings and messages from a client keep its connection healthy."""
    settings = {
        "ping_interval": 0.2,
        "ping_timeout": 2,
        "sources": {"events": redis_source(redis_server, name)},
    }
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url, ping_interval=0.2) as client:
            await bc.wait_clients(1)
            await client.send("hello")
            await client.ping()
            # Several server pings and client pongs go by meanwhile.
            await asyncio.sleep(seconds(1))
            writer = redis.asyncio.Redis.from_url(redis_server.url)
            await writer.xadd(name, {"v": "after-pings"})
            await writer.aclose()
            assert await receive(client, 1, seconds(10)) == ["after-pings"]
        assert " ERROR " not in bc.log()
        assert "Traceback" not in bc.log()
