"""The event: what every source adapter produces and the hub broadcasts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(slots=True)
class Event:
    """One record read from a broker.

    ``position`` is ``"<partition>:<offset>"`` for Kafka and the entry id for
    Redis. ``timestamp`` is in milliseconds since the epoch, or ``None`` when the
    broker gave none. ``on_handoff``, when set, is called by the hub once the event
    has been written to every subscribed client, so a source can commit or ack.
    """

    source: str
    channel: str
    position: str
    payload: bytes
    key: bytes | None = None
    timestamp: int | None = None
    headers: Mapping[str, bytes] = field(default_factory=dict)
    on_handoff: Callable[[Event], None] | None = None
