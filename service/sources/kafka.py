"""The ``kafka`` source: Kafka topics through aiokafka.

Without ``group_id`` the consumer is assigned every partition of its topics and
commits nothing, so each replica sees every record. With ``group_id`` partitions
are shared within the group and offsets are committed only for records the hub
has written to its clients: every ``commit_interval``, when a rebalance revokes
partitions, and at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from service.events import Event
from service.settings import OptionReader
from service.sources import Source, SourceState, cancel_and_wait

logger = logging.getLogger("brokercast.source")

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


@dataclass(frozen=True)
class KafkaOptions:
    """Settings of one Kafka source."""

    bootstrap_servers: tuple[str, ...]
    topics: tuple[str, ...]
    group_id: str | None = None
    #: Where a consumer without a committed offset starts: latest or earliest.
    start: str = "latest"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: Seconds between offset commits while consuming with a group.
    commit_interval: float = 1.0
    #: Seconds between broker health checks that drive the source state.
    health_interval: float = 2.0
    #: Milliseconds aiokafka waits for a broker to answer one request.
    request_timeout_ms: int = 10_000


def _is_host_port(text: str) -> bool:
    """Return whether ``text`` is ``host:port`` or ``[v6 address]:port``."""
    host, separator, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return False  # an IPv6 address needs brackets when a port follows
    valid_port = port.isascii() and port.isdigit() and 0 < int(port) < 65536
    return bool(separator and host and valid_port)


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """The rebalance listener of one consumer, which calls into its source.

    aiokafka awaits both callbacks inside the rebalance, so this member rejoins
    the group only after the revoke commit has ended.
    """

    def __init__(self, source: KafkaSource, consumer: AIOKafkaConsumer) -> None:
        self._source = source
        self._consumer = consumer
        self._revoked: set[TopicPartition] = set()

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._revoked = set(revoked)
        await self._source._commit_revoked(self._consumer, self._revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # Between the two callbacks the hub can still hand off records of the
        # revoked partitions, and a periodic commit that was under way can still
        # record its offsets. Both are stale if another member owned a partition
        # meanwhile. Dropping them is safe because aiokafka reads every newly
        # assigned partition again from its committed offset, or from ``start``.
        self._source._forget(self._revoked)
        self._revoked = set()


class KafkaSource(Source):
    """Consumes Kafka topics with :class:`aiokafka.AIOKafkaConsumer`."""

    options: KafkaOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._consumer: AIOKafkaConsumer | None = None
        # Next offset to commit per partition: one past the last handed-off record.
        self._handed_off: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    @classmethod
    def parse_options(cls, reader: OptionReader) -> KafkaOptions:
        servers = reader.string_list("bootstrap_servers")
        for server in servers:
            if not _is_host_port(server):
                raise reader.fail(
                    "bootstrap_servers", server, "host:port entries, e.g. kafka:9092"
                )
        options = KafkaOptions(
            bootstrap_servers=servers,
            topics=reader.string_list("topics"),
            group_id=reader.optional_string("group_id"),
            start=reader.choice("start", "latest", ("latest", "earliest")),
            security_protocol=reader.choice(
                "security_protocol", "PLAINTEXT", SECURITY_PROTOCOLS
            ),
            sasl_mechanism=reader.choice("sasl_mechanism", "PLAIN", SASL_MECHANISMS),
            sasl_plain_username=reader.optional_string("sasl_plain_username"),
            sasl_plain_password=reader.optional_string("sasl_plain_password"),
            ssl_cafile=reader.optional_string("ssl_cafile"),
            ssl_certfile=reader.optional_string("ssl_certfile"),
            ssl_keyfile=reader.optional_string("ssl_keyfile"),
            commit_interval=reader.number("commit_interval", 1.0, 0.01),
            health_interval=reader.number("health_interval", 2.0, 0.05),
            request_timeout_ms=reader.integer("request_timeout_ms", 10_000, 100),
        )
        return options

    def _new_consumer(self) -> AIOKafkaConsumer:
        options = self.options
        ssl_context = None
        if options.security_protocol in ("SSL", "SASL_SSL"):
            ssl_context = create_ssl_context(
                cafile=options.ssl_cafile,
                certfile=options.ssl_certfile,
                keyfile=options.ssl_keyfile,
            )
        # aiokafka takes a rebalance listener only in subscribe(), so a group
        # subscribes below. Without a group the constructor subscribes.
        grouped = options.group_id is not None
        topics = () if grouped else options.topics
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=list(options.bootstrap_servers),
            client_id=self.context.instance_id,
            group_id=options.group_id,
            enable_auto_commit=False,
            auto_offset_reset=options.start,
            security_protocol=options.security_protocol,
            sasl_mechanism=options.sasl_mechanism,
            sasl_plain_username=options.sasl_plain_username,
            sasl_plain_password=options.sasl_plain_password,
            ssl_context=ssl_context,
            request_timeout_ms=options.request_timeout_ms,
            retry_backoff_ms=500,
        )

        if grouped:
            listener = _RebalanceListener(self, consumer)
            consumer.subscribe(topics=list(options.topics), listener=listener)
        return consumer

    async def consume(self) -> None:
        attempt = 0
        while True:
            consumer = self._new_consumer()
            try:
                await consumer.start()
            except asyncio.CancelledError:
                # Stopped while connecting: flush() never sees this consumer.
                await self._close_consumer(consumer)
                raise
            except KafkaError as error:
                await self._close_consumer(consumer)
                self.set_state(SourceState.CONNECTING, f"cannot connect: {error}")
                await asyncio.sleep(self.backoff(attempt))
                attempt += 1
                continue

            attempt = 0
            self._consumer = consumer
            self.set_state(SourceState.CONSUMING, "connected")
            try:
                await self._read(consumer)
            except KafkaError as error:
                # Cancellation skips this: flush() commits and stops the consumer.
                self._consumer = None
                await self._close_consumer(consumer)
                self.set_state(SourceState.CONNECTING, f"consumer failed: {error}")
                await asyncio.sleep(self.backoff(0))

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        watchdog = asyncio.create_task(self._watch(consumer), name="kafka-health")
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + self.options.commit_interval
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for records in batches.values():
                    for record in records:
                        await self.emit(self._to_event(record))
                if self.options.group_id is not None and loop.time() >= next_commit:
                    await self._commit(consumer)
                    next_commit = loop.time() + self.options.commit_interval
        finally:
            await cancel_and_wait(watchdog)

    async def _watch(self, consumer: AIOKafkaConsumer) -> None:
        """Ask the brokers for metadata now and then to learn whether they answer.

        aiokafka reconnects by itself, so ``getmany`` just returns nothing while
        the brokers are away; this check is what turns the source state to
        connecting and back.
        """
        timeout = self.options.request_timeout_ms / 1000
        while True:
            await asyncio.sleep(self.options.health_interval)
            try:
                await asyncio.wait_for(consumer.topics(), timeout)
            except (KafkaError, TimeoutError) as error:
                reason = str(error) or type(error).__name__
                self.set_state(SourceState.CONNECTING, f"broker unreachable: {reason}")
            else:
                self.set_state(SourceState.CONSUMING, "connected")

    def _to_event(self, record: ConsumerRecord[bytes, bytes]) -> Event:
        headers = {k: bytes(v or b"") for k, v in record.headers or ()}
        on_handoff = self._mark_handed_off if self.options.group_id else None
        return Event(
            source=self.name,
            channel=record.topic,
            position=f"{record.partition}:{record.offset}",
            payload=record.value or b"",
            key=record.key,
            timestamp=record.timestamp,
            headers=headers,
            on_handoff=on_handoff,
        )

    def _mark_handed_off(self, event: Event) -> None:
        partition, offset = event.position.split(":")
        tp = TopicPartition(event.channel, int(partition))
        self._handed_off[tp] = max(self._handed_off.get(tp, 0), int(offset) + 1)

    def _uncommitted(
        self, partitions: set[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Return the handed-off offsets of ``partitions`` not committed yet."""
        return {
            tp: offset
            for tp, offset in self._handed_off.items()
            if self._committed.get(tp) != offset and tp in partitions
        }

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the handed-off and committed offsets kept for ``partitions``."""
        for tp in partitions:
            self._handed_off.pop(tp, None)
            self._committed.pop(tp, None)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        pending = self._uncommitted(consumer.assignment())
        if not pending:
            return
        try:
            await consumer.commit(pending)
        except KafkaError as error:
            # The offsets stay pending and go with the next commit; a restart in
            # between replays those records, which at-least-once allows.
            logger.warning(
                "offset commit failed", extra={**self.log_extra, "error": str(error)}
            )
            return
        self._committed.update(pending)

    async def _commit_revoked(
        self, consumer: AIOKafkaConsumer, revoked: set[TopicPartition]
    ) -> None:
        """Commit the handed-off offsets of ``revoked``, then drop their bookkeeping.

        The next owner of each partition starts after its last handed-off record
        instead of at the last periodic commit. aiokafka retries retriable errors
        inside ``commit``, and the whole call is bounded by ``request_timeout_ms``
        because the group waits for this member to rejoin. A failure is logged
        once and not retried: the partitions are no longer this member's.
        """
        pending = self._uncommitted(revoked)
        try:
            if pending:
                timeout = self.options.request_timeout_ms / 1000
                await asyncio.wait_for(consumer.commit(pending), timeout)
        except (KafkaError, TimeoutError) as error:
            # The next owner replays from the last successful commit, which
            # at-least-once allows.
            logger.warning(
                "offset commit on partition revoke failed",
                extra={
                    **self.log_extra,
                    "partitions": sorted(
                        f"{tp.topic}:{tp.partition}" for tp in pending
                    ),
                    "error": str(error) or type(error).__name__,
                },
            )
        finally:
            self._forget(revoked)

    async def flush(self) -> None:
        """Commit the handed-off offsets, then stop the consumer."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        if self.options.group_id is not None:
            await self._commit(consumer)
        await self._close_consumer(consumer)

    async def _close_consumer(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await asyncio.wait_for(consumer.stop(), timeout=5)
        except (KafkaError, TimeoutError) as error:
            self._log_unclean_stop(error)
        except asyncio.CancelledError as error:
            # With the brokers unreachable, aiokafka 0.14's stop() can end with
            # the CancelledError of one of its own tasks. Only a cancellation
            # of this task is passed on.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            self._log_unclean_stop(error)

    def _log_unclean_stop(self, error: BaseException) -> None:
        logger.warning(
            "kafka consumer did not stop cleanly",
            extra={**self.log_extra, "error": str(error) or type(error).__name__},
        )
