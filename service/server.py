"""The websocket server: subscriptions from the URL and the HTTP endpoints.

``ws://host:port/`` receives every event and ``ws://host:port/<channel>`` only the
events of that channel (percent-decoded, so a Redis key ``a/b`` is ``/a%2Fb`` or
``/a/b``). ``GET /healthz``, ``/readyz`` and ``/metrics`` answer plain HTTP on the
same port; those three names are therefore not usable as channels.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from service.hub import SLOW_CLIENT_CODE, Client, Hub
from service.metrics import Metrics
from service.settings import Settings

logger = logging.getLogger("brokercast.server")

#: Returns whether every source is consuming, and a JSON-able body saying so.
ReadinessCheck = Callable[[], tuple[bool, dict[str, object]]]

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def channel_of(path: str) -> str | None:
    """Return the channel a request path subscribes to, ``None`` for all."""
    name = unquote(urlsplit(path).path)[1:]
    return name or None


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


class WebsocketServer:
    """Owns the :mod:`websockets` server and connects clients to the hub."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        metrics: Metrics,
        readiness: ReadinessCheck,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.metrics = metrics
        self.readiness = readiness
        self.server: Server | None = None
        self.closed_at_shutdown = 0
        self._shutting_down = False

    async def start(self) -> None:
        """Bind the socket and start accepting connections."""
        settings = self.settings
        self.server = await serve(
            self._handle,
            settings.host,
            settings.port,
            process_request=self._process_request,
            compression="deflate" if settings.compression else None,
            max_size=settings.max_client_message_bytes,
            max_queue=4,
            ping_interval=settings.ping_interval or None,
            ping_timeout=settings.ping_timeout or None,
            close_timeout=max(0.5, min(5.0, settings.shutdown_timeout / 2)),
        )

    @property
    def addresses(self) -> list[str]:
        """Return ``host:port`` for each listening socket."""
        if self.server is None:
            return []
        names = []
        for sock in self.server.sockets:
            host, port = sock.getsockname()[:2]
            names.append(f"{host}:{port}")
        return names

    @property
    def port(self) -> int:
        """Return the bound port, useful when the setting was 0."""
        assert self.server is not None
        return int(next(iter(self.server.sockets)).getsockname()[1])

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections keep going."""
        if self.server is not None:
            self.server.server.close()

    async def close(self) -> None:
        """Close every client with 1001 and wait for the handlers; idempotent."""
        if self.server is None:
            return
        self._shutting_down = True
        self.closed_at_shutdown = self.hub.client_count
        self.server.close(close_connections=True)
        await self.server.wait_closed()

    def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            return _response(http.HTTPStatus.OK, b"ok\n", "text/plain")
        if path == "/readyz":
            ready, body = self.readiness()
            status = (
                http.HTTPStatus.OK if ready else http.HTTPStatus.SERVICE_UNAVAILABLE
            )
            return _response(status, orjson.dumps(body), "application/json")
        if path == "/metrics":
            if not self.settings.enable_metric:
                return _response(http.HTTPStatus.NOT_FOUND, b"", "text/plain")
            return _response(http.HTTPStatus.OK, self.metrics.render(), PROMETHEUS_TYPE)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        client = Client(connection, channel_of(request.path if request else "/"))
        self.hub.add(client)
        logger.debug(
            "client connected",
            extra={"client": client.address, "channel": client.channel or "*"},
        )
        try:
            # Clients send nothing useful. Their frames are read and discarded
            # so the connection keeps answering pings and close frames.
            async for _message in connection:
                pass
        except ConnectionClosed:
            pass
        finally:
            self.hub.remove(client)
            self._count_disconnect(client, connection)

    def _count_disconnect(self, client: Client, connection: ServerConnection) -> None:
        if client.slow:
            return  # the hub counted it when it closed the client
        code = connection.close_code
        if self._shutting_down:
            reason = "shutdown"
        elif code in (1000, 1001):
            reason = "client_closed"
        elif code == SLOW_CLIENT_CODE:
            reason = "slow_client"
        else:
            reason = "error"
        self.metrics.clients_disconnected.labels(reason).inc()
        logger.debug(
            "client disconnected",
            extra={"client": client.address, "code": code, "reason": reason},
        )
