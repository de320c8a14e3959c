"""The edge of a running server: origins, tokens, limits, TLS and pages."""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from service.server import PAGE_HEADERS
from tests.edge.edge_helpers import (
    JWT_AUTH,
    SHARED_TOKEN,
    TOKEN_AUTH,
    make_jwt,
    raw_request,
    running_edge,
)
from tests.helpers import http_get, receive, seconds, wait_for


def response_headers(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(response.headers.items())


async def handshake_status(url: str, **options: object) -> int:
    """Return 101 when the handshake succeeds, else the HTTP status."""
    try:
        async with connect(url, open_timeout=seconds(5), **options):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as error:
        return error.response.status_code


async def test_same_host_origin_accepted_by_default() -> None:
    async with running_edge() as edge:
        assert await handshake_status(edge.ws_url, origin=edge.origin) == 101
        assert edge.rejected("origin") == 0


async def test_other_origin_rejected_with_403() -> None:
    async with running_edge() as edge:
        status = await handshake_status(edge.ws_url, origin="http://evil.test")
        assert status == 403
        assert edge.rejected("origin") == 1


async def test_other_port_is_another_origin() -> None:
    async with running_edge() as edge:
        origin = f"http://127.0.0.1:{edge.port + 1}"
        assert await handshake_status(edge.ws_url, origin=origin) == 403


async def test_missing_origin_allowed_by_default() -> None:
    async with running_edge() as edge:
        assert await handshake_status(edge.ws_url) == 101


async def test_missing_origin_rejected_when_configured() -> None:
    async with running_edge(allow_missing_origin=False) as edge:
        assert await handshake_status(edge.ws_url) == 403
        assert edge.rejected("origin") == 1


async def test_two_origin_headers_rejected() -> None:
    async with running_edge() as edge:
        lines = [
            "GET / HTTP/1.1",
            f"Host: 127.0.0.1:{edge.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            f"Origin: {edge.origin}",
            f"Origin: {edge.origin}",
        ]
        request = "\r\n".join(lines) + "\r\n\r\n"
        response = await raw_request(edge.port, request.encode())
        assert response.startswith(b"HTTP/1.1 403 ")


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://app.example.com", 101),
        ("https://a.b.example.com", 101),
        ("https://example.com", 403),
        ("http://app.example.com", 403),
        ("https://app.example.com:8443", 403),
        ("https://evil-example.com", 403),
        ("http://localhost:9000", 101),
    ],
)
async def test_allowed_origins_list(origin: str, expected: int) -> None:
    allowed = ("https://*.example.com", "http://localhost:9000")
    async with running_edge(allowed_origins=allowed) as edge:
        assert await handshake_status(edge.ws_url, origin=origin) == expected


async def test_star_allows_any_origin() -> None:
    async with running_edge(allowed_origins=("*",)) as edge:
        assert await handshake_status(edge.ws_url, origin="http://evil.test") == 101


async def test_token_missing_gets_401() -> None:
    async with running_edge(auth=TOKEN_AUTH) as edge:
        try:
            async with connect(edge.ws_url):
                pytest.fail("handshake without a token succeeded")
        except InvalidStatus as error:
            assert error.response.status_code == 401
            assert error.response.headers["WWW-Authenticate"].startswith("Bearer")
        assert edge.rejected("unauthorized") == 1


async def test_token_wrong_gets_401() -> None:
    async with running_edge(auth=TOKEN_AUTH) as edge:
        url = edge.ws_url + "/?token=not-the-token"
        assert await handshake_status(url) == 401


async def test_token_in_query_accepted() -> None:
    async with running_edge(auth=TOKEN_AUTH) as edge:
        assert await handshake_status(edge.ws_url + f"/?token={SHARED_TOKEN}") == 101


async def test_token_in_authorization_header_accepted() -> None:
    async with running_edge(auth=TOKEN_AUTH) as edge:
        headers = {"Authorization": f"Bearer {SHARED_TOKEN}"}
        assert await handshake_status(edge.ws_url, additional_headers=headers) == 101


async def test_token_subprotocol_selects_brokercast() -> None:
    """The server answers with ``brokercast`` and never echoes the token."""
    async with running_edge(auth=TOKEN_AUTH) as edge:
        offered = ["brokercast", f"bearer.{SHARED_TOKEN}"]
        async with connect(edge.ws_url, subprotocols=offered) as client:  # type: ignore[arg-type]
            assert client.subprotocol == "brokercast"
            assert client.response is not None
            header = client.response.headers["Sec-WebSocket-Protocol"]
            assert header == "brokercast"


async def test_subprotocol_absent_still_accepted() -> None:
    async with running_edge() as edge, connect(edge.ws_url) as client:
        assert client.subprotocol is None


async def test_jwt_valid_receives_events() -> None:
    async with running_edge(auth=JWT_AUTH) as edge:
        token = make_jwt()
        async with connect(edge.ws_url + f"/orders?token={token}") as client:
            await wait_for(
                lambda: edge.app.hub.client_count == 1, seconds(5), "client added"
            )
            await edge.publish("orders", b"first")
            assert await receive(client, 1, seconds(5)) == ["first"]


@pytest.mark.parametrize(
    ("token_claims", "expected"),
    [
        ({"expires_in": -5.0}, 401),
        ({"iss": "https://other.test"}, 401),
        ({"aud": "other"}, 401),
        ({"aud": ["other", "brokercast-tests"]}, 101),
        ({"nbf": time.time() + 3600}, 401),
        ({"channels": "orders"}, 401),
    ],
)
async def test_jwt_claims_checked(
    token_claims: dict[str, object], expected: int
) -> None:
    async with running_edge(auth=JWT_AUTH) as edge:
        token = make_jwt(**token_claims)  # type: ignore[arg-type]
        assert (
            await handshake_status(edge.ws_url + f"/orders?token={token}") == expected
        )


