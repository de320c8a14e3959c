"""Fixtures of the fault-injection tests.

Tests that stop, kill or pause a broker get one of their own, so the session
brokers the other tests share are never disturbed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.brokers import KafkaBroker, RedisServer


@pytest.fixture
def private_kafka() -> Iterator[KafkaBroker]:
    """A Kafka broker for one test, which may stop, kill or pause it."""
    with KafkaBroker(num_partitions=1) as broker:
        yield broker


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis server for one test, which may restart, kill or pause it."""
    with RedisServer() as server:
        yield server
