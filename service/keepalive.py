"""Keepalive pings for every client from one task.

websockets can ping each connection from a task of its own. That costs a task,
a coroutine and a timer per client, about 1.5 KiB of an idle client's 11 KiB,
and its ping waits behind a full write buffer, so a client that stops reading
is never timed out. Here one sweep over the hub's clients sends the pings, and
a client whose pong is late is closed with a bounded wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from service.hub import Client, close_in_background

logger = logging.getLogger("brokercast.keepalive")

#: Close code for a client without a pong in time: 1011, the code websockets'
#: own keepalive sends.
PING_TIMEOUT_CODE = 1011
PING_TIMEOUT_REASON = "keepalive ping timeout"


class Keepalive:
    """Pings each client every ``interval`` seconds and closes the silent ones.

    A client is pinged once ``interval`` has passed since its previous ping (or
    since it connected), so pings spread over the interval as connections do.
    One without a pong ``timeout`` seconds after the ping is closed with 1011.
    Both checks run every eighth of the shorter of the two periods, which bounds
    how late either can be.
    """

    def __init__(
        self,
        clients: Callable[[], Iterable[Client]],
        interval: float,
        timeout: float,
        close_timeout: float,
    ) -> None:
        self.clients = clients
        self.interval = interval
        self.timeout = timeout
        self.close_timeout = close_timeout
        self.tick = max(0.05, min(interval, timeout or interval) / 8)
        self._closing: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Run a sweep every ``tick`` seconds until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self.tick)
                self.sweep(loop.time())
        finally:
            for client in list(self.clients()):
                if client.ping is not None:
                    client.ping.cancel()

    def sweep(self, now: float) -> None:
        """Send the pings that are due and time out the unanswered ones."""
        for client in list(self.clients()):
            if client.slow or client.ping_timed_out:
                continue
            ping = client.ping
            if ping is not None:
                if not ping.done():
                    if self.timeout and now - client.ping_sent >= self.timeout:
                        self._time_out(client)
                    continue
                client.ping = None  # a finished task keeps its memory until released
            if now - client.ping_sent >= self.interval:
                client.ping_sent = now
                client.ping = asyncio.create_task(_ping(client.connection))

    def _time_out(self, client: Client) -> None:
        client.ping_timed_out = True
        if client.ping is not None:
            client.ping.cancel()
        logger.debug("client missed a keepalive pong", extra={"client": client.address})
        close_in_background(
            self._closing,
            client.connection,
            PING_TIMEOUT_CODE,
            PING_TIMEOUT_REASON,
            self.close_timeout,
        )


async def _ping(connection: ServerConnection) -> None:
    """Send one ping and wait for its pong.

    A connection that closes meanwhile ends the wait without an error.
    """
    with contextlib.suppress(ConnectionClosed):
        pong = await connection.ping()
        await pong
