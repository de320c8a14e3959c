"""The keepalive's schedule, driven with made-up clocks and stand-in clients."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.protocol import State

from service.keepalive import PING_TIMEOUT_CODE, Keepalive


class FakeConnection:
    """Records pings and closes. A test resolves the pongs it expects to arrive."""

    def __init__(self) -> None:
        self.pongs: list[asyncio.Future[float]] = []
        self.closed_with: int | None = None

    async def ping(self) -> asyncio.Future[float]:
        pong = asyncio.get_running_loop().create_future()
        self.pongs.append(pong)
        return pong

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = code

    def answer(self) -> None:
        self.pongs[-1].set_result(0.001)


class FakeClient:
    def __init__(self) -> None:
        self.connection = FakeConnection()
        self.protocol = type("Protocol", (), {"state": State.OPEN})()
        self.slow = False
        self.ping: Any = None
        self.ping_sent = 0.0
        self.ping_timed_out = False
        self.address = "127.0.0.1:1"


async def settle() -> None:
    """Let the ping tasks run up to their next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_keepalive_pings_answering_client() -> None:
    keepalive = Keepalive(interval=10, timeout=5, close_timeout=1)
    client = FakeClient()
    keepalive.add(client)  # type: ignore[arg-type]
    for now in (9.9, 10.0, 14.0, 20.0):
        keepalive.sweep(now)
        await settle()
        if client.connection.pongs and not client.connection.pongs[-1].done():
            client.connection.answer()
            await settle()
    assert len(client.connection.pongs) == 2
    assert client.ping_sent == 20.0
    assert not client.ping_timed_out


async def test_keepalive_times_out_silent_client() -> None:
    keepalive = Keepalive(interval=10, timeout=5, close_timeout=1)
    client = FakeClient()
    keepalive.add(client)  # type: ignore[arg-type]
    keepalive.sweep(10.0)
    await settle()
    keepalive.sweep(14.9)
    await settle()
    assert not client.ping_timed_out
    keepalive.sweep(15.0)
    await settle()
    assert client.ping_timed_out
    assert client.connection.closed_with == PING_TIMEOUT_CODE


async def test_keepalive_timeout_longer_than_interval() -> None:
    """No second ping while one is in flight; the timeout still counts."""
    keepalive = Keepalive(interval=1, timeout=5, close_timeout=1)
    client = FakeClient()
    keepalive.add(client)  # type: ignore[arg-type]
    for tick in range(10, 60):
        keepalive.sweep(tick / 10)
        await settle()
    assert len(client.connection.pongs) == 1
    assert not client.ping_timed_out
    keepalive.sweep(6.0)
    await settle()
    assert client.ping_timed_out


async def test_keepalive_stale_entry_blocks_nothing() -> None:
    """The old timeout entry of a pong that arrived does not delay a silent client."""
    keepalive = Keepalive(interval=1, timeout=5, close_timeout=1)
    answering, silent = FakeClient(), FakeClient()
    silent.ping_sent = 0.5
    keepalive.add(answering)  # type: ignore[arg-type]
    keepalive.add(silent)  # type: ignore[arg-type]
    now = 1.0
    while now < 6.6:
        keepalive.sweep(now)
        await settle()
        pongs = answering.connection.pongs
        if pongs and not pongs[-1].done():
            answering.connection.answer()
            await settle()
        now = round(now + 0.1, 1)
    assert len(answering.connection.pongs) >= 5
    assert not answering.ping_timed_out
    assert silent.ping_timed_out


async def test_keepalive_skips_closed_client() -> None:
    keepalive = Keepalive(interval=1, timeout=1, close_timeout=1)
    client = FakeClient()
    client.protocol.state = State.CLOSING
    keepalive.add(client)  # type: ignore[arg-type]
    keepalive.sweep(5.0)
    await settle()
    assert client.connection.pongs == []
