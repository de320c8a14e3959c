"""Admission rules for websocket handshakes: origins and connection rates.

Browsers send an ``Origin`` header with every websocket handshake and let any
page open a websocket to any host. Without an origin check, a page on any site
could therefore read the events of a brokercast its visitor can reach
(cross-site websocket hijacking). :class:`OriginPolicy` decides which origins
may connect.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: ``allowed_origins`` entry that turns the origin check off.
ANY_ORIGIN = "*"

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?P<host>\[[0-9a-f:.]+\]|[^:/?#@\[\]\s]+)"
    r"(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE,
)
_HOST = re.compile(
    r"(?P<host>\[[0-9a-f:.]+\]|[^:/?#@\[\]\s]+)(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Origin:
    """A parsed origin: scheme, lowercase host and port (default filled in)."""

    scheme: str
    host: str
    port: int | None


def parse_origin(text: str) -> Origin | None:
    """Return ``scheme://host[:port]`` parsed, or ``None`` when it is not one.

    ``null`` (sent by sandboxed frames and ``file:`` pages) and anything with a
    path, user name or query is not an origin.
    """
    match = _ORIGIN.fullmatch(text)
    if match is None:
        return None
    scheme = match["scheme"].lower()
    port = _port(match["port"], scheme)
    if match["port"] is not None and port is None:
        return None
    return Origin(scheme, match["host"].lower(), port)


def _port(text: str | None, scheme: str) -> int | None:
    if text is None:
        return _DEFAULT_PORTS.get(scheme)
    number = int(text)
    return number if 0 < number < 65536 else None


def check_origin_pattern(text: str) -> str | None:
    """Return why ``text`` is not a valid ``allowed_origins`` entry, or ``None``."""
    if text == ANY_ORIGIN:
        return None
    origin = parse_origin(text)
    if origin is None:
        return "not of the form scheme://host[:port]"
    if "*" in origin.host and not _is_wildcard(origin.host):
        return "a wildcard must be the whole first label, as in *.example.com"
    return None


def _is_wildcard(host: str) -> bool:
    return host.startswith("*.") and "*" not in host[2:] and len(host) > 2


class OriginPolicy:
    """Decides from the ``Origin`` and ``Host`` headers whether a handshake may go on.

    ``allowed`` contains exact origins, ``scheme://*.example.com[:port]`` patterns
    (any subdomain, not the domain itself) or ``*`` for any origin. When it is
    empty, only an origin whose host and port equal the request's ``Host``
    header is accepted, which admits the page brokercast serves itself and
    pages that a reverse proxy serves under the same host name.
    """

    def __init__(self, allowed: Iterable[str], allow_missing: bool) -> None:
        entries = tuple(allowed)
        self.allow_any = ANY_ORIGIN in entries
        self.allow_missing = allow_missing
        self.same_host_only = not entries
        self.exact: set[Origin] = set()
        self.wildcards: list[Origin] = []
        for entry in entries:
            origin = parse_origin(entry)
            if origin is None:
                continue  # "*", or rejected by the settings check already
            if origin.host.startswith("*."):
                self.wildcards.append(
                    Origin(origin.scheme, origin.host[1:], origin.port)
                )
            else:
                self.exact.add(origin)

    def allows(self, origins: list[str], hosts: list[str]) -> bool:
        """Return whether a handshake with these header values may go on.

        ``origins`` and ``hosts`` are every value of the ``Origin`` and
        ``Host`` headers; more than one of either is rejected.
        """
        if len(origins) > 1:
            return False
        if not origins:
            return self.allow_missing
        if self.allow_any:
            return True
        origin = parse_origin(origins[0].strip())
        if origin is None:
            return False
        if self.same_host_only:
            return len(hosts) == 1 and _same_host(origin, hosts[0].strip())
        if origin in self.exact:
            return True
        return any(_matches_wildcard(origin, pattern) for pattern in self.wildcards)


def _same_host(origin: Origin, host_header: str) -> bool:
    match = _HOST.fullmatch(host_header)
    if match is None:
        return False
    port = _port(match["port"], origin.scheme)
    return match["host"].lower() == origin.host and port == origin.port


def _matches_wildcard(origin: Origin, pattern: Origin) -> bool:
    # pattern.host is ".example.com"; the origin needs at least one more label.
    return (
        origin.scheme == pattern.scheme
        and origin.port == pattern.port
        and origin.host.endswith(pattern.host)
        and len(origin.host) > len(pattern.host)
        and not origin.host.startswith(".")
    )


class AddressRateLimiter:
    """Token bucket per client address: ``rate`` handshakes a second.

    Each address may open up to ``max(1, rate)`` connections at once and then
    ``rate`` a second. Buckets of addresses that have been quiet long enough to
    be full again are dropped, so memory stays bounded by the addresses seen
    in the last few seconds.
    """

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._next_prune = 0.0

    def allow(self, address: str) -> bool:
        """Take one token for ``address``; return ``False`` when none is left."""
        if self.rate <= 0:
            return True
        now = self.clock()
        self._prune(now)
        tokens, last = self._buckets.get(address, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return False
        self._buckets[address] = (tokens - 1.0, now)
        return True

    def _prune(self, now: float) -> None:
        if now < self._next_prune:
            return
        refill = self.capacity / self.rate
        self._buckets = {
            address: bucket
            for address, bucket in self._buckets.items()
            if now - bucket[1] < refill
        }
        self._next_prune = now + max(1.0, refill)


class RepeatLimiter:
    """Lets one log line per key through every ``interval`` seconds.

    A flood of rejected handshakes would otherwise flood the log as well; the
    metrics still count every one.
    """

    def __init__(
        self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def check(self, key: str) -> int | None:
        """Return how many lines were suppressed since the last one, or ``None``.

        ``None`` means this line should be suppressed too.
        """
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)
