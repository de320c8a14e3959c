"""The running service: readiness, probes, metrics switch, commits and acks."""

from __future__ import annotations

import asyncio
import json
import signal
import socket

import redis.asyncio
from websockets.asyncio.client import connect

from tests.helpers import Brokercast, produce_to_kafka, receive, seconds, wait_for
from tools.brokers import KafkaBroker, RedisServer, free_port


async def test_readyz_names_unreachable_source(redis_server: RedisServer) -> None:
    settings = {
        "sources": {
            "events": {"type": "redis", "url": redis_server.url, "streams": ["s"]},
            "orders": {
                "type": "kafka",
                "bootstrap_servers": f"127.0.0.1:{free_port()}",
                "topics": ["orders"],
            },
        }
    }
    with Brokercast(settings) as bc:
        await bc.wait_listening()
        await wait_for(
            lambda: "source not connected" in bc.log(), seconds(20), "warning logged"
        )
        status, body = bc.http("/readyz")
        assert status == 503
        document = json.loads(body)
        assert document["ready"] is False
        assert document["not_ready"] == ["orders"]
        assert document["sources"]["events"]["state"] == "consuming"
        assert document["sources"]["orders"]["state"] == "connecting"
        assert bc.metric('brokercast_source_up{source="orders"}') == 0
        assert bc.metric('brokercast_source_up{source="events"}') == 1
        assert bc.log().count("source not connected") == 1


async def test_probes_and_tcp_checks_log_no_errors() -> None:
    with Brokercast() as bc:
        await bc.wait_listening()
        for _ in range(3):
            assert bc.http("/healthz") == (200, b"ok\n")
            with socket.create_connection(("127.0.0.1", bc.port)):
                pass
        assert bc.http("/readyz")[0] == 200
        assert bc.http("/metrics")[0] == 200
        assert await bc.terminate() == 0
        log = bc.log()
        assert " ERROR " not in log
        assert "Traceback" not in log


async def test_no_sources_logs_how_to_add_one() -> None:
    with Brokercast() as bc:
        await bc.wait_listening()
        await wait_for(lambda: "no sources configured" in bc.log(), 5, "warning")
        assert "BROKERCAST_SOURCES__ORDERS__TYPE=kafka" in bc.log()


async def test_metrics_endpoint_off_when_disabled() -> None:
    with Brokercast({"enable_metric": "FALSE"}) as bc:
        await bc.wait_listening()
        assert bc.http("/metrics")[0] == 404
        assert bc.http("/healthz")[0] == 200


async def test_kafka_group_resumes_after_committed_offset(
    kafka_broker: KafkaBroker, name: str
) -> None:
    """Records handed to clients are committed, so a restart does not replay them."""
    kafka_broker.create_topic(name)
    source = {
        "type": "kafka",
        "bootstrap_servers": kafka_broker.bootstrap_servers,
        "topics": [name],
        "group_id": f"{name}-group",
        "start": "earliest",
    }
    settings = {"sources": {"orders": source}}
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as client:
            await wait_for(
                lambda: bc.metric("brokercast_clients_connected") == 1, 5, "client"
            )
            await produce_to_kafka(
                kafka_broker.bootstrap_servers,
                name,
                [b"first-%d" % i for i in range(5)],
            )
            assert await receive(client, 5, seconds(30)) == [
                f"first-{i}" for i in range(5)
            ]
            assert await bc.terminate() == 0

    with Brokercast(settings) as bc:
        await bc.wait_listening()
        async with connect(bc.base_url) as client:
            await bc.wait_ready()
            await produce_to_kafka(
                kafka_broker.bootstrap_servers,
                name,
                [b"second-%d" % i for i in range(5)],
            )
            # A replay of the committed records would arrive before these.
            messages = await receive(client, 5, seconds(30))
        assert messages == [f"second-{i}" for i in range(5)]


async def test_redis_group_acks_delivered_entries(
    redis_server: RedisServer, name: str
) -> None:
    source = {
        "type": "redis",
        "url": redis_server.url,
        "streams": [name],
        "group": "bridge",
    }
    with Brokercast({"sources": {"events": source}}) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as client:
            await wait_for(
                lambda: bc.metric("brokercast_clients_connected") == 1, 5, "client"
            )
            writer = redis.asyncio.Redis.from_url(redis_server.url)
            for i in range(5):
                await writer.xadd(name, {"data": f"e{i}"})
            assert await receive(client, 5, seconds(10)) == [f"e{i}" for i in range(5)]

            async def nothing_pending() -> bool:
                pending = await writer.xpending(name, "bridge")
                return bool(pending["pending"] == 0)

            await wait_for(nothing_pending, seconds(10), "entries acked")
            groups = await writer.xinfo_groups(name)
            await writer.aclose()
        assert groups[0]["name"] == b"bridge"
        assert groups[0]["consumers"] == 1


async def test_redis_group_sigterm_exits_promptly(
    redis_server: RedisServer, name: str
) -> None:
    """Shutdown does not hang when a Redis command swallows the cancellation.

    The race is timing-dependent, so the test repeats the stop several times.
    """
    source = {"type": "redis", "url": redis_server.url, "streams": [name]}
    source["group"] = "bridge"
    writer = redis.asyncio.Redis.from_url(redis_server.url)
    for attempt in range(6):
        with Brokercast({"sources": {"events": source}}) as bc:
            await bc.wait_ready()
            async with connect(bc.base_url) as client:
                await wait_for(
                    lambda: bc.metric("brokercast_clients_connected") == 1, 5, "client"
                )
                for i in range(3):
                    await writer.xadd(name, {"data": f"{attempt}-{i}"})
                await receive(client, 3, seconds(10))
                code = await bc.terminate(timeout=seconds(5))
            assert code == 0, bc.log()
            assert client.close_code == 1001
    await writer.aclose()


async def test_second_sigterm_keeps_clean_exit() -> None:
    """A signal repeated during shutdown does not kill the process."""
    with Brokercast() as bc:
        await bc.wait_listening()
        assert bc.process is not None
        bc.process.send_signal(signal.SIGTERM)
        for _ in range(5):
            await asyncio.sleep(0.01)
            if bc.returncode() is None:
                bc.process.send_signal(signal.SIGTERM)
        assert await bc.terminate() == 0


async def test_sigterm_during_startup_exits_0() -> None:
    """SIGTERM while modules are still importing ends start-up with exit 0."""
    with Brokercast() as bc:
        assert bc.process is not None
        # Past interpreter start-up, which no Python code can cover.
        await asyncio.sleep(0.15)
        bc.process.send_signal(signal.SIGTERM)
        await wait_for(lambda: bc.returncode() is not None, seconds(10), "exit")
        assert bc.returncode() == 0


async def test_sigterm_while_kafka_down_exits_0(name: str) -> None:
    """Stopping while the broker is unreachable still ends cleanly."""
    with KafkaBroker() as broker:
        broker.create_topic(name)
        source = {
            "type": "kafka",
            "bootstrap_servers": broker.bootstrap_servers,
            "topics": [name],
            "group_id": f"{name}-group",
            "health_interval": 0.2,
            "request_timeout_ms": 1000,
        }
        with Brokercast({"sources": {"orders": source}}) as bc:
            await bc.wait_ready()
            broker.stop()
            await wait_for(
                lambda: bc.http("/readyz")[0] == 503, seconds(20), "outage noticed"
            )
            await asyncio.sleep(seconds(3))
            assert await bc.terminate() == 0, bc.log()
            assert "brokercast stopped" in bc.log()
            assert "Traceback" not in bc.log()
