"""brokercast: broadcast Kafka topics and Redis streams to websocket clients."""

__version__ = "0.1.0"
