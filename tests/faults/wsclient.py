"""A websocket client run as a child process by the fault-injection tests.

``python -m tests.faults.wsclient URL OUT [--rcvbuf BYTES] [--flood N]`` connects,
prints ``connected``, tallies numbered events until SIGTERM or until the server
closes the connection, then writes a JSON summary to the file ``OUT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.faults.support import Tally


async def run(args: argparse.Namespace) -> dict[str, object]:
    sock = None
    if args.rcvbuf:
        url = urlsplit(args.url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
        sock.connect((url.hostname, url.port))
    tally = Tally()
    async with connect(args.url, sock=sock, max_size=None) as client:
        print("connected", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        for _ in range(args.flood):
            await client.send("x" * 64)
        reader = asyncio.create_task(read(client, tally))
        await asyncio.wait(
            [reader, asyncio.create_task(stop.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        reader.cancel()
    return summary(tally, client)


async def read(client: ClientConnection, tally: Tally) -> None:
    try:
        async for message in client:
            tally.add(message)
    except ConnectionClosed:
        pass


def summary(tally: Tally, client: ClientConnection) -> dict[str, object]:
    sequences = tally.sequences
    first, last = (sequences[0], sequences[-1]) if sequences else (None, None)
    missing = tally.missing(range(first, last + 1)) if sequences else []
    return {
        "count": len(sequences),
        "first": first,
        "last": last,
        "duplicates": tally.duplicates,
        "missing": len(missing),
        "in_order": tally.in_order(),
        "p50": tally.percentile(0.5) if sequences else None,
        "p99": tally.percentile(0.99) if sequences else None,
        "max": max(tally.latencies) if sequences else None,
        "close_code": client.close_code,
        "close_reason": client.close_reason,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--rcvbuf", type=int, default=0)
    parser.add_argument("--flood", type=int, default=0)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
