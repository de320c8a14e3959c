"""The hub: takes events off the queue and writes them to subscribed clients.

Fan-out cost is what limits a broadcast server, so the hub does as little per
client as it can:

* it takes every event waiting in the queue at once (up to ``batch_size``),
  encodes each event once and builds each websocket frame once;
* it joins the frames of a batch into one buffer per subscription, so a client
  gets one ``transport.write`` per batch, with no coroutine and no task per
  client;
* a client's outbound queue is its transport's write buffer: when it already
  holds more than ``client_queue_bytes`` at the next write, the client is closed
  with :data:`SLOW_CLIENT_CODE` and the others are not delayed at all. One
  client's user-space buffer is therefore bounded by ``client_queue_bytes`` plus
  one batch (at most ``batch_bytes`` plus one event).

Server frames are not masked, so without compression the same frame bytes are
valid for every client. Clients that negotiated permessage-deflate (only when
``compression`` is on) get frames built by their own protocol object instead.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from service.codecs import Codec
from service.events import Event
from service.metrics import Metrics

logger = logging.getLogger("brokercast.hub")

#: Close code for a client that does not read fast enough: 1013 "try again later",
#: because reconnecting later is what the client should do.
SLOW_CLIENT_CODE = 1013
SLOW_CLIENT_REASON = "client too slow"

_OPCODE_TEXT = 0x1
_OPCODE_BINARY = 0x2
_FIN = 0x80


def frame_header(length: int, text: bool) -> bytes:
    """Return the header of an unmasked, final frame of ``length`` payload bytes."""
    first = _FIN | (_OPCODE_TEXT if text else _OPCODE_BINARY)
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


async def close_within(
    connection: ServerConnection, code: int, reason: str, timeout: float
) -> None:
    """Close ``connection``, aborting it when that takes more than ``timeout``.

    A close waits for the client to read everything queued before the close
    frame, which a client that stopped reading never does.
    """
    try:
        async with asyncio.timeout(timeout):
            await connection.close(code, reason)
    except TimeoutError:
        connection.transport.abort()


def close_in_background(
    closing: set[asyncio.Task[None]],
    connection: ServerConnection,
    code: int,
    reason: str,
    timeout: float,
) -> None:
    """Start :func:`close_within` in a task that stays in ``closing`` until done."""
    task = asyncio.create_task(close_within(connection, code, reason, timeout))
    closing.add(task)
    task.add_done_callback(closing.discard)


class Client:
    """One connected websocket client and what it subscribed to."""

    __slots__ = (
        "address",
        "channel",
        "compressed",
        "connection",
        "ping",
        "ping_sent",
        "ping_timed_out",
        "protocol",
        "slow",
        "transport",
    )

    def __init__(self, connection: ServerConnection, channel: str | None) -> None:
        self.connection = connection
        #: The channel this client wants, or ``None`` for every channel.
        self.channel = channel
        # Kept here so the per-client loop of a broadcast skips two lookups.
        self.protocol = connection.protocol
        self.transport: Any = connection.transport
        self.compressed = bool(connection.protocol.extensions)
        self.slow = False
        #: The keepalive's ping in flight, when it sent the last one, and
        #: whether it closed this client for missing a pong.
        self.ping: asyncio.Task[None] | None = None
        self.ping_sent = asyncio.get_running_loop().time()
        self.ping_timed_out = False
        address = connection.remote_address
        self.address = f"{address[0]}:{address[1]}" if address else "unknown"


class Hub:
    """Fans events out from the event queue to the connected clients."""

    def __init__(
        self,
        queue: asyncio.Queue[Event],
        codec: Codec,
        metrics: Metrics,
        client_queue_bytes: int,
        close_timeout: float = 5.0,
        batch_size: int = 256,
        batch_bytes: int = 262_144,
    ) -> None:
        self.queue = queue
        self.codec = codec
        self.metrics = metrics
        self.client_queue_bytes = client_queue_bytes
        #: Seconds a close may take before the connection is aborted.
        self.close_timeout = close_timeout
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.everything: set[Client] = set()
        self.by_channel: dict[str, set[Client]] = {}
        self.frames_delivered = 0
        self.events_broadcast = 0
        self._closing: set[asyncio.Task[None]] = set()
        self._dropped_no_clients = metrics.events_dropped.labels("no_clients")
        self._dropped_slow = metrics.events_dropped.labels("slow_client")

    @property
    def client_count(self) -> int:
        """Return the number of connected clients."""
        return len(self.everything) + sum(len(c) for c in self.by_channel.values())

    def add(self, client: Client) -> None:
        """Start sending events to ``client``."""
        if client.channel is None:
            self.everything.add(client)
        else:
            self.by_channel.setdefault(client.channel, set()).add(client)
        self.metrics.clients_connected.inc()

    def remove(self, client: Client) -> None:
        """Stop sending events to ``client``; safe to call twice."""
        if client.channel is None:
            group = self.everything
        else:
            group = self.by_channel.get(client.channel, set())
        if client not in group:
            return
        group.discard(client)
        if client.channel is not None and not group:
            del self.by_channel[client.channel]
        self.metrics.clients_connected.dec()

    async def run(self) -> None:
        """Broadcast events from the queue until cancelled."""
        while True:
            batch = [await self.queue.get()]
            self._take_waiting(batch)
            self.broadcast(batch)

    def drain(self) -> int:
        """Broadcast every event still queued, without waiting; return the count."""
        count = 0
        while not self.queue.empty():
            batch: list[Event] = []
            self._take_waiting(batch)
            self.broadcast(batch)
            count += len(batch)
        return count

    def _take_waiting(self, batch: list[Event]) -> None:
        queue = self.queue
        size = sum(len(event.payload) for event in batch)
        while len(batch) < self.batch_size and size < self.batch_bytes:
            if queue.empty():
                return
            event = queue.get_nowait()
            batch.append(event)
            size += len(event.payload)

    def broadcast(self, events: Sequence[Event]) -> None:
        """Write ``events``, in order, to every client subscribed to them."""
        everything = self.everything
        by_channel = self.by_channel
        frames_all: list[bytes] = []
        frames_by_channel: dict[str, list[bytes]] = {}
        payloads: list[tuple[bytes, str | None]] = []

        # Encode and frame each event once, for all its subscribers.
        for event in events:
            channel_clients = by_channel.get(event.channel)
            subscribers = len(everything) + (len(channel_clients or ()))
            if not subscribers:
                self._dropped_no_clients.inc()
                continue
            payload = self.codec.encode(event)
            frame = frame_header(len(payload), self.codec.text) + payload
            if everything:
                frames_all.append(frame)
            if channel_clients:
                frames_by_channel.setdefault(event.channel, []).append(frame)
            payloads.append((payload, event.channel))
        self.events_broadcast += len(payloads)

        # One write per client per batch.
        deliveries = 0
        if frames_all:
            deliveries += self._write_all(
                everything, b"".join(frames_all), len(frames_all), payloads
            )
        for channel, frames in frames_by_channel.items():
            channel_payloads = [p for p in payloads if p[1] == channel]
            deliveries += self._write_all(
                by_channel[channel], b"".join(frames), len(frames), channel_payloads
            )
        self.frames_delivered += deliveries
        self.metrics.frames_delivered.inc(deliveries)

        # Let sources commit or ack what has now been written.
        for event in events:
            if event.on_handoff is not None:
                event.on_handoff(event)

    def _write_all(
        self,
        clients: set[Client],
        data: bytes,
        frame_count: int,
        payloads: list[tuple[bytes, str | None]],
    ) -> int:
        """Write ``data`` to each client; return the number of frames written."""
        limit = self.client_queue_bytes
        open_state = State.OPEN
        written = 0
        for client in list(clients):
            if client.slow:
                # Closing as too slow: what it misses until it is gone is counted.
                self._dropped_slow.inc(frame_count)
                continue
            if client.protocol.state is not open_state:
                continue
            transport = client.transport
            if transport.get_write_buffer_size() > limit:
                self._disconnect_slow(client, frame_count)
                continue
            if client.compressed:
                self._write_compressed(client, payloads)
            else:
                transport.write(data)
            written += 1
        return written * frame_count

    def _write_compressed(
        self, client: Client, payloads: list[tuple[bytes, str | None]]
    ) -> None:
        protocol = client.connection.protocol
        for payload, _channel in payloads:
            if self.codec.text:
                protocol.send_text(payload)
            else:
                protocol.send_binary(payload)
        client.connection.send_data()

    def _disconnect_slow(self, client: Client, frame_count: int) -> None:
        client.slow = True
        self._dropped_slow.inc(frame_count)
        self.metrics.clients_disconnected.labels("slow_client").inc()
        logger.warning(
            "slow client disconnected",
            extra={
                "client": client.address,
                "channel": client.channel or "*",
                "queued_bytes": client.connection.transport.get_write_buffer_size(),
                "client_queue_bytes": self.client_queue_bytes,
            },
        )
        close_in_background(
            self._closing,
            client.connection,
            SLOW_CLIENT_CODE,
            SLOW_CLIENT_REASON,
            self.close_timeout,
        )

    async def close(self) -> None:
        """Wait for slow-client closes still in progress; safe to call twice."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
