"""Prometheus metrics, kept in a registry of their own.

Every name starts with ``brokercast_``; counters end in ``_total``. Labels are
never per client, so the number of series stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
    disable_created_metrics,
    generate_latest,
)

from service import __version__

#: Reasons an event is not delivered to a client, used as the ``reason`` label.
DROP_REASONS = ("no_clients", "slow_client", "oversize", "missing_field")
#: Reasons a handshake is rejected, used as the ``reason`` label.
REJECT_REASONS = (
    "origin",
    "unauthorized",
    "forbidden_channel",
    "max_connections",
    "rate_limited",
)


class Metrics:
    """The metrics of one brokercast process."""

    def __init__(self, instance_id: str) -> None:
        # The *_created series double the output and no dashboard reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        Info("brokercast", "Instance id and version.", registry=registry).info(
            {"id": instance_id, "version": __version__}
        )
        self.events_consumed = Counter(
            "brokercast_events_consumed_total",
            "Events read from a source.",
            ["source"],
            registry=registry,
        )
        self.events_dropped = Counter(
            "brokercast_events_dropped_total",
            "Events not delivered to a client, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in DROP_REASONS:
            self.events_dropped.labels(reason)
        self.invalid_payloads = Counter(
            "brokercast_invalid_utf8_total",
            "Payloads, keys or header values whose invalid UTF-8 was replaced.",
            registry=registry,
        )
        self.frames_delivered = Counter(
            "brokercast_frames_delivered_total",
            "Frames written to clients (one per event per client).",
            registry=registry,
        )
        self.clients_connected = Gauge(
            "brokercast_clients_connected",
            "Websocket clients connected now.",
            registry=registry,
        )
        self.clients_disconnected = Counter(
            "brokercast_clients_disconnected_total",
            "Websocket clients that went away, by reason.",
            ["reason"],
            registry=registry,
        )
        self.connections_rejected = Counter(
            "brokercast_connections_rejected_total",
            "Websocket handshakes answered with an HTTP error, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in REJECT_REASONS:
            self.connections_rejected.labels(reason)
        self.source_up = Gauge(
            "brokercast_source_up",
            "1 while the source is connected and consuming, 0 otherwise.",
            ["source"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "brokercast_event_queue_depth",
            "Events waiting between the sources and the hub.",
            registry=registry,
        )

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as the event queue depth at every scrape."""
        self.queue_depth.set_function(lambda: float(depth()))

    def render(self) -> bytes:
        """Return the Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
