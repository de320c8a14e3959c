"""Removal of secrets from log lines.

Tokens reach the server in query strings, the ``Sec-WebSocket-Protocol``
header and the ``Authorization`` header, and any of them can end up in a log
line: the websockets library logs request lines and headers at DEBUG, and an
exception message may quote a path. :class:`RedactingFormatter` wraps the
formatter of the log handler, so every finished line is cleaned, whichever
logger wrote it and whatever the traceback contains.
"""

from __future__ import annotations

import logging
import re

#: Replacement text for a removed secret.
REDACTED = "[redacted]"

_PATTERNS = (
    # A query string after a path or URL: everything up to white space or a quote.
    (re.compile(r"(/[^\s?\"']*)\?[^\s\"']+"), rf"\1?{REDACTED}"),
    # A token offered as a subprotocol.
    (re.compile(r"(bearer\.)[^\s,\"']+", re.IGNORECASE), rf"\1{REDACTED}"),
    # An Authorization header value.
    (
        re.compile(r"(authorization:\s*)[^\r\n\"']+", re.IGNORECASE),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(bearer\s+)[^\s,\"']+", re.IGNORECASE), rf"\1{REDACTED}"),
    # token=... outside a query string, e.g. in a quoted repr.
    (re.compile(r"(\btoken=)[^\s&\"']+", re.IGNORECASE), rf"\1{REDACTED}"),
)


def redact(text: str) -> str:
    """Return ``text`` with query strings and tokens replaced by ``[redacted]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner`` and then removes secrets from the result."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))
