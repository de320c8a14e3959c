"""The Kafka source's offset commits when a group rebalance revokes partitions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from websockets.asyncio.client import connect

from service.events import Event
from service.metrics import Metrics
from service.sources import SourceContext
from service.sources.kafka import KafkaOptions, KafkaSource, _RebalanceListener
from tests.helpers import Brokercast, kafka_source, produce_to_kafka, receive, seconds
from tools.brokers import KafkaBroker


async def committed_offsets(broker: KafkaBroker, group: str) -> dict[int, int]:
    """Return the offset that ``group`` committed for each partition that has one."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: metadata.offset for tp, metadata in offsets.items()}


async def test_group_commits_on_revoke(kafka_broker: KafkaBroker, name: str) -> None:
    """A second member joining makes the first commit what it handed off."""
    kafka_broker.create_topic(name, partitions=2)
    group = f"{name}-group"
    # The periodic commit is an hour away, so only the revoke can commit.
    source = kafka_source(kafka_broker, name, group_id=group, commit_interval=3600)
    settings = {"sources": {"orders": source}}

    with Brokercast(settings) as first:
        await first.wait_ready()
        async with connect(first.base_url) as client:
            await first.wait_clients(1)
            for partition in (0, 1):
                values = [f"p{partition}-{i}".encode() for i in range(3)]
                await produce_to_kafka(
                    kafka_broker.bootstrap_servers, name, values, partition
                )
            messages = await receive(client, 6, seconds(30))
            assert sorted(messages) == [f"p{p}-{i}" for p in (0, 1) for i in range(3)]
            assert await committed_offsets(kafka_broker, group) == {}

            # The second member gets its partitions, and so becomes ready, only
            # after the first has run its revoke callback and rejoined.
            with Brokercast(settings) as second:
                await second.wait_ready(seconds(30))
                assert await committed_offsets(kafka_broker, group) == {0: 3, 1: 3}

        assert "offset commit" not in first.log()


class FailingConsumer:
    """A stand-in consumer whose ``commit`` raises ``error``, or hangs without one."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.commits: list[Mapping[TopicPartition, int]] = []

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.commits.append(offsets)
        if self.error is not None:
            raise self.error
        await asyncio.Event().wait()


def grouped_source() -> KafkaSource:
    options = KafkaOptions(
        bootstrap_servers=("127.0.0.1:9092",),
        topics=("orders",),
        group_id="bridge",
        request_timeout_ms=100,
    )
    context = SourceContext(
        instance_id="test",
        queue=asyncio.Queue(),
        metrics=Metrics("test"),
        max_event_bytes=1024,
    )
    return KafkaSource("orders", options, context)


@pytest.mark.parametrize(
    ("error", "logged_error"),
    [
        (
            KafkaConnectionError("coordinator unreachable"),
            "KafkaConnectionError: coordinator unreachable",
        ),
        (None, "TimeoutError"),
    ],
    ids=["commit-error", "commit-timeout"],
)
async def test_revoke_commit_failure_warns_once(
    caplog: pytest.LogCaptureFixture, error: Exception | None, logged_error: str
) -> None:
    """A failed or hung revoke commit logs one warning and drops the partition."""
    source = grouped_source()
    revoked = TopicPartition("orders", 0)
    still_assigned = TopicPartition("orders", 1)
    for tp, offset in ((revoked, 4), (still_assigned, 7)):
        event = Event("orders", tp.topic, f"{tp.partition}:{offset}", b"x")
        source._mark_handed_off(event)
    consumer = FailingConsumer(error)
    listener = _RebalanceListener(source, consumer)

    with caplog.at_level(logging.WARNING, logger="brokercast.source"):
        await asyncio.wait_for(listener.on_partitions_revoked({revoked}), seconds(5))

    assert consumer.commits == [{revoked: 5}]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "offset commit on partition revoke failed"
    ]
    assert warnings[0].partitions == ["orders:0"]
    assert warnings[0].error == logged_error
    assert source._uncommitted({revoked, still_assigned}) == {still_assigned: 8}
