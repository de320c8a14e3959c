"""The demo page in headless Chromium: events, filters, pause, restart, origins.

Chromium comes from Debian (tools/setup.d/30-browser.sh) and Playwright only
drives it; the test fails when the browser is missing, like a missing broker.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis.asyncio
from playwright.async_api import BrowserContext, Page, async_playwright, expect
from websockets.asyncio.client import connect

from tests.edge.edge_helpers import running_edge
from tests.helpers import (
    Brokercast,
    produce_to_kafka,
    receive,
    seconds,
    wait_for,
)
from tools.brokers import KafkaBroker, RedisServer, free_port

CHROMIUM = os.environ.get("BROKERCAST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).parents[2] / "docs" / "demo-page.png"


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[BrowserContext]:
    """Start the system Chromium with a fresh profile folder."""
    assert Path(CHROMIUM).is_file(), (
        f"{CHROMIUM} not found; run tools/setup.d/30-browser.sh"
    )
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 560},
        )
        try:
            yield context
        finally:
            await context.close()


async def shown(page: Page, channel: str) -> list[str]:
    """Return the payloads the page shows for ``channel``, oldest first."""
    cells = page.locator(f"#events tr[data-channel='{channel}'] td.payload")
    return list(reversed(await cells.all_text_contents()))


def brokercast_settings(
    kafka_broker: KafkaBroker, redis_server: RedisServer, topic: str, stream: str
) -> dict[str, object]:
    return {
        "codec": "json",
        "sources": {
            "orders": {
                "type": "kafka",
                "bootstrap_servers": kafka_broker.bootstrap_servers,
                "topics": [topic],
                "start": "latest",
            },
            "sensors": {"type": "redis", "url": redis_server.url, "streams": [stream]},
        },
    }


async def test_demo_page_streams_filters_and_reconnects(
    kafka_broker: KafkaBroker, redis_server: RedisServer, name: str, tmp_path: Path
) -> None:
    topic, stream = f"{name}-orders", f"{name}-sensors"
    kafka_broker.create_topic(topic)
    settings = brokercast_settings(kafka_broker, redis_server, topic, stream)
    redis_client = redis.asyncio.Redis.from_url(redis_server.url)

    async def add_to_stream(value: str) -> None:
        await redis_client.xadd(stream, {"value": value})

    server = Brokercast(settings).start()
    port = server.port
    try:
        await server.wait_ready()
        async with chromium(tmp_path / "profile") as browser:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            state = page.locator("#state")
            await expect(state).to_have_attribute("data-state", "open")

            # Every channel: events from Kafka and Redis appear with channel,
            # position and age.
            await produce_to_kafka(
                kafka_broker.bootstrap_servers, topic, [b"order-1", b"order-2"]
            )
            await add_to_stream("reading-1")
            await add_to_stream("reading-2")
            await expect(page.locator("#received")).to_have_text("4")
            assert await shown(page, topic) == ["order-1", "order-2"]
            assert await shown(page, stream) == ["reading-1", "reading-2"]
            first_row = page.locator(f"#events tr[data-channel='{topic}']").last
            await expect(first_row.locator("td.position")).to_have_text("0:0")
            await expect(first_row.locator("td.age")).not_to_have_text("\u2013")
            await page.screenshot(path=str(tmp_path / "demo-page.png"))
            if os.environ.get("BROKERCAST_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(tmp_path / "demo-page.png", SCREENSHOT)

            # One channel: after Clear and Watch, only the stream's events show.
            await page.click("#clear")
            await page.fill("#channel", stream)
            await page.click("#watch")
            await expect(state).to_have_attribute("data-state", "open")
            await wait_for(
                lambda: server.metric("brokercast_clients_connected") == 1,
                seconds(10),
                "the page's old connection closed",
            )
            async with connect(f"ws://127.0.0.1:{port}/") as everything:
                await wait_for(
                    lambda: server.metric("brokercast_clients_connected") == 2,
                    seconds(10),
                    "watcher connected",
                )
                await produce_to_kafka(
                    kafka_broker.bootstrap_servers, topic, [b"order-3"]
                )
                # The hub broadcasts in queue order, so once the watcher has
                # the Kafka event, the page would have had it before the next.
                await receive(everything, 1, seconds(20))
                await add_to_stream("reading-3")
                await receive(everything, 1, seconds(20))
            await expect(page.locator("#received")).to_have_text("1")
            assert await shown(page, stream) == ["reading-3"]
            assert await shown(page, topic) == []

            # Pause: events are counted as skipped, not shown.
            await page.click("#pause")
            await add_to_stream("reading-4")
            await expect(page.locator("#skipped")).to_have_text("1")
            assert await shown(page, stream) == ["reading-3"]
            await page.click("#pause")

            # Restart on the same port: the page reconnects by itself.
            assert await server.terminate() == 0
            await expect(state).to_have_attribute("data-state", "waiting")
            server = Brokercast({**settings, "port": port})
            server.port = port  # the helper picked a free port of its own
            server.start()
            await server.wait_ready()
            await expect(state).to_have_attribute(
                "data-state", "open", timeout=seconds(30) * 1000
            )
            await add_to_stream("reading-5")
            await expect(page.locator("#shown")).to_have_text("2")
            assert await shown(page, stream) == ["reading-3", "reading-5"]
    finally:
        await redis_client.aclose()
        if server.returncode() is None:
            await server.terminate()
        server.__exit__(None, None, None)


@contextmanager
def foreign_site(websocket_url: str, port: int = 0) -> Iterator[str]:
    """Serve a page on another loopback port that opens ``websocket_url``."""
    page = (
        "<!doctype html><title>pending</title><script>"
        f"const socket = new WebSocket({websocket_url!r});"
        "socket.onopen = () => { document.title = 'open'; };"
        "socket.onclose = (e) => { if (document.title !== 'open') "
        "document.title = 'refused ' + e.code; };"
        "</script>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()


async def test_page_from_other_origin_refused(tmp_path: Path) -> None:
    async with running_edge() as edge, chromium(tmp_path / "profile") as browser:
        with foreign_site(edge.ws_url + "/") as site:
            page = await browser.new_page()
            await page.goto(site + "/")
            await expect(page).to_have_title("refused 1006")
        assert edge.rejected("origin") == 1
        assert edge.app.hub.client_count == 0


async def test_page_from_listed_origin_accepted(tmp_path: Path) -> None:
    site_port = free_port()
    allowed = (f"http://127.0.0.1:{site_port}",)
    async with (
        running_edge(allowed_origins=allowed) as edge,
        chromium(tmp_path / "profile") as browser,
    ):
        with foreign_site(edge.ws_url + "/", site_port) as site:
            page = await browser.new_page()
            await page.goto(site + "/")
            await expect(page).to_have_title("open")
        assert edge.rejected("origin") == 0
