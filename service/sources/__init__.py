"""Source adapters and their registry.

A source adapter reads one broker and hands :class:`~service.events.Event` objects
to the hub. Adapters are found through the ``brokercast.sources`` entry-point group;
the built-in ``kafka`` and ``redis`` adapters are registered there too. A third
party adds one with, in its ``pyproject.toml``::

    [project.entry-points."brokercast.sources"]
    nats = "brokercast_nats:NatsSource"

An adapter subclasses :class:`Source`, implements :meth:`Source.parse_options` and
:meth:`Source.consume`, and calls :meth:`Source.emit` for every event.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from service.errors import ConfigError
from service.events import Event
from service.metrics import Metrics
from service.settings import OptionReader, SourceParser

ENTRY_POINT_GROUP = "brokercast.sources"

logger = logging.getLogger("brokercast.source")


async def cancel_and_wait(
    task: asyncio.Task[None], retry_interval: float = 0.5
) -> None:
    """Cancel ``task`` and wait until it has ended, whatever it raised.

    redis-py's asyncio client can swallow a CancelledError that arrives at the
    wrong moment (redis/redis-py#2028), leaving the task running, so the cancel is
    repeated every ``retry_interval`` seconds until the task ends.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=retry_interval)
    if not task.cancelled():
        task.exception()  # retrieved so asyncio does not log it as unhandled


class SourceState(enum.Enum):
    """Lifecycle state of a source, as reported by /readyz and metrics."""

    CONNECTING = "connecting"
    CONSUMING = "consuming"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class SourceContext:
    """Shared resources that the application passes to every source."""

    instance_id: str
    queue: asyncio.Queue[Event]
    metrics: Metrics
    #: Largest payload in bytes; larger events are dropped and counted.
    max_event_bytes: int


class Source:
    """Base class of source adapters.

    The application calls :meth:`start` once and :meth:`close` once at shutdown.
    Subclasses implement :meth:`consume`, which runs until cancelled, reconnects on
    its own and reports progress through :meth:`set_state`.
    """

    #: Seconds of the first reconnect delay; it doubles up to :attr:`max_backoff`.
    min_backoff = 0.5
    #: Seconds of the longest reconnect delay.
    max_backoff = 15.0

    def __init__(self, name: str, options: Any, context: SourceContext) -> None:
        self.name = name
        self.options = options
        self.context = context
        self.state = SourceState.CONNECTING
        self.detail = "not started"
        self.log_extra = {"source": name}
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        self._consumed = context.metrics.events_consumed.labels(name)
        self._up = context.metrics.source_up.labels(name)
        self._up.set(0)

    @classmethod
    def parse_options(cls, reader: OptionReader) -> Any:
        """Check this adapter's settings table and return its options object."""
        raise NotImplementedError

    async def consume(self) -> None:
        """Read the broker and :meth:`emit` events until cancelled."""
        raise NotImplementedError

    async def flush(self) -> None:
        """Commit or ack what was handed off; called on shutdown after the hub."""

    def start(self) -> None:
        """Start consuming in a background task owned by this source."""
        self._task = asyncio.create_task(self._run(), name=f"source-{self.name}")

    async def stop_reading(self) -> None:
        """Stop reading from the broker; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def close(self) -> None:
        """Stop reading, then commit or ack what was handed to the hub."""
        await self.stop_reading()
        try:
            await self.flush()
        finally:
            self.set_state(SourceState.STOPPED, "closed")

    async def emit(self, event: Event) -> bool:
        """Hand ``event`` to the hub, waiting while the event queue is full.

        Returns ``False`` when the event was dropped because its payload is larger
        than ``max_event_bytes``; the caller should still commit or ack it.
        """
        self._consumed.inc()
        if len(event.payload) > self.context.max_event_bytes:
            self.context.metrics.events_dropped.labels("oversize").inc()
            logger.warning(
                "event dropped: payload too large",
                extra={
                    **self.log_extra,
                    "channel": event.channel,
                    "position": event.position,
                    "size": len(event.payload),
                    "max_event_bytes": self.context.max_event_bytes,
                },
            )
            return False
        await self.context.queue.put(event)
        return True

    def set_state(self, state: SourceState, detail: str) -> None:
        """Record a state change, logging it once rather than on every retry."""
        self.detail = detail
        if state is self.state and (
            state is not SourceState.CONNECTING or self._warned
        ):
            return
        previous, self.state = self.state, state
        # One warning per outage: the first failure to connect is logged even
        # when the source never got past connecting, later retries are not.
        self._warned = state is SourceState.CONNECTING
        self._up.set(1 if state is SourceState.CONSUMING else 0)
        extra = {**self.log_extra, "state": state.value, "detail": detail}
        if state is SourceState.CONSUMING:
            logger.info("source consuming", extra=extra)
        elif state is SourceState.STOPPED:
            logger.info("source stopped", extra=extra)
        elif previous is SourceState.CONSUMING:
            logger.warning("source disconnected", extra=extra)
        else:
            logger.warning("source not connected", extra=extra)

    def backoff(self, attempt: int) -> float:
        """Return the delay in seconds before reconnect ``attempt`` (from 0)."""
        delay = min(self.max_backoff, self.min_backoff * 2.0**attempt)
        return float(delay * random.uniform(0.5, 1.0))

    async def _run(self) -> None:
        try:
            await self.consume()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # consume() handles broker errors itself; reaching here is a bug or
            # an unrecoverable setting, so the source stays failed for /readyz.
            logger.exception("source failed", extra=self.log_extra)
            self.set_state(SourceState.FAILED, f"{type(error).__name__}: {error}")


def _load_entry_points() -> dict[str, type[Source]]:
    found: dict[str, type[Source]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            adapter = entry.load()
        except Exception as error:
            raise ConfigError(
                f"cannot load source adapter {entry.name!r} ({entry.value}): {error}"
            ) from error
        if not (isinstance(adapter, type) and issubclass(adapter, Source)):
            raise ConfigError(
                f"source adapter {entry.name!r} ({entry.value}) is not a Source class"
            )
        found[entry.name] = adapter
    return found


def registered_sources() -> Mapping[str, type[Source]]:
    """Return every adapter of the ``brokercast.sources`` entry-point group."""
    found = _load_entry_points()
    if not found:
        raise ConfigError(
            "no source adapters are registered: install brokercast as a package "
            "(pip install .) so its entry points exist"
        )
    return found


def registered_parsers() -> dict[str, SourceParser]:
    """Return each adapter's option parser, by source type."""
    return {name: cls.parse_options for name, cls in registered_sources().items()}
