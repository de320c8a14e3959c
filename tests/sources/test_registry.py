"""The source registry: adapters come from the brokercast.sources entry points."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from service.sources import registered_sources
from service.sources.kafka import KafkaSource
from service.sources.redis import RedisSource
from tests.helpers import Brokercast, receive, seconds

TICKER_MODULE = textwrap.dedent(
    '''
    """A third-party source adapter that emits a numbered tick now and then."""

    import asyncio
    from dataclasses import dataclass

    from service.events import Event
    from service.sources import Source, SourceState


    @dataclass(frozen=True)
    class TickerOptions:
        channel: str
        interval: float


    class TickerSource(Source):
        @classmethod
        def parse_options(cls, reader):
            return TickerOptions(
                channel=reader.string("channel"),
                interval=reader.number("interval", 0.05),
            )

        async def consume(self):
            self.set_state(SourceState.CONSUMING, "ticking")
            number = 0
            while True:
                payload = f"tick-{number}".encode()
                event = Event(self.name, self.options.channel, str(number), payload)
                await self.emit(event)
                number += 1
                await asyncio.sleep(self.options.interval)
    '''
)


def install_ticker(folder: Path) -> None:
    """Install the ticker adapter the way pip would: a module and a dist-info."""
    (folder / "brokercast_ticker.py").write_text(TICKER_MODULE)
    info = folder / "brokercast_ticker-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: brokercast-ticker\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[brokercast.sources]\nticker = brokercast_ticker:TickerSource\n"
    )


def test_builtin_adapters_come_from_entry_points() -> None:
    adapters = registered_sources()
    assert adapters["kafka"] is KafkaSource
    assert adapters["redis"] is RedisSource


def test_installed_adapter_is_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_ticker(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    adapters = registered_sources()
    assert adapters["ticker"].__name__ == "TickerSource"
    assert {"kafka", "redis"} <= set(adapters)


async def test_installed_adapter_feeds_clients(tmp_path: Path) -> None:
    install_ticker(tmp_path)
    path = os.pathsep.join([str(tmp_path), os.getcwd()])
    settings = {"sources": {"clock": {"type": "ticker", "channel": "ticks"}}}
    with Brokercast(settings, extra_env={"PYTHONPATH": path}) as bc:
        await bc.wait_ready()
        async with connect(f"{bc.base_url}/ticks") as client:
            messages = await receive(client, 3, seconds(10))
        numbers = [int(m.removeprefix("tick-")) for m in messages]
        assert numbers == list(range(numbers[0], numbers[0] + 3))
