"""Keepalive pings for every client from one task.

websockets can ping each connection from a task of its own. That costs a task,
a coroutine and a timer per client, about 1.5 KiB of an idle client's 11 KiB,
and its ping waits behind a full write buffer, so a client that stops reading
is never timed out. Here one task sends the pings, and a client whose pong is
late is closed with a bounded wait.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from service.hub import Client, close_in_background

logger = logging.getLogger("brokercast.keepalive")

#: Close code for a client without a pong in time: 1011, the code websockets'
#: own keepalive sends.
PING_TIMEOUT_CODE = 1011
PING_TIMEOUT_REASON = "keepalive ping timeout"


class Keepalive:
    """Pings each client every ``interval`` seconds and closes the silent ones.

    A client is pinged ``interval`` seconds after it connected and then
    ``interval`` seconds after each ping that got its pong, so pings spread over the
    interval as connections do. A client without a pong ``timeout`` seconds
    after a ping is closed with 1011; a ``timeout`` of 0 never closes one.

    Clients wait in two queues ordered by when they were last pinged: one for
    their next ping, one for the timeout check of the ping in flight. Each tick
    takes only the clients that are due from the front, so a tick costs nothing
    per idle client, and the short tick spreads the pings evenly.
    """

    def __init__(self, interval: float, timeout: float, close_timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.close_timeout = close_timeout
        self.tick = max(0.01, min(0.1, interval / 10))
        self._next_ping: collections.deque[Client] = collections.deque()
        # Each ping in flight as (time sent, client).
        self._in_flight: collections.deque[tuple[float, Client]] = collections.deque()
        self._closing: set[asyncio.Task[None]] = set()

    def add(self, client: Client) -> None:
        """Start pinging ``client``; it leaves by itself once it is closed."""
        self._next_ping.append(client)

    async def run(self) -> None:
        """Run a sweep every ``tick`` seconds until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self.tick)
                self.sweep(loop.time())
        finally:
            clients = [*self._next_ping, *(c for _, c in self._in_flight)]
            for client in clients:
                if client.ping is not None:
                    client.ping.cancel()

    def sweep(self, now: float) -> None:
        """Time out the unanswered pings, then send the pings that are due."""
        in_flight = self._in_flight
        while in_flight and now - in_flight[0][0] >= self.timeout:
            sent, client = in_flight.popleft()
            # The entry is stale when the pong came (client.ping is None) or the
            # client was pinged again since (a newer entry checks that ping).
            current = sent == client.ping_sent and client.ping is not None
            if current and _is_open(client):
                self._time_out(client)

        next_ping = self._next_ping
        while next_ping and now - next_ping[0].ping_sent >= self.interval:
            client = next_ping.popleft()
            if not _is_open(client):
                continue
            client.ping_sent = now
            client.ping = asyncio.create_task(self._ping(client))
            if self.timeout:
                in_flight.append((now, client))

    async def _ping(self, client: Client) -> None:
        """Send one ping, wait for its pong, then queue the client's next ping.

        A connection that closes meanwhile ends the wait without an error.
        """
        try:
            with contextlib.suppress(ConnectionClosed):
                pong = await client.connection.ping()
                if self.timeout:
                    await pong
                self._next_ping.append(client)
        finally:
            client.ping = None

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


def _is_open(client: Client) -> bool:
    """Return whether ``client`` still takes pings: open and not being closed."""
    return client.protocol.state is State.OPEN and not client.slow
