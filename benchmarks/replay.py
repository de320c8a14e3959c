"""A fixed in-process replay of the hub, for instruction counts and profiles.

The hub broadcasts ``--events`` 1,000-byte events in batches of ``--batch`` to
``--clients`` clients. With ``--transport null`` the clients' transports drop
what they get, so the figure is the hub's own Python cost. With
``socketpair`` each client is a real uvloop transport on an AF_UNIX socket
pair whose far end is drained, so the write system calls count as well.

Instruction counts are repeatable on a noisy shared machine, unlike wall time::

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
        python -m benchmarks.replay --events 200 --clients 1000
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg0.out \\
        python -m benchmarks.replay --events 0 --clients 1000

(instructions of the first - of the second) / (events x clients) is the hub's
cost per delivery. Without valgrind the command prints CPU time per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from typing import Any

import uvloop
from websockets.protocol import State
from websockets.server import ServerProtocol

from benchmarks.common import make_event
from service.codecs import make_codec
from service.events import Event
from service.hub import Client, Hub, frame_header
from service.metrics import Metrics


class NullTransport:
    """A transport that drops every write and never buffers.

    Its methods are C builtins, like uvloop's, so that the replay's instruction
    count is the hub's own and not this stand-in's.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.write = self.chunks.append
        self.get_write_buffer_size = (0).bit_length
        self.is_closing = (0).__bool__


class FakeConnection:
    """Just what the hub reads from a websockets server connection."""

    def __init__(self, transport: Any, index: int) -> None:
        self.transport = transport
        # A real protocol object, so reading its state costs what it costs.
        self.protocol = ServerProtocol()
        self.protocol.state = State.OPEN
        self.remote_address = ("127.0.0.1", 10_000 + index)


class Drain(asyncio.Protocol):
    """The far end of a socket pair: reads and drops everything."""

    def data_received(self, data: bytes) -> None:
        pass


async def make_clients(count: int, kind: str) -> list[Client]:
    loop = asyncio.get_running_loop()
    clients = []
    for index in range(count):
        if kind == "null":
            transport: Any = NullTransport()
        else:
            near, far = socket.socketpair()
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=near)
            await loop.create_connection(Drain, sock=far)
        clients.append(Client(FakeConnection(transport, index), None))  # type: ignore[arg-type]
    return clients


def bare_broadcast(clients: list[Client], events: list[Event]) -> None:
    """Write the batch to every client with nothing else: the floor to compare."""
    data = b"".join(frame_header(len(e.payload), True) + e.payload for e in events)
    for client in clients:
        client.transport.write(data)


async def replay(args: argparse.Namespace) -> None:
    metrics = Metrics("replay")
    queue: asyncio.Queue[Event] = asyncio.Queue()
    hub = Hub(queue, make_codec("plain"), metrics, client_queue_bytes=1 << 30)
    clients = await make_clients(args.clients, args.transport)
    for client in clients:
        hub.add(client)
    events = [
        Event("bench", "bench", str(k), make_event(k, 0, args.size))
        for k in range(args.events)
    ]
    started = time.process_time()
    for lo in range(0, len(events), args.batch):
        if args.bare:
            bare_broadcast(clients, events[lo : lo + args.batch])
            hub.frames_delivered += len(clients) * len(events[lo : lo + args.batch])
        else:
            hub.broadcast(events[lo : lo + args.batch])
        if args.transport == "socketpair":
            await asyncio.sleep(0)
        else:
            for client in clients:
                client.connection.transport.chunks.clear()
    spent = time.process_time() - started
    deliveries = hub.frames_delivered
    if deliveries:
        print(
            f"{deliveries} deliveries, {spent * 1e6 / deliveries:.3f} µs CPU each "
            f"({args.transport} transport, batch {args.batch})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1, help="events per broadcast")
    parser.add_argument("--size", type=int, default=1000, help="event bytes")
    parser.add_argument(
        "--bare", action="store_true", help="a plain write loop instead of the hub"
    )
    parser.add_argument("--transport", choices=("null", "socketpair"), default="null")
    uvloop.run(replay(parser.parse_args()))


if __name__ == "__main__":
    main()
