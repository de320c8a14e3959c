"""websockets' documented best practice: ``broadcast()`` per event, on uvloop.

Compression is off and the payload bytes go out as Text frames unchanged.
"""

from __future__ import annotations

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

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

    async with serve(handler, "127.0.0.1", args.port, compression=None):
        async for batch in read_batches(args.redis, args.stream):
            for payload in batch:
                broadcast(clients, payload, text=True)


if __name__ == "__main__":
    uvloop.run(main())
