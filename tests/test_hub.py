"""The hub against real websocket connections on a loopback port.

Each test runs a websockets server on port 0 in this process whose handler
registers clients with a :class:`Hub`, then drives the hub directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from service.codecs import make_codec
from service.events import Event
from service.hub import SLOW_CLIENT_CODE, SLOW_CLIENT_REASON, Client, Hub
from service.metrics import Metrics
from service.server import channel_of
from tests.helpers import receive, seconds, wait_for


class CountingTransport:
    """Wraps a server-side transport and counts ``write`` calls."""

    def __init__(self, transport: Any) -> None:
        self.inner = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.inner.write(data)

    def get_write_buffer_size(self) -> int:
        return int(self.inner.get_write_buffer_size())


class HubServer:
    """A hub and the server whose connections it writes to."""

    def __init__(self, hub: Hub, port: int) -> None:
        self.hub = hub
        self.port = port
        self.clients: list[Client] = []

    def url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def metric(self, name: str, **labels: str) -> float:
        value = self.hub.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def connect(self, path: str = "/") -> ClientConnection:
        """Open a client and wait until the hub has registered it."""
        count = len(self.clients)
        client = await connect(self.url(path), compression=None)
        await wait_for(
            lambda: len(self.clients) > count, seconds(5), "client not registered"
        )
        return client


@contextlib.asynccontextmanager
async def hub_server(**options: Any) -> AsyncIterator[HubServer]:
    """Run a hub behind a websockets server on a free loopback port."""
    queue: asyncio.Queue[Event] = asyncio.Queue()
    metrics = Metrics("test")
    options.setdefault("client_queue_bytes", 1 << 20)
    hub = Hub(queue, make_codec("plain"), metrics, **options)
    state: HubServer | None = None

    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None and state is not None
        client = Client(connection, channel_of(connection.request.path))
        hub.add(client)
        state.clients.append(client)
        try:
            await connection.wait_closed()
        finally:
            hub.remove(client)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        state = HubServer(hub, port)
        yield state
        await hub.close()


def event(index: int, channel: str = "orders", size: int = 0) -> Event:
    """Return an event whose payload is its index, padded to ``size`` bytes."""
    payload = str(index).encode().ljust(size, b" ")
    return Event("test", channel, str(index), payload)


async def test_hub_keeps_order_across_batches() -> None:
    async with hub_server(batch_size=7) as server:
        client = await server.connect()
        for index in range(100):
            server.hub.queue.put_nowait(event(index))

        assert server.hub.drain() == 100

        messages = await receive(client, 100, seconds(5))
        assert messages == [str(i) for i in range(100)]
        await client.close()


async def test_hub_writes_one_buffer_per_client_per_batch() -> None:
    async with hub_server(batch_size=256) as server:
        clients = [await server.connect() for _ in range(3)]
        counters = []
        for registered in server.clients:
            counter = CountingTransport(registered.transport)
            registered.transport = counter
            counters.append(counter)
        for index in range(600):
            server.hub.queue.put_nowait(event(index))

        server.hub.drain()

        # 600 events in batches of at most 256: three writes per client.
        assert [c.writes for c in counters] == [3, 3, 3]
        for client in clients:
            messages = await receive(client, 600, seconds(5))
            assert messages == [str(i) for i in range(600)]
        assert server.metric("brokercast_frames_delivered_total") == 1800
        for client in clients:
            await client.close()


async def test_hub_batch_stops_at_batch_bytes() -> None:
    async with hub_server(batch_size=256, batch_bytes=10_000) as server:
        client = await server.connect()
        counter = CountingTransport(server.clients[0].transport)
        server.clients[0].transport = counter
        for index in range(20):
            server.hub.queue.put_nowait(event(index, size=1_000))

        server.hub.drain()

        # A batch closes once it contains 10,000 bytes, which is 10 events.
        assert counter.writes == 2
        messages = await receive(client, 20, seconds(5))
        assert [m.strip() for m in messages] == [str(i) for i in range(20)]
        await client.close()


async def test_hub_routes_channels() -> None:
    async with hub_server() as server:
        everything = await server.connect("/")
        orders = await server.connect("/orders")
        server.hub.broadcast(
            [event(1, "orders"), event(2, "prices"), event(3, "orders")]
        )

        assert await receive(everything, 3, seconds(5)) == ["1", "2", "3"]
        assert await receive(orders, 2, seconds(5)) == ["1", "3"]
        assert server.metric("brokercast_frames_delivered_total") == 5
        await everything.close()
        await orders.close()


async def test_hub_drops_events_without_clients() -> None:
    async with hub_server() as server:
        handed_off: list[str] = []
        events = [event(i) for i in range(5)]
        for item in events:
            item.on_handoff = lambda e: handed_off.append(e.position)

        server.hub.broadcast(events)

        dropped = server.metric("brokercast_events_dropped_total", reason="no_clients")
        assert dropped == 5
        assert server.metric("brokercast_frames_delivered_total") == 0
        assert server.hub.events_broadcast == 0
        # Dropped events are still handed off, so sources ack and commit them.
        assert handed_off == ["0", "1", "2", "3", "4"]


async def test_hub_drops_events_of_unsubscribed_channel() -> None:
    async with hub_server() as server:
        client = await server.connect("/orders")

        server.hub.broadcast([event(1, "prices"), event(2, "orders")])

        assert await receive(client, 1, seconds(5)) == ["2"]
        dropped = server.metric("brokercast_events_dropped_total", reason="no_clients")
        assert dropped == 1
        await client.close()


async def test_hub_hands_off_after_writing() -> None:
    async with hub_server() as server:
        client = await server.connect()
        written_before_handoff: list[int] = []
        events = [event(i) for i in range(3)]
        for item in events:
            item.on_handoff = lambda e: written_before_handoff.append(
                server.hub.frames_delivered
            )

        server.hub.broadcast(events)

        # Every event is handed off once, after the whole batch was written.
        assert written_before_handoff == [3, 3, 3]
        await receive(client, 3, seconds(5))
        await client.close()


async def test_hub_closes_slow_client_and_spares_others() -> None:
    async with hub_server(client_queue_bytes=65_536) as server:
        healthy = await server.connect()
        slow = await server.connect()
        # Shrink the kernel buffers of the slow pair and stop reading, so the
        # server's own write buffer fills up within a few events.
        slow_server_side = server.clients[1].transport
        sock = slow_server_side.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        slow_transport: Any = slow.transport
        slow_socket = slow_transport.get_extra_info("socket")
        slow_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow_transport.pause_reading()

        received: list[str] = []
        total = 0
        while not server.clients[1].slow:
            assert total < 2_000, "slow client never disconnected"
            server.hub.broadcast([event(total, size=16_384)])
            total += 1
            received += [m.strip() for m in await receive(healthy, 1, seconds(5))]

        assert received == [str(i) for i in range(total)]
        slow_transport.resume_reading()
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(seconds(10)):
                while True:
                    await slow.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == SLOW_CLIENT_CODE
        assert closed.value.rcvd.reason == SLOW_CLIENT_REASON
        disconnected = server.metric(
            "brokercast_clients_disconnected_total", reason="slow_client"
        )
        assert disconnected == 1
        # Events after the disconnect still reach the healthy client.
        server.hub.broadcast([event(total)])
        assert await receive(healthy, 1, seconds(5)) == [str(total)]
        await healthy.close()
