"""Server defects: channel routing and handshakes that log errors."""

from __future__ import annotations

import socket

from service.server import channel_of
from tests.helpers import Brokercast, seconds, wait_for


def test_double_slash_path_is_channel() -> None:
    """``ws://host:port//orders`` asks for the channel ``/orders``.

    Today ``urlsplit`` reads ``//orders`` as a network location, the path is
    empty and the client is subscribed to every channel instead.
    """
    assert channel_of("//orders") == "/orders"


async def test_pipelined_probe_logs_no_error() -> None:
    """Two pipelined ``GET /healthz`` requests on one connection log no ERROR.

    websockets 17.4 parses the second request as frames and fails internally,
    so no reply comes back; brokercast turns its ERROR record into a warning and
    keeps serving.
    """
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with Brokercast() as bc:
        await bc.wait_listening()
        with socket.create_connection(("127.0.0.1", bc.port), timeout=5) as sock:
            sock.sendall(request + request)
            while sock.recv(65536):
                pass
        assert bc.http("/healthz") == (200, b"ok\n")
        assert await bc.terminate() == 0
        await wait_for(lambda: "brokercast stopped" in bc.log(), seconds(5), "stop")
        assert " ERROR " not in bc.log()
        assert "Traceback" not in bc.log()
