"""The client fleet: many websocket clients that count what they receive.

picows on uvloop keeps the cost per received frame low, so the fleet does not
become the bottleneck it measures. Each client reads only the fixed prefix of
each frame (see :mod:`benchmarks.common`), checks that sequence numbers arrive
once and in order, and every ``--sample-every``-th client records
produce-to-receive latency.

Commands, one per line on stdin; replies are JSON lines on stdout:

* ``window LO HI`` resets the counters and counts events LO..HI from now on;
* ``collect SECONDS`` waits until every healthy client has event HI (or the
  time is up) and replies with the counts and an encoded HDR histogram;
* ``release SECONDS`` resumes reading on the stalled clients and replies with
  how many the server had closed;
* ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
import time
import zlib
from array import array
from typing import Any

import uvloop
from hdrh.histogram import HdrHistogram
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)

from benchmarks.common import (
    CHANNEL,
    PREFIX_BYTES,
    SEQ_SLICE,
    T0_SLICE,
    emit,
    raise_fd_limit,
)

#: Latency histogram range: 1 µs to 10 minutes, 3 significant digits.
HISTOGRAM_ARGS = (1, 600_000_000, 3)
DEFLATE_TAIL = b"\x00\x00\xff\xff"
SEQ_KEY = b'"seq":"'


class Window:
    """The sequence range being counted, shared by every client."""

    lo = 1 << 62
    hi = -1


class Client(WSListener):  # type: ignore[misc]
    """One connection: counts frames in the window and checks continuity."""

    def __init__(self, window: Window, sampled: bool, centrifugo: bool) -> None:
        self.window = window
        self.sampled = sampled
        self.centrifugo = centrifugo
        self.latencies: array[int] = array("q")
        self.last = -1
        self.count = 0
        self.gaps = 0
        self.duplicates = 0
        self.reordered = 0
        self.inflater: Any = None
        self.stalled = False
        self.churn = False
        self.closed_by_server = False
        self.close_code: int | None = None
        self.leaving = False
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        extensions = transport.response.headers.get("sec-websocket-extensions", "")
        if "permessage-deflate" in extensions:
            # Raw deflate with the largest window inflates any window the
            # server picked; context takeover just means one stream per client.
            self.inflater = zlib.decompressobj(-15)
        if self.centrifugo:
            transport.send(
                WSMsgType.TEXT,
                b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"'
                + CHANNEL.encode()
                + b'"}}',
            )

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.leaving:
            self.closed_by_server = True

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if self.inflater is not None and frame.rsv1:
                data = self.inflater.decompress(
                    frame.get_payload_as_bytes() + DEFLATE_TAIL
                )
                self.receive(data[:PREFIX_BYTES])
            elif self.centrifugo:
                data = frame.get_payload_as_bytes()
                # Centrifugo pings with an empty command and closes clients
                # that do not answer in kind (close code 3012).
                if data == b"{}" or data.startswith(b"{}\n") or b"\n{}" in data:
                    transport.send(WSMsgType.TEXT, b"{}")
                self.receive_pushes(data)
            else:
                self.receive(bytes(frame.get_payload_as_memoryview()[:PREFIX_BYTES]))
        elif kind is WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code())
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
        elif kind is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())

    def receive_pushes(self, data: bytes) -> None:
        # Centrifugo wraps the event in a push and may put several in one frame.
        start = data.find(SEQ_KEY)
        while start >= 0:
            self.receive(b"{" + data[start : start + PREFIX_BYTES - 1])
            start = data.find(SEQ_KEY, start + PREFIX_BYTES)

    def receive(self, head: bytes) -> None:
        seq = int(head[SEQ_SLICE])
        last = self.last
        if seq == last + 1 or last < 0:
            self.last = seq
        elif seq > last:
            self.gaps += seq - last - 1
            self.last = seq
        elif seq == last:
            self.duplicates += 1
            return
        else:
            self.reordered += 1
            return
        window = self.window
        if window.lo <= seq <= window.hi:
            self.count += 1
            if self.sampled:
                self.latencies.append(time.monotonic_ns() - int(head[T0_SLICE]))


async def small_socket(url: Any) -> socket.socket:
    """Connect a socket whose receive buffer is set small before connecting.

    Set before the handshake, the small buffer also caps the TCP window, so a
    stalled client cannot hide megabytes in kernel buffers and the server's
    own queue for it fills up as it would behind a slow network.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (url.host, url.port))
    return sock


