"""Fuzz every parser of untrusted input with hypothesis, bounded in time.

Units: request paths, tokens, origins and codecs get random input directly.
Live: a brokercast child process gets random handshake requests and random
frames on open connections, and must answer each with a well-formed HTTP
response or a close, keep serving ``/healthz`` and log no traceback.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.datastructures import Headers

from service.auth import (
    Authenticator,
    AuthError,
    AuthSettings,
    sign_hs256,
    token_from_request,
)
from service.codecs import make_codec
from service.edge import OriginPolicy, check_origin_pattern, parse_origin
from service.events import Event
from service.redact import redact
from service.server import channel_of
from tests.edge.edge_helpers import JWT_AUTH, JWT_SECRET, SHARED_TOKEN
from tests.helpers import Brokercast, http_get

#: Examples per unit target and per live target; raise with the variable to
#: fuzz longer locally, e.g. BROKERCAST_FUZZ_EXAMPLES=20000.
UNIT_EXAMPLES = int(os.environ.get("BROKERCAST_FUZZ_EXAMPLES", "1000"))
LIVE_EXAMPLES = max(50, UNIT_EXAMPLES // 3)

unit = settings(max_examples=UNIT_EXAMPLES, deadline=None, database=None)
live = settings(
    max_examples=LIVE_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Printable ASCII that an HTTP request line and header value may carry.
http_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=200
)
header_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200
)


@unit
@given(st.text(max_size=300))
def test_fuzz_channel_of(path: str) -> None:
    channel = channel_of(path)
    assert channel is None or isinstance(channel, str)
    if channel is not None and "?" not in path:
        assert channel != ""


@unit
@given(
    path=st.text(max_size=200),
    protocols=st.lists(header_value, max_size=3),
    authorization=st.lists(header_value, max_size=2),
)
def test_fuzz_token_places(
    path: str, protocols: list[str], authorization: list[str]
) -> None:
    headers = Headers()
    for value in protocols:
        headers["Sec-WebSocket-Protocol"] = value
    for value in authorization:
        headers["Authorization"] = value
    token = token_from_request(path, headers)
    assert token is None or isinstance(token, str)


def _jwt_parts() -> st.SearchStrategy[str]:
    json_values = st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=10,
    )
    claims = st.fixed_dictionaries(
        {},
        optional={
            "iss": st.sampled_from([JWT_AUTH.issuer, "x"]) | json_values,
            "aud": st.sampled_from([JWT_AUTH.audience, [JWT_AUTH.audience]])
            | json_values,
            "exp": st.floats(allow_nan=False) | st.integers() | json_values,
            "nbf": st.floats(allow_nan=False) | st.integers() | json_values,
            "channels": st.lists(st.text(max_size=10), max_size=3) | json_values,
        },
    )
    signed = claims.map(
        lambda body: (
            sign_hs256(body, JWT_SECRET.encode()) if _serialisable(body) else "a.b.c"
        )
    )
    return (
        signed
        | st.text(max_size=300)
        | st.lists(
            st.text(alphabet="ABCabc012-_=.+/", max_size=40), min_size=1, max_size=4
        ).map(".".join)
    )


def _serialisable(body: object) -> bool:
    try:
        orjson.dumps(body)
    except TypeError:
        return False
    return True


#: Every message AuthError carries in jwt mode.
AUTH_MESSAGES = frozenset(
    {
        "missing token",
        "token too long",
        "token has no exp claim",
        "token expired",
        "token not valid yet",
        "token has the wrong issuer",
        "token has the wrong audience",
        "token is not a JWT",
        "token algorithm is not HS256",
        "token has unsupported critical headers",
        "invalid token signature",
        "token claims are not a JSON object",
        "token is not base64url",
        "token is not valid JSON",
        "token exp claim is not a number",
        "token nbf claim is not a number",
        "token channels claim is not a list of names",
    }
)


@unit
@given(token=_jwt_parts())
def test_fuzz_jwt_check(token: str) -> None:
    """Any token is either accepted with a grant or raises AuthError."""
    try:
        grant = Authenticator(JWT_AUTH).check(token)
    except AuthError as error:
        # A fixed message, so no part of the token can reach a log line.
        assert str(error) in AUTH_MESSAGES
        return
    assert grant.expires_at is not None
    assert grant.expires_at >= time.time() - 1


@unit
@given(token=st.text(max_size=100))
def test_fuzz_shared_token_check(token: str) -> None:
    authenticator = Authenticator(AuthSettings(mode="token", secret=SHARED_TOKEN))
    try:
        authenticator.check(token)
    except AuthError:
        assert token != SHARED_TOKEN
    else:
        assert token == SHARED_TOKEN


@unit
@given(
    entries=st.lists(http_text | st.just("https://*.example.com"), max_size=4),
    origins=st.lists(header_value, max_size=2),
    hosts=st.lists(header_value, max_size=2),
)
def test_fuzz_origin_policy(
    entries: list[str], origins: list[str], hosts: list[str]
) -> None:
    valid = [entry for entry in entries if check_origin_pattern(entry) is None]
    policy = OriginPolicy(valid, allow_missing=False)
    allowed = policy.allows(origins, hosts)
    assert isinstance(allowed, bool)
    if allowed and "*" not in valid:
        assert len(origins) == 1
        assert parse_origin(origins[0].strip()) is not None


@unit
@given(st.text(max_size=300))
def test_fuzz_redact_keeps_no_query(line: str) -> None:
    cleaned = redact(line + " /p?token=secret")
    assert "secret" not in cleaned.rsplit(" ", 1)[-1]


@unit
@given(
    payload=st.binary(max_size=500),
    key=st.none() | st.binary(max_size=40),
    headers=st.dictionaries(st.text(max_size=10), st.binary(max_size=40), max_size=3),
    channel=st.text(max_size=30),
    position=st.text(max_size=30),
    timestamp=st.none() | st.integers(min_value=0, max_value=2**53),
)
def test_fuzz_codecs(
    payload: bytes,
    key: bytes | None,
    headers: dict[str, bytes],
    channel: str,
    position: str,
    timestamp: int | None,
) -> None:
    event = Event("fuzz", channel, position, payload, key, timestamp, headers)

    plain = make_codec("plain").encode(event)
    plain.decode("utf-8")  # valid UTF-8 or it raises
    if _is_utf8(payload):
        assert plain == payload

    assert make_codec("raw").encode(event) == payload

    json_codec = make_codec("json")
    envelope = orjson.loads(json_codec.encode(event))
    assert envelope["channel"] == channel
    assert envelope["position"] == position
    assert envelope["timestamp"] == timestamp


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- live server -----------------------------------------------------------


@pytest.fixture(scope="module")
def live_server() -> Iterator[Brokercast]:
    """brokercast with JWT auth, the json codec and no rate limit."""
    settings = {
        "codec": "json",
        "max_client_message_bytes": 1024,
        "open_timeout": 2,
        "auth": {
            "mode": "jwt",
            "secret": JWT_SECRET,
            "issuer": JWT_AUTH.issuer,
            "audience": JWT_AUTH.audience,
        },
    }
    with Brokercast(settings) as server:
        deadline = time.monotonic() + 30
        while True:
            try:
                if server.http("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert server.returncode() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        yield server
        log = server.log()
        assert "Traceback" not in log, log
        assert "failed" not in log, log
        assert server.returncode() is None


def _exchange(port: int, data: bytes, read_timeout: float) -> bytes:
    """Send ``data``; return what arrives until the server closes or goes quiet.

    The write side stays open, because websockets drops a handshake whose
    client half-closes before the response is sent.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        return _read_until_quiet(sock, read_timeout)


