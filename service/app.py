"""The application: wires sources, hub and server together and shuts them down."""

from __future__ import annotations

import asyncio
import logging
import time

from service.codecs import make_codec
from service.events import Event
from service.hub import Hub
from service.metrics import Metrics
from service.server import WebsocketServer
from service.settings import Settings
from service.sources import Source, SourceContext, SourceState, registered_sources

logger = logging.getLogger("brokercast.app")


class App:
    """One brokercast process: its sources, hub and websocket server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics(settings.id)
        self.queue: asyncio.Queue[Event] = asyncio.Queue(settings.event_queue_size)
        self.metrics.watch_queue(self.queue.qsize)
        codec = make_codec(settings.codec, self.metrics.invalid_payloads.inc)
        self.hub = Hub(
            self.queue,
            codec,
            self.metrics,
            settings.client_queue_bytes,
            settings.close_timeout,
        )
        self.server = WebsocketServer(settings, self.hub, self.metrics, self.readiness)
        self.sources = self._make_sources()
        self._hub_task: asyncio.Task[None] | None = None
        self._started = 0.0

    def _make_sources(self) -> list[Source]:
        adapters = registered_sources()
        context = SourceContext(
            instance_id=self.settings.id,
            queue=self.queue,
            metrics=self.metrics,
            max_event_bytes=self.settings.max_event_bytes,
        )
        return [
            adapters[entry.type](entry.name, entry.options, context)
            for entry in self.settings.sources
        ]

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Return whether every source is consuming, with each source's state."""
        states = {
            source.name: {"state": source.state.value, "detail": source.detail}
            for source in self.sources
        }
        ready = all(s.state is SourceState.CONSUMING for s in self.sources)
        waiting = [s.name for s in self.sources if s.state is not SourceState.CONSUMING]
        return ready, {"ready": ready, "not_ready": waiting, "sources": states}

    async def start(self) -> None:
        """Bind the server, then start the hub and the sources."""
        self._started = time.monotonic()
        await self.server.start()
        self._hub_task = asyncio.create_task(self.hub.run(), name="hub")
        for source in self.sources:
            source.start()
        settings = self.settings
        logger.info(
            "brokercast started",
            extra={
                "address": ",".join(self.server.addresses),
                "sources": ",".join(f"{s.name}:{s.type}" for s in settings.sources),
                "codec": settings.codec,
                "metrics": settings.enable_metric,
            },
        )
        if not settings.sources:
            logger.warning(
                "no sources configured; clients will receive nothing. Add one, "
                "e.g. BROKERCAST_SOURCES__ORDERS__TYPE=kafka "
                "BROKERCAST_SOURCES__ORDERS__BOOTSTRAP_SERVERS=localhost:9092 "
                "BROKERCAST_SOURCES__ORDERS__TOPICS=orders"
            )

    async def stop(self) -> bool:
        """Shut down within ``shutdown_timeout``; return whether it finished.

        Order matters for delivery: sources stop reading first, the hub then
        writes every event already queued, clients are closed with 1001, and
        only then do sources commit or ack, so nothing acknowledged is unsent.
        """
        began = time.monotonic()
        drained = 0
        complete = True
        self.server.stop_accepting()
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout):
                await asyncio.gather(*(s.stop_reading() for s in self.sources))
                await self._stop_hub()
                drained = self.hub.drain()
                await self.server.close()
                await self.hub.close()
                await asyncio.gather(*(s.close() for s in self.sources))
        except TimeoutError:
            complete = False
        self._log_summary(time.monotonic() - began, drained, complete)
        return complete

    async def _stop_hub(self) -> None:
        task, self._hub_task = self._hub_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _log_summary(self, seconds: float, drained: int, complete: bool) -> None:
        extra = {
            "uptime_seconds": round(time.monotonic() - self._started, 1),
            "shutdown_seconds": round(seconds, 3),
            "events_broadcast": self.hub.events_broadcast,
            "frames_delivered": self.hub.frames_delivered,
            "events_drained": drained,
            "clients_closed": self.server.closed_at_shutdown,
        }
        if complete:
            logger.info("brokercast stopped", extra=extra)
        else:
            logger.error(
                "shutdown timed out; remaining work abandoned",
                extra={**extra, "shutdown_timeout": self.settings.shutdown_timeout},
            )
