"""A bare fan-out, the ceiling for Python on this machine.

picows does the handshake. After that the server only reads the stream, builds
one frame per event, joins the frames of each XREAD reply and writes that buffer
to every client's transport. It has no backpressure, slow-client policy or
metrics.
"""

from __future__ import annotations

import struct

import uvloop
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_create_server,
)

from benchmarks.common import raise_fd_limit
from benchmarks.contenders.source import parse_args, read_batches

TEXT_FIN = 0x81


def frame(payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", TEXT_FIN, size) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", TEXT_FIN, 126, size) + payload
    return struct.pack("!BBQ", TEXT_FIN, 127, size) + payload


class Listener(WSListener):  # type: ignore[misc]
    def __init__(self, clients: set[object]) -> None:
        self.clients = clients
        self.underlying: object = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.underlying = transport.underlying_transport
        self.clients.add(self.underlying)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.clients.discard(self.underlying)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    raise_fd_limit()
    clients: set[object] = set()
    server = await ws_create_server(
        lambda _request: Listener(clients), "127.0.0.1", args.port
    )
    async with server:
        async for batch in read_batches(args.redis, args.stream):
            data = b"".join([frame(payload) for payload in batch])
            for transport in list(clients):
                transport.write(data)  # type: ignore[attr-defined]


if __name__ == "__main__":
    uvloop.run(main())