def _read_until_quiet(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


#: A masked Close frame with code 1000, so a well-behaved exchange ends at once.
CLOSE_FRAME = bytes([0x88, 0x82, 0, 0, 0, 0]) + struct.pack("!H", 1000)


def _still_healthy(server: Brokercast) -> bool:
    return http_get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200


@live
@given(
    path=http_text,
    upgrade=st.booleans(),
    extra=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "Origin",
                    "Host",
                    "Sec-WebSocket-Protocol",
                    "Authorization",
                    "Upgrade",
                    "Sec-WebSocket-Version",
                    "X-Other",
                ]
            ),
            header_value,
        ),
        max_size=4,
    ),
)
def test_fuzz_live_handshake(
    live_server: Brokercast,
    path: str,
    upgrade: bool,
    extra: list[tuple[str, str]],
) -> None:
    """Random request targets and headers get a well-formed, non-5xx answer."""
    lines = [f"GET /{path} HTTP/1.1", f"Host: 127.0.0.1:{live_server.port}"]
    if upgrade:
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
    lines += [f"{name}: {value}" for name, value in extra]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    response = _exchange(live_server.port, request, read_timeout=0.3)
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    status = int(response[9:12])
    assert status in {101, 200, 400, 401, 403, 404, 405, 426, 429, 503}, response
    if not upgrade:
        assert status != 101
    assert _still_healthy(live_server)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One websocket frame with random flags, opcode, mask and length field."""
    first = (
        (draw(st.booleans()) << 7)
        | (draw(st.integers(0, 7)) << 4)
        | draw(st.integers(0, 15))
    )
    payload = draw(st.binary(max_size=200))
    masked = draw(st.booleans())
    declared = draw(st.sampled_from(["exact", "short", "long"]))
    length = len(payload) if declared == "exact" else draw(st.integers(0, 2**16))
    if length < 126:
        header = struct.pack("!BB", first, (masked << 7) | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, (masked << 7) | 126, length)
    else:
        header = struct.pack("!BBQ", first, (masked << 7) | 127, length)
    if not masked:
        return header + payload
    mask = draw(st.binary(min_size=4, max_size=4))
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + mask + body


@live
@given(sequence=st.lists(frames(), min_size=1, max_size=5), junk=st.binary(max_size=50))
def test_fuzz_live_frames(
    live_server: Brokercast, sequence: list[bytes], junk: bytes
) -> None:
    """Random frames from an authenticated client never hurt the server."""
    from tests.edge.edge_helpers import make_jwt

    request = (
        f"GET /fuzz?token={make_jwt()} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{live_server.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    # RFC 6455 4.1: a client sends frames only after the 101 response.
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
        sock.sendall(request)
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            assert chunk, response
            response += chunk
        assert response.startswith(b"HTTP/1.1 101 "), response[:200]
        sock.sendall(b"".join(sequence) + junk + CLOSE_FRAME)
        _read_until_quiet(sock, 0.3)
    assert _still_healthy(live_server)
