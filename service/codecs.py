"""Codecs: turn an event into the payload of one websocket frame.

The hub encodes each event once and writes the same bytes to every client, so a
codec never sees a client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from service.events import Event

#: Called once for each payload that was not valid UTF-8 and had to be repaired.
InvalidCounter = Callable[[], None]


class Codec:
    """Base class: ``encode`` returns the frame payload; ``text`` picks the opcode."""

    name = ""
    #: Whether frames are Text frames (valid UTF-8) rather than Binary frames.
    text = True

    def __init__(self, count_invalid: InvalidCounter = lambda: None) -> None:
        self.count_invalid = count_invalid

    def encode(self, event: Event) -> bytes:
        """Return the frame payload for ``event``."""
        raise NotImplementedError

    def to_text(self, data: bytes) -> str:
        """Decode UTF-8, replacing invalid bytes with U+FFFD and counting it."""
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.count_invalid()
            return data.decode("utf-8", errors="replace")


class PlainCodec(Codec):
    """The payload as a Text frame; invalid UTF-8 becomes U+FFFD."""

    name = "plain"

    def encode(self, event: Event) -> bytes:
        payload = event.payload
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            self.count_invalid()
            return payload.decode("utf-8", errors="replace").encode("utf-8")
        return payload


class RawCodec(Codec):
    """The payload bytes untouched, as a Binary frame."""

    name = "raw"
    text = False

    def encode(self, event: Event) -> bytes:
        return event.payload


class JsonCodec(Codec):
    """A JSON envelope with the event's metadata.

    ``payload`` is embedded as JSON when it parses as JSON and as a string
    otherwise, so the envelope is always valid JSON.
    """

    name = "json"

    def encode(self, event: Event) -> bytes:
        envelope = {
            "source": event.source,
            "channel": event.channel,
            "position": event.position,
            "key": None if event.key is None else self.to_text(event.key),
            "timestamp": event.timestamp,
            "headers": {k: self.to_text(v) for k, v in event.headers.items()},
            "payload": self._payload(event.payload),
        }
        return orjson.dumps(envelope)

    def _payload(self, payload: bytes) -> Any:
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError:
            return self.to_text(payload)
        # Valid JSON is copied in as it is rather than parsed and serialised again.
        return orjson.Fragment(payload)


CODECS: dict[str, type[Codec]] = {
    "plain": PlainCodec,
    "json": JsonCodec,
    "raw": RawCodec,
}


def make_codec(name: str, count_invalid: InvalidCounter = lambda: None) -> Codec:
    """Return the codec called ``name`` (one of :data:`CODECS`)."""
    return CODECS[name](count_invalid)
