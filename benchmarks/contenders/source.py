"""The Redis stream reader shared by the Python baselines."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

from redis.asyncio import Redis


async def read_batches(
    url: str, stream: str, count: int = 100
) -> AsyncIterator[list[bytes]]:
    """Yield the payloads of each XREAD reply, from entries added from now on."""
    client = Redis.from_url(url, socket_timeout=30)
    position = "$"
    try:
        while True:
            reply = await client.xread({stream: position}, count=count, block=1000)
            if not reply:
                continue
            entries = reply[0][1]
            position = entries[-1][0]
            yield [fields[b"data"] for _id, fields in entries]
    finally:
        await client.aclose()


def parse_args(description: str) -> argparse.Namespace:
    """Parse the options every baseline takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True, help="redis://127.0.0.1:PORT")
    parser.add_argument("--stream", required=True, help="stream key to read")
    parser.add_argument("--compression", choices=("deflate", "none"), default="none")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    return parser.parse_args()
