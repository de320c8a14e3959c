"""Session fixtures: one real Redis server and one real Kafka broker on loopback.

Tests that need a broker fail, never skip, when it cannot start: a missing
broker is a broken test machine, not a reason to pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tools.brokers import KafkaBroker, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server without persistence, shared by the session."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A single-node Apache Kafka broker in KRaft mode, shared by the session."""
    with KafkaBroker(num_partitions=1) as broker:
        yield broker


@pytest.fixture
def name() -> str:
    """A fresh topic, stream or group name, so tests never share data."""
    return f"t-{uuid.uuid4().hex[:10]}"
