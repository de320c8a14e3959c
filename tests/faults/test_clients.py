"""Misbehaving clients: stalled, frozen, flooding, churning; SIGTERM with clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.faults.support import (
    ClientProcess,
    RedisProducer,
    log_lines,
    open_fds,
    report,
    rss_bytes,
)
from tests.helpers import Brokercast, receive, redis_source, seconds, wait_for
from tools.brokers import RedisServer

CONNECTED = "brokercast_clients_connected"

#: Seconds the load and churn scenarios run; the defaults are the specified ones.
LOAD_SECONDS = float(os.environ.get("BROKERCAST_FAULTS_LOAD_SECONDS", "60"))


def pid_of(bc: Brokercast) -> int:
    assert bc.process is not None
    return bc.process.pid


async def test_two_clients_get_ten_in_order(
    redis_server: RedisServer, name: str
) -> None:
    settings = {"sources": {"events": redis_source(redis_server, name)}}
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as first, connect(bc.base_url) as second:
            await bc.wait_clients(2)
            producer = RedisProducer(redis_server, name)
            await producer.send(10)
            await producer.close()
            for client in (first, second):
                messages = await receive(client, 10, seconds(10))
                assert [int(m[:9]) for m in messages] == list(range(10))


@pytest.mark.slow
async def test_stalled_client_under_load(
    redis_server: RedisServer, name: str, tmp_path: Path
) -> None:
    """10,000 events/s of 1 KB: the stalled client gets 1013, the other all."""
    rate, size = 10_000, 1000
    settings = {
        "client_queue_bytes": 1_048_576,
        "event_queue_size": 1000,
        "sources": {"events": redis_source(redis_server, name, count=1000)},
    }
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        pid = pid_of(bc)
        baseline = rss_bytes(pid)
        normal = ClientProcess(bc.base_url, tmp_path / "normal.json")
        stalled_socket = socket.socket()
        stalled_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled_socket.connect(("127.0.0.1", bc.port))
        try:
            normal.wait_connected(seconds(10))
            async with connect(
                bc.base_url, sock=stalled_socket, max_queue=1
            ) as stalled:
                await bc.wait_clients(2)
                producer = RedisProducer(redis_server, name)
                peak, produced, elapsed = await produce_at(
                    producer, rate, size, LOAD_SECONDS, lambda: rss_bytes(pid)
                )
                await producer.close()
                slow_metric = (
                    'brokercast_clients_disconnected_total{reason="slow_client"}'
                )
                await wait_for(lambda: bc.metric(slow_metric) == 1, seconds(5), "1013")
                await wait_for(
                    lambda: bc.metric("brokercast_frames_delivered_total") >= produced,
                    seconds(30),
                    "normal client caught up",
                )
                # The 1013 close frame sits behind the unread buffer; a client
                # that reads nothing for the close timeout gets the TCP link
                # aborted instead, so it sees 1006.
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(stalled.recv(), seconds(10))
                assert stalled.close_code == 1006
                assert "slow client disconnected" in bc.log()
            result = normal.finish(seconds(10))
        finally:
            normal.kill()
    report(
        "stalled-client-load",
        target_rate=rate,
        achieved_rate=round(produced / elapsed),
        seconds=round(elapsed),
        produced=produced,
        received=result["count"],
        missing=result["missing"],
        duplicates=result["duplicates"],
        p50_ms=round(result["p50"] * 1000, 1),
        p99_ms=round(result["p99"] * 1000, 1),
        max_ms=round(result["max"] * 1000, 1),
        rss_baseline_mb=round(baseline / 2**20, 1),
        rss_peak_mb=round(peak / 2**20, 1),
    )
    assert result["first"] == 0
    assert result["count"] == produced
    assert result["missing"] == 0
    assert result["duplicates"] == 0
    assert result["in_order"]
    # Queues: 1000 events of 1 KB, 1 MiB per client plus one batch, one read of
    # 1000 entries; the rest is allocator slack.
    assert peak - baseline < 64 * 2**20


def unread_socket(port: int) -> socket.socket:
    """Connect a socket whose tiny receive buffer fills after a few frames."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


