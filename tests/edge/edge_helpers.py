"""Helpers for the edge tests: an in-process server and raw handshakes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from service.app import App
from service.auth import AuthSettings, sign_hs256
from service.events import Event
from service.settings import Settings

JWT_SECRET = "a-test-secret-of-at-least-32-chars"
SHARED_TOKEN = "a-shared-token-of-at-least-32-chars!"
ISSUER = "https://issuer.test"
AUDIENCE = "brokercast-tests"

JWT_AUTH = AuthSettings(
    mode="jwt", secret=JWT_SECRET, issuer=ISSUER, audience=AUDIENCE, leeway=0.0
)
TOKEN_AUTH = AuthSettings(mode="token", secret=SHARED_TOKEN)


def make_jwt(expires_in: float = 300.0, **claims: Any) -> str:
    """Return a JWT for the test issuer and audience, signed with the test key."""
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": time.time() + expires_in,
        **claims,
    }
    return sign_hs256(body, JWT_SECRET.encode())


class EdgeServer:
    """A running :class:`App` without sources, on a free loopback port."""

    def __init__(self, app: App) -> None:
        self.app = app

    @property
    def port(self) -> int:
        return self.app.server.port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rejected(self, reason: str) -> float:
        """Return ``brokercast_connections_rejected_total{reason=...}``."""
        value = self.app.metrics.registry.get_sample_value(
            "brokercast_connections_rejected_total", {"reason": reason}
        )
        assert value is not None
        return value

    def disconnected(self, reason: str) -> float:
        """Return ``brokercast_clients_disconnected_total{reason=...}``."""
        value = self.app.metrics.registry.get_sample_value(
            "brokercast_clients_disconnected_total", {"reason": reason}
        )
        return value or 0.0

    async def publish(self, channel: str, payload: bytes) -> None:
        """Put one event on the queue, as a source would."""
        await self.app.queue.put(Event("test", channel, "0-1", payload))


@asynccontextmanager
async def running_edge(**overrides: Any) -> AsyncIterator[EdgeServer]:
    """Run brokercast in this event loop with ``overrides`` applied to Settings."""
    base = Settings(host="127.0.0.1", port=0, id="brokercast-test", shutdown_timeout=5)
    app = App(dataclasses.replace(base, **overrides))
    await app.start()
    try:
        yield EdgeServer(app)
    finally:
        await app.stop()


async def raw_request(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` bytes and return everything the server sends back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()