class Fleet:
    """All clients of this process, with the connect, stall and churn logic."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.window = Window()
        self.clients: list[Client] = []
        self.churners: list[Client] = []
        self.connect_errors = 0
        self.churn_connects = 0
        self.error_sample = ""
        self.started = time.monotonic()

    async def connect(self, sampled: bool, small_buffer: bool = False) -> Client | None:
        args = self.args
        try:
            _, client = await ws_connect(
                lambda: Client(self.window, sampled, args.centrifugo),
                args.url,
                extra_headers=self._headers(),
                websocket_handshake_timeout=30,
                enable_auto_pong=False,
                socket_factory=small_socket if small_buffer else None,
            )
        except (TimeoutError, OSError, Exception) as error:
            self.connect_errors += 1
            self.error_sample = self.error_sample or repr(error)
            return None
        assert isinstance(client, Client)
        return client

    def _headers(self) -> dict[str, str]:
        if self.args.deflate:
            return {
                "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"
            }
        return {}

    async def connect_all(self) -> None:
        args = self.args
        interval = 1.0 / args.connect_rate
        pending: set[asyncio.Task[Client | None]] = set()
        for index in range(args.clients):
            sampled = index % args.sample_every == 0
            stalled = index < args.stalled
            pending.add(asyncio.create_task(self.connect(sampled, stalled)))
            await asyncio.sleep(interval)
        for client in await asyncio.gather(*pending):
            if client is not None:
                self.clients.append(client)
        for client in self.clients[: args.stalled]:
            self.stall(client)

    def stall(self, client: Client) -> None:
        """Stop reading from ``client``'s socket."""
        assert client.transport is not None
        client.transport.underlying_transport.pause_reading()
        client.stalled = True

    async def churn(self) -> None:
        """Replace one short-lived client every 1/rate seconds."""
        interval = 1.0 / self.args.churn_rate
        while True:
            await asyncio.sleep(interval)
            if len(self.churners) >= self.args.churn_pool:
                old = self.churners.pop(0)
                old.leaving = True
                if old.transport is not None:
                    old.transport.send_close(WSCloseCode.OK)
                    old.transport.disconnect()
            client = await self.connect(sampled=False)
            if client is not None:
                client.churn = True
                self.churners.append(client)
                self.churn_connects += 1

    def set_window(self, lo: int, hi: int) -> None:
        self.window.lo = lo
        self.window.hi = hi
        for client in self.clients + self.churners:
            client.count = client.gaps = client.duplicates = client.reordered = 0
            client.latencies = array("q")

    async def collect(self, timeout: float) -> dict[str, Any]:
        healthy = [c for c in self.clients if not c.stalled]
        hi = self.window.hi
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c.last >= hi or c.closed_by_server for c in healthy):
                break
            await asyncio.sleep(0.02)
        return self.report(healthy)

    async def release(self, timeout: float) -> dict[str, Any]:
        """Read the stalled clients again and report how the server treated them.

        A paused socket cannot see the server's close frame or EOF, so this is
        the only way to learn whether they were disconnected.
        """
        stalled = [c for c in self.clients if c.stalled]
        for client in stalled:
            assert client.transport is not None
            client.transport.underlying_transport.resume_reading()
        hi = self.window.hi
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c.closed_by_server or c.last >= hi for c in stalled):
                break
            await asyncio.sleep(0.05)
        return {
            "released": len(stalled),
            "stalled_closed": sum(c.closed_by_server for c in stalled),
            "stalled_close_codes": sorted(
                {c.close_code for c in stalled if c.close_code is not None}
            ),
            "stalled_caught_up": sum(
                c.last >= hi and not c.closed_by_server for c in stalled
            ),
        }

    def report(self, healthy: list[Client]) -> dict[str, Any]:
        histogram = HdrHistogram(*HISTOGRAM_ARGS)
        for client in self.clients + self.churners:
            for nanoseconds in client.latencies:
                histogram.record_value(max(1, nanoseconds // 1000))
        expected = max(0, self.window.hi - self.window.lo + 1)
        return {
            "clients": len(self.clients),
            "healthy": len(healthy),
            "expected": expected * len(healthy),
            "delivered": sum(c.count for c in healthy),
            "delivered_all": sum(c.count for c in self.clients + self.churners),
            "gaps": sum(c.gaps for c in healthy),
            "duplicates": sum(c.duplicates for c in self.clients),
            "reordered": sum(c.reordered for c in self.clients),
            "healthy_closed": sum(c.closed_by_server for c in healthy),
            "close_codes": sorted(
                {c.close_code for c in self.clients if c.close_code is not None}
            ),
            "deflate_clients": sum(c.inflater is not None for c in self.clients),
            "churn_connects": self.churn_connects,
            "connect_errors": self.connect_errors,
            "error_sample": self.error_sample,
            "histogram": histogram.encode().decode(),
        }


async def serve(args: argparse.Namespace) -> None:
    raise_fd_limit()
    random.seed(args.seed)
    fleet = Fleet(args)
    await fleet.connect_all()
    churn_task = asyncio.create_task(fleet.churn()) if args.churn_rate else None
    emit(
        {
            "ready": len(fleet.clients),
            "connect_errors": fleet.connect_errors,
            "error_sample": fleet.error_sample,
        }
    )
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while line := (await reader.readline()).decode().split():
        if line[0] == "window":
            fleet.set_window(int(line[1]), int(line[2]))
        elif line[0] == "collect":
            emit(await fleet.collect(float(line[1])))
        elif line[0] == "release":
            emit(await fleet.release(float(line[1])))
        elif line[0] == "quit":
            break
    if churn_task is not None:
        churn_task.cancel()
    for client in fleet.clients + fleet.churners:
        client.leaving = True
        if client.transport is not None:
            client.transport.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="ws:// URL on 127.0.0.1")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--connect-rate", type=float, default=500.0, help="per s")
    parser.add_argument("--sample-every", type=int, default=1)
    parser.add_argument("--stalled", type=int, default=0, help="clients not read")
    parser.add_argument("--churn-rate", type=float, default=0.0, help="per s")
    parser.add_argument("--churn-pool", type=int, default=50)
    parser.add_argument("--deflate", action="store_true", help="offer deflate")
    parser.add_argument("--centrifugo", action="store_true", help="speak its JSON")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not args.url.startswith(("ws://127.0.0.1:", "ws://localhost:")):
        parser.error("--url must be a loopback ws:// URL")
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
