"""The ``redis`` source: Redis streams through redis-py's asyncio client.

Without ``group`` the source reads with XREAD from ``start`` on and keeps its own
position, so every replica sees every entry. With ``group`` it reads with
XREADGROUP as consumer ``id``, creates the group (MKSTREAM) when it is missing,
claims entries that another consumer left pending for ``claim_idle_ms``, and acks
each entry once the hub has written it to its clients.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.events import Event
from service.settings import OptionReader
from service.sources import Source, SourceState, cancel_and_wait

logger = logging.getLogger("brokercast.source")

#: Errors after which the source reconnects with backoff.
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

#: Entry fields as redis-py returns them with ``decode_responses=False``.
Fields = Mapping[bytes, bytes]


@dataclass(frozen=True)
class RedisOptions:
    """Settings of one Redis source."""

    url: str
    streams: tuple[str, ...]
    group: str | None = None
    #: ``$`` for entries added from now on, ``0`` for the whole stream.
    start: str = "$"
    #: Entry field holding the payload; ``None``: see :func:`entry_payload`.
    field: str | None = None
    #: Milliseconds one blocking read waits for new entries.
    block_ms: int = 5000
    #: Entries fetched by one read.
    count: int = 100
    #: Milliseconds an entry may sit unacked at another consumer before it is
    #: claimed, so entries of a crashed replica are not stranded.
    claim_idle_ms: int = 60_000


def entry_payload(fields: Fields, field: str | None) -> bytes | None:
    """Return the payload of a stream entry.

    With ``field`` set, the value of that field, or ``None`` when the entry lacks
    it. Otherwise the value of a single-field entry, or all fields as a JSON
    object (invalid UTF-8 replaced) when there are several.
    """
    if field is not None:
        return fields.get(field.encode())
    if len(fields) == 1:
        return next(iter(fields.values()))
    document = {
        k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
        for k, v in fields.items()
    }
    return orjson.dumps(document)


def _checked_url(reader: OptionReader) -> str:
    """Return the ``url`` option once redis-py can parse it."""
    url = reader.string("url")
    try:
        parse_url(url)
    except ValueError as error:
        # The password, if any, must not reach the error line or the log.
        redacted = re.sub(r"//[^@/]*@", "//***@", url)
        raise reader.fail(
            "url", redacted, f"a redis://, rediss:// or unix:// URL ({error})"
        ) from None
    return url


def entry_timestamp(entry_id: str) -> int | None:
    """Return the milliseconds part of an entry id such as ``1700000000000-0``."""
    head = entry_id.split("-", 1)[0]
    return int(head) if head.isdigit() else None


class RedisSource(Source):
    """Consumes Redis streams, alone or as a member of a consumer group."""

    options: RedisOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: Redis | None = None
        # Next id to read from per stream, for reads without a group.
        self._positions: dict[str, str] = {}
        # Entries handed to clients and waiting for XACK, per stream.
        self._to_ack: dict[str, list[str]] = {}
        self._ack_ready = asyncio.Event()
        self._consumer = self.context.instance_id
        self._missing_group_logged = False
        # Where a recreated group starts: after a flush or DEL the stream is new,
        # so reading it from the beginning loses nothing added in between.
        self._group_start = self.options.start

    @classmethod
    def parse_options(cls, reader: OptionReader) -> RedisOptions:
        # An environment variable START=0 arrives as the integer 0, so the value
        # is read as a string first and compared afterwards.
        start = reader.string("start", "$")
        if start not in ("$", "0"):
            raise reader.fail("start", start, "one of $, 0")
        return RedisOptions(
            url=_checked_url(reader),
            streams=reader.string_list("streams"),
            group=reader.optional_string("group"),
            start=start,
            field=reader.optional_string("field"),
            block_ms=reader.integer("block_ms", 5000, 1, 3_600_000),
            count=reader.integer("count", 100, 1, 100_000),
            claim_idle_ms=reader.integer("claim_idle_ms", 60_000, 1),
        )

    def _new_client(self) -> Redis:
        # redis-py 8 defaults socket_timeout to 5 s, shorter than a blocking read
        # may last, so the read timeout is the block time plus a margin: an idle
        # stream is not an error, a server that stops answering still is.
        block_seconds = self.options.block_ms / 1000
        return Redis.from_url(
            self.options.url,
            socket_timeout=block_seconds + 5.0,
            socket_connect_timeout=5.0,
            protocol=2,
            decode_responses=False,
        )

    async def consume(self) -> None:
        attempt = 0
        while True:
            client = self._new_client()
            self._client = client
            try:
                await client.ping()
                if self.options.group is not None:
                    await self._create_groups(client, self._group_start)
                    # A group missing on a later connect went away with its
                    # stream (an empty restart, FLUSHALL, DEL), so every entry
                    # in the new stream is one this group has not seen.
                    self._group_start = "0"
                    await self._resume_group(client)
                else:
                    await self._resolve_start(client)
                self.set_state(SourceState.CONSUMING, "connected")
                attempt = 0
                await self._read(client)
            except CONNECTION_ERRORS as error:
                self.set_state(SourceState.CONNECTING, f"redis unreachable: {error}")
            except ResponseError as error:
                self._handle_response_error(error)
            finally:
                self._client = None
                await client.aclose()
            await asyncio.sleep(self.backoff(attempt))
            attempt += 1

    def _handle_response_error(self, error: ResponseError) -> None:
        """Record a server error; the caller reconnects after a backoff."""
        text = str(error)
        if text.startswith("NOGROUP") or "no longer exists" in text:
            # The stream or its group went away (DEL, FLUSHALL, a restart without
            # persistence); the next connect recreates the group.
            if not self._missing_group_logged:
                logger.warning(
                    "stream or consumer group missing; recreating it",
                    extra={**self.log_extra, "error": text},
                )
                self._missing_group_logged = True
            self._group_start = "0"
            self.set_state(SourceState.CONNECTING, f"group missing: {text}")
            return
        if text.startswith(("LOADING", "BUSY", "MASTERDOWN", "READONLY")):
            self.set_state(SourceState.CONNECTING, f"redis not ready: {text}")
            return
        # Anything else (WRONGTYPE on a key that is not a stream, a database
        # index out of range) may be fixed by an operator while brokercast runs,
        # so the source reports it once, stays not ready and retries with backoff.
        self.set_state(SourceState.FAILED, f"redis error: {text}")

    async def _resolve_start(self, client: Redis) -> None:
        """Turn ``$`` into the id of the last entry, once per stream.

        Reading from a concrete id means entries added while the connection is
        down are read after it comes back instead of being skipped.
        """
        for stream in self.options.streams:
            if stream in self._positions:
                continue
            if self.options.start == "0":
                self._positions[stream] = "0-0"
                continue
            last = await client.xrevrange(stream, count=1)
            self._positions[stream] = _text(last[0][0]) if last else "0-0"

    async def _create_groups(self, client: Redis, start: str) -> None:
        assert self.options.group is not None
        for stream in self.options.streams:
            try:
                await client.xgroup_create(
                    stream, self.options.group, id=start, mkstream=True
                )
            except ResponseError as error:
                if not str(error).startswith("BUSYGROUP"):
                    raise

    async def _read(self, client: Redis) -> None:
        if self.options.group is None:
            while True:
                await self._read_once(client)
        acker = asyncio.create_task(self._ack_loop(client), name="redis-ack")
        claim_every = max(1.0, self.options.claim_idle_ms / 2000)
        next_claim = time.monotonic() + claim_every
        try:
            while True:
                await self._read_group_once(client, ">")
                self._missing_group_logged = False
                # A replica that crashed leaves entries pending while this one
                # runs, so stale entries are claimed between reads, not only
                # at connect.
                if time.monotonic() >= next_claim:
                    await self._claim_stale(client)
                    next_claim = time.monotonic() + claim_every
        finally:
            await cancel_and_wait(acker)

    async def _read_once(self, client: Redis) -> None:
        positions: dict[Any, Any] = dict(self._positions)
        reply = await client.xread(
            positions,
            count=self.options.count,
            block=self.options.block_ms,
        )
        for stream, entries in _as_stream_entries(reply):
            for entry_id, fields in entries:
                self._positions[stream] = entry_id
                await self._emit_entry(stream, entry_id, fields)

    async def _resume_group(self, client: Redis) -> None:
        """Deliver entries pending for this consumer, then claim stale ones."""
        await self._read_group_once(client, "0")
        await self._claim_stale(client)

    async def _claim_stale(self, client: Redis) -> None:
        """Take over and deliver entries idle at any consumer for claim_idle_ms."""
        assert self.options.group is not None
        for stream in self.options.streams:
            cursor = "0-0"
            while True:
                reply = await client.xautoclaim(
                    stream,
                    self.options.group,
                    self._consumer,
                    min_idle_time=self.options.claim_idle_ms,
                    start_id=cursor,
                    count=self.options.count,
                )
                cursor = _text(reply[0])
                for entry_id, fields in reply[1]:
                    await self._emit_entry(stream, _text(entry_id), fields)
                if cursor == "0-0":
                    break

    async def _read_group_once(self, client: Redis, start: str) -> None:
        assert self.options.group is not None
        reply = await client.xreadgroup(
            self.options.group,
            self._consumer,
            {stream: start for stream in self.options.streams},
            count=None if start == "0" else self.options.count,
            block=None if start == "0" else self.options.block_ms,
        )
        for stream, entries in _as_stream_entries(reply):
            for entry_id, fields in entries:
                await self._emit_entry(stream, entry_id, fields)

    async def _emit_entry(self, stream: str, entry_id: str, fields: Fields) -> None:
        grouped = self.options.group is not None
        if not fields:
            # A pending entry that was deleted from the stream: nothing to send.
            if grouped:
                self._queue_ack(stream, entry_id)
            return
        payload = entry_payload(fields, self.options.field)
        if payload is None:
            self.context.metrics.events_dropped.labels("missing_field").inc()
            logger.warning(
                "entry dropped: payload field missing",
                extra={**self.log_extra, "channel": stream, "entry_id": entry_id},
            )
            if grouped:
                self._queue_ack(stream, entry_id)
            return

        payload_field = self.options.field or (
            next(iter(fields)).decode("utf-8", "replace") if len(fields) == 1 else None
        )
        headers = {
            k.decode("utf-8", "replace"): v
            for k, v in fields.items()
            if k.decode("utf-8", "replace") != payload_field
        }
        event = Event(
            source=self.name,
            channel=stream,
            position=entry_id,
            payload=payload,
            timestamp=entry_timestamp(entry_id),
            headers=headers,
            on_handoff=self._mark_handed_off if grouped else None,
        )
        if not await self.emit(event) and grouped:
            self._queue_ack(stream, entry_id)

    def _mark_handed_off(self, event: Event) -> None:
        self._queue_ack(event.channel, event.position)

    def _queue_ack(self, stream: str, entry_id: str) -> None:
        self._to_ack.setdefault(stream, []).append(entry_id)
        self._ack_ready.set()

    async def _ack_loop(self, client: Redis) -> None:
        while True:
            await self._ack_ready.wait()
            self._ack_ready.clear()
            await self._ack(client)

    async def _ack(self, client: Redis) -> None:
        assert self.options.group is not None
        batches, self._to_ack = self._to_ack, {}
        for stream, ids in batches.items():
            try:
                await client.xack(stream, self.options.group, *ids)
            except (*CONNECTION_ERRORS, ResponseError):
                # Unacked entries stay pending and are read again after a
                # reconnect, so they are kept for the next attempt too.
                self._to_ack.setdefault(stream, []).extend(ids)
                raise

    async def flush(self) -> None:
        """Ack every entry the hub handed off, on a fresh connection."""
        if self.options.group is None or not self._to_ack:
            return
        client = self._new_client()
        try:
            await self._ack(client)
        except (*CONNECTION_ERRORS, ResponseError) as error:
            pending = sum(len(ids) for ids in self._to_ack.values())
            logger.warning(
                "ack on shutdown failed; entries stay pending and are read again",
                extra={**self.log_extra, "entries": pending, "error": str(error)},
            )
        finally:
            await client.aclose()


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_stream_entries(reply: Any) -> list[tuple[str, Sequence[tuple[str, Fields]]]]:
    """Normalise an XREAD/XREADGROUP reply to ``[(stream, [(id, fields)])]``."""
    result: list[tuple[str, Sequence[tuple[str, Fields]]]] = []
    for stream, entries in reply or ():
        items = [(_text(entry_id), fields or {}) for entry_id, fields in entries]
        result.append((_text(stream), items))
    return result