async def fill_past_kernel_buffers(producer: RedisProducer) -> None:
    """Send 12 MB, more than the kernel buffers on both ends of loopback hold."""
    for _ in range(12):
        await producer.send(1000, 1000)


async def test_slow_client_close_is_bounded(
    redis_server: RedisServer, name: str
) -> None:
    """A client that never reads is gone within the close timeout of its 1013."""
    settings = {
        "client_queue_bytes": 65_536,
        "shutdown_timeout": 1,  # close timeout 0.5 s
        "ping_interval": 0,
        "sources": {"events": redis_source(redis_server, name)},
    }
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        sock = unread_socket(bc.port)
        async with connect(bc.base_url, sock=sock, max_queue=1):
            await bc.wait_clients(1)
            producer = RedisProducer(redis_server, name)
            await fill_past_kernel_buffers(producer)
            await producer.close()
            slow = 'brokercast_clients_disconnected_total{reason="slow_client"}'
            await wait_for(lambda: bc.metric(slow) == 1, seconds(10), "1013")
            # The close frame waits behind bytes the client never reads, so the
            # connection is aborted once the close timeout has passed.
            await wait_for(lambda: bc.metric(CONNECTED) == 0, seconds(3), "aborted")


async def test_keepalive_timeout_behind_full_buffer(
    redis_server: RedisServer, name: str
) -> None:
    """A ping stuck behind unread bytes still ends in a keepalive timeout."""
    settings = {
        "client_queue_bytes": 256 * 2**20,  # so the slow-client rule never fires
        "shutdown_timeout": 1,
        "ping_interval": 0.5,
        "ping_timeout": 0.5,
        "sources": {"events": redis_source(redis_server, name)},
    }
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        sock = unread_socket(bc.port)
        async with connect(bc.base_url, sock=sock, max_queue=1, ping_interval=None):
            await bc.wait_clients(1)
            producer = RedisProducer(redis_server, name)
            await fill_past_kernel_buffers(producer)
            await producer.close()
            timed_out = 'brokercast_clients_disconnected_total{reason="ping_timeout"}'
            await wait_for(lambda: bc.metric(timed_out) == 1, seconds(10), "timeout")
            assert bc.metric(CONNECTED) == 0


async def produce_at(
    producer: RedisProducer,
    rate: int,
    size: int,
    duration: float,
    sample: object,
) -> tuple[int, int, float]:
    """Produce ``rate`` events/s for ``duration`` s; return peak sample, count, s."""
    assert callable(sample)
    began = time.monotonic()
    peak = 0
    tick = 0.1
    while time.monotonic() - began < duration:
        due = began + tick * (1 + producer.next // int(rate * tick))
        await producer.send(int(rate * tick), size)
        peak = max(peak, sample())
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    return peak, producer.next, time.monotonic() - began


async def test_frozen_client_dropped_by_keepalive(
    redis_server: RedisServer, name: str, tmp_path: Path
) -> None:
    """A SIGSTOPped client is gone within the keepalive and close timeouts."""
    ping_interval, ping_timeout = 1.0, 1.0
    # The server waits half of shutdown_timeout (0.5 s to 5 s) for the TCP close
    # after its close frame, which a frozen client never sends.
    close_timeout = 0.5
    settings = {
        "shutdown_timeout": 1,
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "sources": {"events": redis_source(redis_server, name)},
    }
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        pid = pid_of(bc)
        frozen = ClientProcess(bc.base_url, tmp_path / "frozen.json")
        producer = RedisProducer(redis_server, name)
        try:
            frozen.wait_connected(seconds(10))
            await bc.wait_clients(1)
            before = rss_bytes(pid)
            os.kill(frozen.pid, signal.SIGSTOP)
            began = time.monotonic()
            while bc.metric(CONNECTED) != 0:
                await producer.send(20, 1000)
                assert time.monotonic() - began < seconds(10), "frozen client kept"
                await asyncio.sleep(0.1)
            gone_after = time.monotonic() - began
            after = rss_bytes(pid)
        finally:
            await producer.close()
            frozen.kill()
        timed_out = 'brokercast_clients_disconnected_total{reason="ping_timeout"}'
        assert bc.metric(timed_out) == 1
    report(
        "frozen-client",
        gone_after_s=round(gone_after, 2),
        limit_s=ping_interval + ping_timeout + close_timeout,
        rss_change_mb=round((after - before) / 2**20, 1),
    )
    # Pings go out every interval, so the timeout ends at most one interval and
    # one timeout after the freeze; 0.5 s covers polling.
    limit = ping_interval + ping_timeout + close_timeout
    assert gone_after < limit + seconds(0.5)


async def test_flooding_client_discarded(redis_server: RedisServer, name: str) -> None:
    """1,000 frames right after connecting are read and thrown away."""
    settings = {"sources": {"events": redis_source(redis_server, name)}}
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with connect(bc.base_url) as flooder:
            for i in range(1000):
                await flooder.send(f"frame {i}")
            await bc.wait_clients(1)
            producer = RedisProducer(redis_server, name)
            await producer.send()
            await producer.close()
            assert [int(m[:9]) for m in await receive(flooder, 1, seconds(5))] == [0]
            began = time.monotonic()
            code = await bc.terminate(timeout=seconds(12))
            took = time.monotonic() - began
    report("flooding-client", frames=1000, shutdown_s=round(took, 2))
    assert code == 0
    assert took < 10  # the shutdown timeout of tests.helpers.Brokercast


async def test_sigterm_closes_idle_clients_1001(
    redis_server: RedisServer, name: str
) -> None:
    """Every idle client gets 1001 and the process exits 0 within 2 s."""
    settings = {"sources": {"events": redis_source(redis_server, name)}}
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(connect(bc.base_url)) for _ in range(20)
            ]
            await bc.wait_clients(20)
            began = time.monotonic()
            code = await bc.terminate(timeout=seconds(5))
            took = time.monotonic() - began
            for client in clients:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(client.recv(), seconds(5))
            codes = sorted(
                {client.close_code for client in clients if client.close_code}
            )
    report("sigterm-idle-clients", clients=20, exit_code=code, exit_s=round(took, 2))
    assert code == 0
    assert took < 2
    assert codes == [1001]