async def test_jwt_signed_with_other_key_rejected() -> None:
    from service.auth import sign_hs256

    async with running_edge(auth=JWT_AUTH) as edge:
        claims = {"iss": JWT_AUTH.issuer, "aud": JWT_AUTH.audience, "exp": 2e9}
        token = sign_hs256(claims, b"another-key-of-at-least-32-characters")
        assert await handshake_status(edge.ws_url + f"/?token={token}") == 401


async def test_jwt_channels_claim_limits_channels() -> None:
    async with running_edge(auth=JWT_AUTH) as edge:
        token = make_jwt(channels=["orders"])
        assert await handshake_status(edge.ws_url + f"/orders?token={token}") == 101
        assert await handshake_status(edge.ws_url + f"/sensors?token={token}") == 403
        assert await handshake_status(edge.ws_url + f"/?token={token}") == 403
        assert edge.rejected("forbidden_channel") == 2


async def test_jwt_expiry_closes_with_1008() -> None:
    async with running_edge(auth=JWT_AUTH) as edge:
        token = make_jwt(expires_in=seconds(1))
        async with connect(edge.ws_url + f"/?token={token}") as client:
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(seconds(10)):
                    await client.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
            assert closed.value.rcvd.reason == "token expired"
        await wait_for(
            lambda: edge.disconnected("token_expired") == 1,
            seconds(5),
            "expiry counted",
        )


async def test_max_connections_gets_503() -> None:
    async with running_edge(max_connections=2) as edge:
        async with connect(edge.ws_url), connect(edge.ws_url):
            assert await handshake_status(edge.ws_url) == 503
            assert edge.rejected("max_connections") == 1
        await wait_for(
            lambda: edge.app.hub.client_count == 0, seconds(5), "clients removed"
        )
        assert await handshake_status(edge.ws_url) == 101


async def test_rate_limit_per_address_gets_429() -> None:
    async with running_edge(max_connection_rate_per_address=2.0) as edge:
        statuses = [await handshake_status(edge.ws_url) for _ in range(3)]
        # Two tokens in the bucket; the third handshake within the same
        # fraction of a second finds it empty.
        assert statuses[:2] == [101, 101]
        assert statuses[2] == 429
        assert edge.rejected("rate_limited") == 1


async def test_handshake_timeout_closes_silent_client() -> None:
    async with running_edge(open_timeout=0.5) as edge:
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        began = time.monotonic()
        async with asyncio.timeout(seconds(10)):
            data = await reader.read()
        writer.close()
        assert data == b""
        assert time.monotonic() - began < seconds(5)


async def test_tls_serves_wss(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert_file = tmp_path / "server.pem"
    key_file = tmp_path / "server.key"
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in certificate.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_file), append=True)
    certificate.private_key_pem.write_to_path(str(key_file))
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async with running_edge(
        tls_cert_file=str(cert_file), tls_key_file=str(key_file)
    ) as edge:
        url = f"wss://127.0.0.1:{edge.port}/orders"
        async with connect(url, ssl=client_context) as client:
            await wait_for(
                lambda: edge.app.hub.client_count == 1, seconds(5), "client added"
            )
            await edge.publish("orders", b"secret event")
            assert await receive(client, 1, seconds(5)) == ["secret event"]
        # Plain websocket on the TLS port fails the handshake.
        with pytest.raises(InvalidMessage):
            async with connect(f"ws://127.0.0.1:{edge.port}/", open_timeout=5):
                pass


async def test_demo_page_served_on_plain_get() -> None:
    async with running_edge() as edge:
        url = f"http://127.0.0.1:{edge.port}"
        status, body = await asyncio.to_thread(http_get, url + "/")
        assert status == 200
        assert b"<title>brokercast</title>" in body
        headers = await asyncio.to_thread(response_headers, url + "/")
        for name, value in PAGE_HEADERS:
            assert headers[name] == value
        status, body = await asyncio.to_thread(http_get, url + "/client.js")
        assert status == 200
        assert b"BrokercastClient" in body
        assert (await asyncio.to_thread(http_get, url + "/orders"))[0] == 426


async def test_demo_page_off_gives_426() -> None:
    async with running_edge(demo_page=False) as edge:
        url = f"http://127.0.0.1:{edge.port}"
        assert (await asyncio.to_thread(http_get, url + "/"))[0] == 426
        assert (await asyncio.to_thread(http_get, url + "/client.js"))[0] == 426
        assert await handshake_status(edge.ws_url + "/") == 101


async def test_websocket_on_page_path_subscribes() -> None:
    """A handshake on /client.js subscribes to the channel client.js."""
    async with (
        running_edge() as edge,
        connect(edge.ws_url + "/client.js") as client,
    ):
        await wait_for(
            lambda: edge.app.hub.client_count == 1, seconds(5), "client added"
        )
        await edge.publish("client.js", b"x")
        assert await receive(client, 1, seconds(5)) == ["x"]


async def test_health_endpoints_unchanged_with_auth() -> None:
    async with running_edge(auth=JWT_AUTH, allow_missing_origin=False) as edge:
        url = f"http://127.0.0.1:{edge.port}"
        assert (await asyncio.to_thread(http_get, url + "/healthz"))[0] == 200
        assert (await asyncio.to_thread(http_get, url + "/readyz"))[0] == 200
        assert (await asyncio.to_thread(http_get, url + "/metrics"))[0] == 200
