"""Centrifugo v6 configuration for the benchmark: its own consumer, no auth.

Centrifugo reads the stream (or topic) in publication data mode: the ``data``
field (or Kafka value) is published to the channel named in the
``centrifugo-channels`` field (or Kafka header), which the producer always sets.
Its Redis consumer uses a consumer group with acks, unlike the other contenders'
plain XREAD; that is the only Redis reader Centrifugo has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.contenders.registry import Brokers


def write_config(brokers: Brokers, port: int, source: str) -> Path:
    """Write a config file for a server on 127.0.0.1:``port``; return its path."""
    consumer: dict[str, Any] = {"name": "bench", "enabled": True, "type": source}
    if source == "kafka":
        consumer["kafka"] = {
            "brokers": [brokers.kafka],
            "topics": [brokers.stream],
            "consumer_group": "centrifugo-bench",
            "publication_data_mode": {"enabled": True},
        }
    else:
        consumer["type"] = "redis_stream"
        consumer["redis_stream"] = {
            "address": [f"127.0.0.1:{brokers.redis_port}"],
            "streams": [brokers.stream],
            "consumer_group": "centrifugo-bench",
            "payload_value": "data",
            "publication_data_mode": {"enabled": True},
        }
    config = {
        "http_server": {"address": "127.0.0.1", "port": port},
        "client": {"insecure": True, "allowed_origins": ["*"]},
        "channel": {"without_namespace": {"allow_subscribe_for_client": True}},
        "log": {"level": "error"},
        "consumers": [consumer],
    }
    path = brokers.workdir / f"centrifugo-{port}.json"
    path.write_text(json.dumps(config, indent=2))
    return path
