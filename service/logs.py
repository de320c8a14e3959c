"""Logging set-up: the instance id on every record, text or JSON lines.

Convention: one logger per role (``brokercast.source``, ``brokercast.hub``,
``brokercast.server``, ``brokercast.app``); short lowercase messages with
``%``-style arguments; identifiers such as source, channel, partition, offset,
entry id and client address go in ``extra`` fields, never into the text.
DEBUG is per-event detail, INFO a change an operator wants to see (start, stop,
connect, disconnect), WARNING a handled problem (a dropped event, a slow client,
a lost broker), ERROR a failure that needs a person.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from service.redact import RedactingFormatter

#: Attributes every LogRecord has; anything else was passed in ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "instance_id", "taskName"}
)


class _InstanceFilter(logging.Filter):
    def __init__(self, instance_id: str) -> None:
        super().__init__()
        self.instance_id = instance_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance_id = self.instance_id
        return True


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ... id=<instance id>``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = _extra_fields(record)
        fields["id"] = getattr(record, "instance_id", "")
        pairs = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{stamp}Z {record.levelname} {record.name} {record.getMessage()}"
        line = f"{line} {pairs}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line with ``time``, ``level``, ``logger``, ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "id": getattr(record, "instance_id", ""),
        }
        document.update(_extra_fields(record))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


class _PeerErrorFilter(logging.Filter):
    """Turns websockets' ERROR records into one-line WARNINGs, one a minute.

    websockets logs some failures that a peer can cause at will at ERROR with a
    traceback; pipelined HTTP requests on the websocket port are one
    (websockets 17.4). Anyone who can reach the port could flood the log, so such
    records become short warnings with a count of those left out.
    """

    interval = 60.0

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("websockets") or record.levelno < logging.ERROR:
            return True
        key = record.getMessage()
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now

        message = key
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{key}: {type(error).__name__}: {error}".rstrip(": ")
        record.msg, record.args = message, None
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.suppressed_since_last = self._suppressed.pop(key, 0)
        return True


def configure_logging(instance_id: str, level: str, fmt: str) -> None:
    """Send every log record to stderr in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_InstanceFilter(instance_id))
    handler.addFilter(_PeerErrorFilter())
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    # Every line passes the redaction, websockets' own included, because
    # handshake paths and headers may carry tokens.
    handler.setFormatter(RedactingFormatter(formatter))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiokafka logs every failed reconnect at ERROR; brokercast reports the
    # source state itself, once per change.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # websockets logs failed handshakes (probes, port scans) it handles itself.
    logging.getLogger("websockets").setLevel(logging.WARNING)
