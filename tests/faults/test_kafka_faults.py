"""Kafka faults: broker outages, bad records, restarts of brokercast itself."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.faults.support import KafkaProducer, cpu_seconds, log_lines, report
from tests.helpers import Brokercast, kafka_source, receive, seconds, wait_for
from tools.brokers import KafkaBroker

#: Milliseconds one Kafka request may take; the SIGSTOP case outlasts it.
REQUEST_TIMEOUT_MS = 2000


def readyz(bc: Brokercast) -> int:
    return bc.http("/readyz")[0]


async def expect_next(
    client: ClientConnection, producer: KafkaProducer, timeout: float
) -> float:
    """Send one record and return the seconds until the client received it."""
    began = time.monotonic()
    deadline = began + timeout
    (sequence,) = await producer.send()
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"event {sequence} not received in {timeout} s"
        message = await asyncio.wait_for(client.recv(), remaining)
        if int(message[:9]) == sequence:
            return time.monotonic() - began


async def outage(
    bc: Brokercast,
    client: ClientConnection,
    broker: KafkaBroker,
    topic: str,
    fault: Callable[[], None],
    recover: Callable[[], None],
    hold: float,
) -> dict[str, float]:
    """Inject ``fault`` for ``hold`` seconds, then ``recover``, and measure."""
    assert bc.process is not None
    pid = bc.process.pid
    lines_before = len(log_lines(bc.log()))
    cpu_before = cpu_seconds(pid)
    began = time.monotonic()
    fault()
    await wait_for(lambda: readyz(bc) == 503, seconds(20), "/readyz turns 503")
    unready_after = time.monotonic() - began
    await wait_for(lambda: time.monotonic() - began >= hold, hold + 1, "hold")
    cpu = cpu_seconds(pid) - cpu_before
    held = time.monotonic() - began
    lines = len(log_lines(bc.log())) - lines_before
    recover()
    broker_back = time.monotonic()

    producer = KafkaProducer(broker, topic)
    await producer.start()
    try:
        producer.next = 10_000 + int(broker_back) % 10_000
        delivered = await expect_next(client, producer, seconds(30))
    finally:
        await producer.close()
    await wait_for(lambda: readyz(bc) == 200, seconds(30), "/readyz back to 200")
    return {
        "unready_after_s": round(unready_after, 1),
        "outage_s": round(held, 1),
        "cpu_share": round(cpu / held, 4),
        "log_lines": lines,
        "broker_restart_s": round(broker_back - began - held, 1),
        "event_delivered_after_s": round(delivered, 1),
        "ready_after_s": round(time.monotonic() - broker_back, 1),
    }


@pytest.mark.slow
async def test_kafka_outages_recover_quietly(
    private_kafka: KafkaBroker, name: str
) -> None:
    """Stop for 60 s, SIGKILL, SIGSTOP: each time brokercast recovers by itself."""
    broker = private_kafka
    broker.create_topic(name)
    source = kafka_source(
        broker, name, health_interval=0.5, request_timeout_ms=REQUEST_TIMEOUT_MS
    )
    with Brokercast({"sources": {"orders": source}}) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as client:
            await wait_for(
                lambda: bc.metric("brokercast_clients_connected") == 1,
                seconds(5),
                "client registered",
            )
            stopped = await outage(
                bc, client, broker, name, broker.stop, broker.start, 60
            )
            killed = await outage(
                bc, client, broker, name, broker.kill, broker.start, 5
            )
            paused = await outage(
                bc,
                client,
                broker,
                name,
                broker.pause,
                broker.resume,
                REQUEST_TIMEOUT_MS / 1000 * 3,
            )
        code = await bc.terminate()
    report("kafka-stop-60s", **stopped)
    report("kafka-sigkill", **killed)
    report("kafka-sigstop", **paused)
    assert code == 0
    for result in (stopped, killed, paused):
        assert result["cpu_share"] < 0.05, result
        assert result["log_lines"] <= 3, result


@pytest.mark.parametrize("codec", ["plain", "json"])
async def test_kafka_invalid_utf8_record(
    kafka_broker: KafkaBroker, name: str, codec: str
) -> None:
    """Bytes 66 6f ff fe 6f become U+FFFD; the connection stays; it is counted."""
    kafka_broker.create_topic(name)
    settings = {"codec": codec, "sources": {"orders": kafka_source(kafka_broker, name)}}
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as client:
            await wait_for(
                lambda: bc.metric("brokercast_clients_connected") == 1,
                seconds(5),
                "client registered",
            )
            producer = KafkaProducer(kafka_broker, name)
            await producer.start()
            await producer.send_raw(bytes.fromhex("666fff fe6f"))
            await producer.send_raw(b"ok")
            await producer.close()
            messages = await receive(client, 2, seconds(20))
        assert bc.metric("brokercast_invalid_utf8_total") == 1
    if codec == "plain":
        assert messages == ["fo\ufffd\ufffdo", "ok"]
    else:
        payloads = [json.loads(m)["payload"] for m in messages]
        assert payloads == ["fo\ufffd\ufffdo", "ok"]


async def test_kafka_oversize_record_dropped(
    kafka_broker: KafkaBroker, name: str
) -> None:
    """A record over max_event_bytes is dropped and counted; the next arrives."""
    kafka_broker.create_topic(name)
    settings = {
        "max_event_bytes": 1000,
        "sources": {"orders": kafka_source(kafka_broker, name)},
    }
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as client:
            await wait_for(
                lambda: bc.metric("brokercast_clients_connected") == 1,
                seconds(5),
                "client registered",
            )
            producer = KafkaProducer(kafka_broker, name)
            await producer.start()
            await producer.send_raw(b"a" * 1001)
            await producer.send_raw(b"b" * 1000)
            await producer.close()
            assert await receive(client, 1, seconds(20)) == ["b" * 1000]
        assert bc.metric('brokercast_events_dropped_total{reason="oversize"}') == 1
