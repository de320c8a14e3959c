"""Token authentication of websocket handshakes.

Two modes besides ``none``: ``token`` compares the presented token with one
shared secret, and ``jwt`` accepts a JSON Web Token signed with HMAC-SHA256
(HS256) whose issuer, audience and expiry are checked. A JWT may carry a
``channels`` claim, a list of channel names, which limits the client to those
channels.

The JWT check uses :mod:`hmac`, :mod:`hashlib` and :mod:`base64` rather than
a library, because brokercast accepts exactly one algorithm. Fixing it in code
removes the algorithm-confusion cases (``none``, RS256 keys used as HMAC
secrets) instead of configuring them away, and adds no dependency.

Clients present the token in one of three places, checked in this order: the
``Sec-WebSocket-Protocol`` header as ``bearer.<token>`` next to the real
subprotocol ``brokercast`` (the only header a browser can set on a websocket),
an ``Authorization: Bearer <token>`` header, or the ``token`` query parameter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_subprotocol

from service.errors import BrokercastError

AUTH_MODES = ("none", "token", "jwt")

#: The subprotocol brokercast speaks; the server selects it whenever offered.
SUBPROTOCOL = "brokercast"
#: Prefix of the offered subprotocol that carries the token.
BEARER_PREFIX = "bearer."

#: Maximum token length in characters. Longer tokens are rejected before any
#: decoding, so a huge header costs no base64 or JSON work.
MAX_TOKEN_CHARS = 8192

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class AuthError(BrokercastError):
    """A handshake presented no token or an invalid one.

    The message states the cause in a few words and never contains the token,
    so it is safe to log.
    """


@dataclass(frozen=True)
class AuthSettings:
    """The ``auth`` table: how clients prove they may connect."""

    #: ``none``, ``token`` (one shared secret) or ``jwt`` (HS256 tokens).
    mode: str = "none"
    #: The shared token in ``token`` mode, the HMAC key in ``jwt`` mode.
    secret: str = field(default="", repr=False)
    #: Required ``iss`` claim in ``jwt`` mode.
    issuer: str | None = None
    #: Required ``aud`` claim (or one of its entries) in ``jwt`` mode.
    audience: str | None = None
    #: Seconds of clock difference tolerated when checking ``exp`` and ``nbf``.
    leeway: float = 10.0


@dataclass(frozen=True)
class Grant:
    """Permissions of one authenticated client."""

    #: Channels it may subscribe to; ``None`` means every channel, ``/`` too.
    channels: frozenset[str] | None = None
    #: Unix time in seconds after which the connection is closed with 1008;
    #: ``None`` means never.
    expires_at: float | None = None

    def allows(self, channel: str | None) -> bool:
        """Return whether the client may subscribe to ``channel`` (``None``: all)."""
        if self.channels is None:
            return True
        return channel is not None and channel in self.channels


#: The grant of every client when authentication is off.
OPEN_GRANT = Grant()


def offered_subprotocols(headers: Headers) -> list[str]:
    """Return the subprotocols a handshake offers; ``[]`` when the header is bad."""
    offered: list[str] = []
    try:
        for value in headers.get_all("Sec-WebSocket-Protocol"):
            offered.extend(parse_subprotocol(value))
    except InvalidHeader:
        return []
    return offered


def token_from_request(path: str, headers: Headers) -> str | None:
    """Return the token a handshake presents, or ``None`` when there is none."""
    for protocol in offered_subprotocols(headers):
        if protocol.lower().startswith(BEARER_PREFIX):
            return protocol[len(BEARER_PREFIX) :]

    authorization = headers.get_all("Authorization")
    if len(authorization) == 1:
        scheme, _, credentials = authorization[0].strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()

    query = path.partition("?")[2]
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "token":
            return value
    return None


class Authenticator:
    """Checks the token of each handshake against the ``auth`` settings."""

    def __init__(
        self, settings: AuthSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._secret = settings.secret.encode("utf-8")

    @property
    def enabled(self) -> bool:
        """Return whether handshakes need a token."""
        return self.settings.mode != "none"

    def check(self, token: str | None) -> Grant:
        """Return what ``token`` allows; raise :class:`AuthError` when invalid."""
        mode = self.settings.mode
        if mode == "none":
            return OPEN_GRANT
        if not token:
            raise AuthError("missing token")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("token too long")
        if mode == "token":
            return self._check_shared(token)
        return self._check_jwt(token)

    def _check_shared(self, token: str) -> Grant:
        presented = token.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(presented, self._secret):
            raise AuthError("invalid token")
        return OPEN_GRANT

    def _check_jwt(self, token: str) -> Grant:
        settings = self.settings
        claims = verify_hs256(token, self._secret)
        now = self.clock()
        leeway = settings.leeway

        expiry = _number_claim(claims, "exp")
        if expiry is None:
            raise AuthError("token has no exp claim")
        if now > expiry + leeway:
            raise AuthError("token expired")
        not_before = _number_claim(claims, "nbf")
        if not_before is not None and now + leeway < not_before:
            raise AuthError("token not valid yet")

        if claims.get("iss") != settings.issuer:
            raise AuthError("token has the wrong issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if settings.audience not in audiences:
            raise AuthError("token has the wrong audience")

        return Grant(channels=_channels_claim(claims), expires_at=expiry + leeway)


def verify_hs256(token: str, secret: bytes) -> dict[str, Any]:
    """Return the claims of an HS256 JWT whose signature matches ``secret``.

    Only the signature and the structure are checked here; the caller checks
    the claims. Raises :class:`AuthError` for anything else.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("token is not a JWT")
    header_part, claims_part, signature_part = parts

    header = _decode_json(header_part)
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise AuthError("token algorithm is not HS256")
    # RFC 7515: a "crit" header names extensions the receiver must understand.
    if "crit" in header:
        raise AuthError("token has unsupported critical headers")

    signed = f"{header_part}.{claims_part}".encode("ascii")
    expected = hmac.new(secret, signed, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _decode_base64url(signature_part)):
        raise AuthError("invalid token signature")

    claims = _decode_json(claims_part)
    if not isinstance(claims, dict):
        raise AuthError("token claims are not a JSON object")
    return claims


def sign_hs256(claims: dict[str, Any], secret: bytes) -> str:
    """Return an HS256 JWT of ``claims``; for tests and local tooling."""
    header = _encode_base64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = _encode_base64url(orjson.dumps(claims))
    signed = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret, signed, hashlib.sha256).digest()
    return f"{header}.{payload}.{_encode_base64url(signature)}"


def _encode_base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode_base64url(text: str) -> bytes:
    # JWTs use unpadded base64url (RFC 7515); other alphabets and padding are
    # rejected rather than repaired.
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise AuthError("token is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise AuthError("token is not base64url") from error


def _decode_json(text: str) -> Any:
    try:
        return orjson.loads(_decode_base64url(text))
    except orjson.JSONDecodeError as error:
        raise AuthError("token is not valid JSON") from error


def _number_claim(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AuthError(f"token {name} claim is not a number")
    return float(value)


def _channels_claim(claims: dict[str, Any]) -> frozenset[str] | None:
    if "channels" not in claims:
        return None
    value: Sequence[Any] | Any = claims["channels"]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise AuthError("token channels claim is not a list of names")
    return frozenset(value)
