"""The websocket server: subscriptions from the URL and the HTTP endpoints.

``ws://host:port/`` receives every event and ``ws://host:port/<channel>`` only the
events of that channel (percent-decoded, so a Redis key ``a/b`` is ``/a%2Fb`` or
``/a/b``). ``GET /healthz``, ``/readyz`` and ``/metrics`` answer plain HTTP on the
same port; those three names are therefore not usable as channels.

A plain ``GET`` without an ``Upgrade`` header on ``/``, ``/client.js`` or
``/static/...`` returns the demo page and its scripts when ``demo_page`` is on;
websocket handshakes on those paths still subscribe as usual.

Before a handshake is accepted it passes, in this order: the per-address rate
limit (429), the origin check (403), the token check (401), the channels the
token allows (403) and ``max_connections`` (503). Each rejection is counted in
``brokercast_connections_rejected_total``.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from importlib import resources
from urllib.parse import unquote

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from service.auth import (
    OPEN_GRANT,
    SUBPROTOCOL,
    Authenticator,
    AuthError,
    Grant,
    token_from_request,
)
from service.edge import AddressRateLimiter, OriginPolicy, RepeatLimiter
from service.hub import SLOW_CLIENT_CODE, Client, Hub, close_in_background
from service.keepalive import Keepalive
from service.metrics import Metrics
from service.settings import Settings, make_tls_context

logger = logging.getLogger("brokercast.server")

#: Returns whether every source is consuming, and a JSON-able body saying so.
ReadinessCheck = Callable[[], tuple[bool, dict[str, object]]]

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Close code for a client whose token expired: 1008 "policy violation".
TOKEN_EXPIRED_CODE = 1008
TOKEN_EXPIRED_REASON = "token expired"

#: Files of the demo page: request path, file under ``service/static``, type.
STATIC_FILES = (
    ("/", "index.html", "text/html; charset=utf-8"),
    ("/client.js", "client.js", "text/javascript; charset=utf-8"),
    ("/static/demo.js", "demo.js", "text/javascript; charset=utf-8"),
    ("/static/demo.css", "demo.css", "text/css; charset=utf-8"),
)

#: Headers of the demo page: scripts and styles only from this server, no
#: framing by other sites, and no referrer leaking the page's URL.
PAGE_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


def channel_of(path: str) -> str | None:
    """Return the channel a request path subscribes to, ``None`` for all.

    The query string is ignored. The path is taken as it is rather than parsed
    as a URL, so ``//a`` is the channel ``/a`` and odd targets cannot fail.
    """
    name = unquote(path.partition("?")[0])[1:]
    return name or None


def _response(
    status: http.HTTPStatus,
    body: bytes,
    content_type: str,
    extra: Sequence[tuple[str, str]] = (),
) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
            *extra,
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def _is_upgrade(request: Request) -> bool:
    values = ",".join(request.headers.get_all("Upgrade")).lower()
    return "websocket" in values


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("service") / "static"
    return {
        path: ((folder / name).read_bytes(), content_type)
        for path, name, content_type in STATIC_FILES
    }


def select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """Select ``brokercast`` when offered; never echo a ``bearer.`` token."""
    return Subprotocol(SUBPROTOCOL) if SUBPROTOCOL in offered else None


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
        self.origins = OriginPolicy(
            settings.allowed_origins, settings.allow_missing_origin
        )
        self.authenticator = Authenticator(settings.auth)
        self.rate_limiter = AddressRateLimiter(settings.max_connection_rate_per_address)
        self.static = _load_static() if settings.demo_page else {}
        self._log_limiter = RepeatLimiter()
        # Admitted handshakes whose handler has not started yet: they count
        # towards max_connections, and their grant is handed to the handler.
        # Weak keys, so a handshake that fails after admission leaves nothing.
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, Grant] = (
            weakref.WeakKeyDictionary()
        )
        self._expired: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._closing: set[asyncio.Task[None]] = set()
        self.keepalive: Keepalive | None = None
        self._keepalive_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind the socket and start accepting connections."""
        settings = self.settings
        tls = None
        if settings.tls_cert_file and settings.tls_key_file:
            tls = make_tls_context(settings.tls_cert_file, settings.tls_key_file)
        self.server = await serve(
            self._handle,
            settings.host,
            settings.port,
            ssl=tls,
            process_request=self._process_request,
            select_subprotocol=select_subprotocol,
            open_timeout=settings.open_timeout,
            compression="deflate" if settings.compression else None,
            max_size=settings.max_client_message_bytes,
            max_queue=4,
            # Keepalive runs in one task for all clients, see service/keepalive.py.
            ping_interval=None,
            close_timeout=settings.close_timeout,
        )
        if settings.ping_interval:
            self.keepalive = Keepalive(
                settings.ping_interval, settings.ping_timeout, settings.close_timeout
            )
            self._keepalive_task = asyncio.create_task(self.keepalive.run())

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
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        self.closed_at_shutdown = self.hub.client_count
        self.server.close(close_connections=True)
        await self.server.wait_closed()

    def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = request.path.partition("?")[0]
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
        if not _is_upgrade(request):
            return self._serve_page(path)
        return self._admit(connection, request)

    def _serve_page(self, path: str) -> Response | None:
        # None lets websockets return 426 Upgrade Required, as for any plain
        # GET that is not a page.
        page = self.static.get(path)
        if page is None:
            return None
        content, content_type = page
        return _response(http.HTTPStatus.OK, content, content_type, PAGE_HEADERS)

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """Return the rejection of a websocket handshake, or ``None`` to accept."""
        headers = request.headers
        address = connection.remote_address
        host = str(address[0]) if address else "unknown"
        if not self.rate_limiter.allow(host):
            return self._reject(
                "rate_limited",
                http.HTTPStatus.TOO_MANY_REQUESTS,
                "too many connections from this address; retry later",
                host,
                [("Retry-After", "1")],
            )

        if not self.origins.allows(headers.get_all("Origin"), headers.get_all("Host")):
            return self._reject(
                "origin", http.HTTPStatus.FORBIDDEN, "origin not allowed", host
            )

        try:
            grant = self.authenticator.check(token_from_request(request.path, headers))
        except AuthError as error:
            return self._reject(
                "unauthorized",
                http.HTTPStatus.UNAUTHORIZED,
                str(error),
                host,
                [("WWW-Authenticate", 'Bearer realm="brokercast"')],
            )
        if not grant.allows(channel_of(request.path)):
            return self._reject(
                "forbidden_channel",
                http.HTTPStatus.FORBIDDEN,
                "token does not allow this channel",
                host,
            )

        limit = self.settings.max_connections
        if limit and self.hub.client_count + len(self._admitted) >= limit:
            return self._reject(
                "max_connections",
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "too many connections; retry later",
                host,
                [("Retry-After", "5")],
            )
        self._admitted[connection] = grant
        return None

    def _reject(
        self,
        reason: str,
        status: http.HTTPStatus,
        message: str,
        host: str,
        extra: Sequence[tuple[str, str]] = (),
    ) -> Response:
        self.metrics.connections_rejected.labels(reason).inc()
        suppressed = self._log_limiter.check(reason)
        if suppressed is not None:
            logger.info(
                "handshake rejected",
                extra={
                    "client": host,
                    "reason": reason,
                    "status": status.value,
                    "detail": message,
                    "suppressed_since_last": suppressed,
                },
            )
        body = f"{status.value} {status.phrase}: {message}\n".encode()
        return _response(status, body, "text/plain; charset=utf-8", extra)

    async def _handle(self, connection: ServerConnection) -> None:
        grant = self._admitted.pop(connection, OPEN_GRANT)
        client = Client(connection, channel_of(self._forget_handshake(connection)))
        self.hub.add(client)
        if self.keepalive is not None:
            self.keepalive.add(client)
        expiry = self._schedule_expiry(connection, grant)
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
            if expiry is not None:
                expiry.cancel()
            self.hub.remove(client)
            self._count_disconnect(client, connection)

    @staticmethod
    def _forget_handshake(connection: ServerConnection) -> str:
        """Return the request path and drop what the handshake left behind.

        websockets keeps the handshake request and response for the life of
        the connection, about 2 KiB per client, and its frame parser keeps a
        reference to the request too. So the request object is emptied in
        place, which frees the headers for every reference. Its path stays,
        without the query (a token may sit there), because websockets reads a
        missing request as "handshake not done yet".
        """
        request = connection.request
        connection.response = None
        if request is None:
            return "/"
        path = request.path
        request.path = path.partition("?")[0]
        request.headers.clear()
        return path

    def _schedule_expiry(
        self, connection: ServerConnection, grant: Grant
    ) -> asyncio.TimerHandle | None:
        if grant.expires_at is None:
            return None
        delay = max(0.0, grant.expires_at - time.time())
        loop = asyncio.get_running_loop()
        return loop.call_later(delay, self._expire, connection)

    def _expire(self, connection: ServerConnection) -> None:
        self._expired.add(connection)
        close_in_background(
            self._closing,
            connection,
            TOKEN_EXPIRED_CODE,
            TOKEN_EXPIRED_REASON,
            self.settings.close_timeout,
        )

    def _count_disconnect(self, client: Client, connection: ServerConnection) -> None:
        if client.slow:
            return  # the hub counted it when it closed the client
        code = connection.close_code
        if client.ping_timed_out:
            reason = "ping_timeout"
        elif self._shutting_down:
            reason = "shutdown"
        elif connection in self._expired:
            reason = "token_expired"
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
