"""The naive loop: ``await send()`` to each client in turn, per event.

With ``--compression deflate --loop asyncio`` this is what a straightforward
websockets server does with the library's defaults (the payload decoded to str,
compression negotiated when the client offers it, pings every 20 s).
"""

from __future__ import annotations

import asyncio
import contextlib

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from benchmarks.common import raise_fd_limit
from benchmarks.contenders.source import parse_args, read_batches


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    raise_fd_limit()
    clients: set[ServerConnection] = set()

    async def handler(connection: ServerConnection) -> None:
        clients.add(connection)
        try:
            await connection.wait_closed()
        finally:
            clients.discard(connection)

    compression = "deflate" if args.compression == "deflate" else None
    async with serve(handler, "127.0.0.1", args.port, compression=compression):
        async for batch in read_batches(args.redis, args.stream):
            for payload in batch:
                message = payload.decode()
                for connection in list(clients):
                    with contextlib.suppress(ConnectionClosed):
                        await connection.send(message)


if __name__ == "__main__":
    args = parse_args(__doc__.splitlines()[0])
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