@pytest.mark.slow
async def test_client_churn_leaks_nothing(redis_server: RedisServer, name: str) -> None:
    """50 connects and 50 disconnects a second during a broadcast."""
    settings = {"sources": {"events": redis_source(redis_server, name)}}
    with Brokercast(settings) as bc:
        await bc.wait_ready()
        pid = pid_of(bc)
        producer = RedisProducer(redis_server, name)
        await churn(bc, producer, 3)  # warm-up: allocator pools, caches
        await bc.wait_clients(0)
        baseline, fds = rss_bytes(pid), open_fds(pid)
        lines = len(log_lines(bc.log()))
        connects, peak = await churn(bc, producer, LOAD_SECONDS)
        await producer.close()
        await bc.wait_clients(0, timeout=10)
        after, fds_after = rss_bytes(pid), open_fds(pid)
        new_lines = log_lines(bc.log())[lines:]
    report(
        "client-churn",
        seconds=LOAD_SECONDS,
        connects=connects,
        peak_clients=peak,
        rss_baseline_mb=round(baseline / 2**20, 1),
        rss_after_mb=round(after / 2**20, 1),
        fds_before=fds,
        fds_after=fds_after,
        log_lines=len(new_lines),
    )
    assert new_lines == []
    assert fds_after <= fds
    assert after - baseline < 16 * 2**20


async def churn(
    bc: Brokercast, producer: RedisProducer, duration: float
) -> tuple[int, int]:
    """Open 50 clients a second, each closing (or dropping) within a second."""
    tasks: set[asyncio.Task[None]] = set()
    began = time.monotonic()
    connects = peak = 0
    while time.monotonic() - began < duration:
        due = began + 0.1 * (1 + connects // 5)
        for _ in range(5):
            task = asyncio.create_task(short_visit(bc.base_url))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        connects += 5
        await producer.send(10, 200)
        peak = max(peak, len(tasks))
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    await asyncio.gather(*tasks)
    return connects, peak


async def short_visit(url: str) -> None:
    """Connect, read for up to a second, then close cleanly or drop the TCP link."""
    client: ClientConnection
    async with connect(url) as client:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(random.uniform(0.1, 1.0)):
                async for _message in client:
                    pass
        if random.random() < 0.5:
            client.transport.abort()
