"""Origin matching, token checks, rate limiting and log redaction, without I/O."""

from __future__ import annotations

import logging

import pytest
from websockets.datastructures import Headers

from service.auth import (
    Authenticator,
    AuthError,
    AuthSettings,
    sign_hs256,
    token_from_request,
)
from service.edge import AddressRateLimiter, Origin, OriginPolicy, parse_origin
from service.redact import RedactingFormatter, redact
from service.server import channel_of
from tests.edge.edge_helpers import JWT_AUTH, JWT_SECRET, make_jwt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://a.test", Origin("http", "a.test", 80)),
        ("HTTPS://A.Test:8443", Origin("https", "a.test", 8443)),
        ("http://[::1]:3232", Origin("http", "[::1]", 3232)),
        ("chrome-extension://abc", Origin("chrome-extension", "abc", None)),
        ("null", None),
        ("http://a.test/", None),
        ("http://user@a.test", None),
        ("http://a.test:0", None),
        ("http://a.test:65536", None),
        ("", None),
    ],
)
def test_parse_origin(text: str, expected: Origin | None) -> None:
    assert parse_origin(text) == expected


@pytest.mark.parametrize(
    ("origin", "host", "expected"),
    [
        ("http://127.0.0.1:3232", "127.0.0.1:3232", True),
        ("https://events.test", "events.test", True),
        ("https://events.test", "events.test:443", True),
        ("http://events.test", "events.test:443", False),
        ("http://127.0.0.1:3233", "127.0.0.1:3232", False),
        ("http://evil.test:3232", "127.0.0.1:3232", False),
        ("null", "127.0.0.1:3232", False),
    ],
)
def test_same_host_policy(origin: str, host: str, expected: bool) -> None:
    policy = OriginPolicy((), allow_missing=True)
    assert policy.allows([origin], [host]) is expected


def test_same_host_policy_needs_one_host() -> None:
    policy = OriginPolicy((), allow_missing=True)
    assert policy.allows(["http://a.test"], []) is False
    assert policy.allows(["http://a.test"], ["a.test", "a.test"]) is False


def test_wildcard_needs_a_subdomain() -> None:
    policy = OriginPolicy(["https://*.example.com"], allow_missing=False)
    assert policy.allows(["https://a.example.com"], []) is True
    assert policy.allows(["https://example.com"], []) is False
    assert policy.allows(["https://a.example.com.evil.test"], []) is False
    assert policy.allows(["https://aexample.com"], []) is False
    assert policy.allows([], []) is False


def test_rate_limiter_refills() -> None:
    now = [100.0]
    limiter = AddressRateLimiter(2.0, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.allow("b") is True
    now[0] += 0.5
    assert limiter.allow("a") is True
    assert limiter.allow("a") is False


def test_rate_limiter_forgets_quiet_addresses() -> None:
    now = [0.0]
    limiter = AddressRateLimiter(1.0, clock=lambda: now[0])
    for number in range(100):
        limiter.allow(f"10.0.0.{number}")
    now[0] += 5.0
    limiter.allow("10.0.1.1")
    assert len(limiter._buckets) == 1


def test_token_places() -> None:
    assert token_from_request("/?token=q", Headers()) == "q"
    headers = Headers([("Sec-WebSocket-Protocol", "brokercast, bearer.p")])
    assert token_from_request("/?token=q", headers) == "p"
    headers = Headers([("Authorization", "Bearer h")])
    assert token_from_request("/?token=q", headers) == "h"
    assert token_from_request("/orders", Headers()) is None


def test_jwt_accepted_with_channels() -> None:
    grant = Authenticator(JWT_AUTH).check(make_jwt(channels=["a", "b"]))
    assert grant.channels == frozenset({"a", "b"})
    assert grant.allows("a") is True
    assert grant.allows("c") is False
    assert grant.allows(None) is False
    assert grant.expires_at is not None


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b'{"alg":"none"}', "token algorithm is not HS256"),
        (b'{"alg":"HS512"}', "token algorithm is not HS256"),
        (b'{"alg":"HS256","crit":["x"]}', "token has unsupported critical headers"),
        (b"[]", "token algorithm is not HS256"),
    ],
)
def test_jwt_header_rejected(header: bytes, reason: str) -> None:
    import base64

    good = make_jwt().split(".")
    encoded = base64.urlsafe_b64encode(header).rstrip(b"=").decode()
    token = ".".join([encoded, good[1], good[2]])
    with pytest.raises(AuthError) as error:
        Authenticator(JWT_AUTH).check(token)
    assert str(error.value) == reason


def test_jwt_without_exp_rejected() -> None:
    claims = {"iss": JWT_AUTH.issuer, "aud": JWT_AUTH.audience}
    with pytest.raises(AuthError) as error:
        Authenticator(JWT_AUTH).check(sign_hs256(claims, JWT_SECRET.encode()))
    assert str(error.value) == "token has no exp claim"


def test_jwt_leeway_applies() -> None:
    settings = AuthSettings(
        mode="jwt", secret=JWT_SECRET, issuer="i", audience="a", leeway=30
    )
    token = sign_hs256({"iss": "i", "aud": "a", "exp": 1000}, JWT_SECRET.encode())
    assert Authenticator(settings, clock=lambda: 1029.0).check(token).expires_at == (
        1030.0
    )
    with pytest.raises(AuthError):
        Authenticator(settings, clock=lambda: 1031.0).check(token)


def test_shared_token_compared_exactly() -> None:
    settings = AuthSettings(mode="token", secret="s" * 32)
    authenticator = Authenticator(settings)
    assert authenticator.check("s" * 32).channels is None
    for wrong in ("s" * 31, "s" * 33, "S" * 32, "\udcff" * 32):
        with pytest.raises(AuthError):
            authenticator.check(wrong)


@pytest.mark.parametrize(
    ("path", "channel"),
    [
        ("/", None),
        ("/?token=x", None),
        ("/orders", "orders"),
        ("/orders?token=x", "orders"),
        ("/a%2Fb", "a/b"),
        ("/a/b", "a/b"),
        ("//[", "/["),
    ],
)
def test_channel_of(path: str, channel: str | None) -> None:
    assert channel_of(path) == channel


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("< GET /orders?token=abc HTTP/1.1", "< GET /orders?[redacted] HTTP/1.1"),
        (
            "< Sec-WebSocket-Protocol: brokercast, bearer.abc.def",
            "< Sec-WebSocket-Protocol: brokercast, bearer.[redacted]",
        ),
        ("< Authorization: Bearer abc", "< Authorization: [redacted]"),
        ("path='/x?a=1&token=abc'", "path='/x?[redacted]'"),
        ("token=abc", "token=[redacted]"),
        ("client connected channel=orders", "client connected channel=orders"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_redacting_formatter_covers_websockets_logger() -> None:
    record = logging.LogRecord(
        "websockets.server",
        logging.DEBUG,
        __file__,
        1,
        "< %s %s %s",
        ("GET", "/orders?token=secret-value", "HTTP/1.1"),
        None,
    )
    line = RedactingFormatter(logging.Formatter("%(message)s")).format(record)
    assert line == "< GET /orders?[redacted] HTTP/1.1"
