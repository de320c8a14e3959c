"""Codecs: what a client receives for each kind of payload."""

from __future__ import annotations

import json

import pytest

from service.codecs import JsonCodec, PlainCodec, RawCodec, make_codec
from service.events import Event
from service.hub import frame_header

INVALID = bytes.fromhex("666fff fe6f")


def event(payload: bytes, **fields: object) -> Event:
    return Event(
        source="orders", channel="t", position="0:7", payload=payload, **fields
    )  # type: ignore[arg-type]


def test_plain_passes_utf8_through() -> None:
    payload = "grüße".encode()
    assert PlainCodec().encode(event(payload)) is payload


def test_plain_replaces_invalid_utf8_and_counts() -> None:
    counted: list[int] = []
    codec = PlainCodec(lambda: counted.append(1))
    assert codec.encode(event(INVALID)).decode() == "fo\ufffd\ufffdo"
    assert counted == [1]


def test_raw_is_binary_and_untouched() -> None:
    codec = RawCodec()
    assert codec.text is False
    assert codec.encode(event(INVALID)) == INVALID


def test_json_embeds_json_payload() -> None:
    encoded = JsonCodec().encode(
        event(b'{"n": 1}', key=b"k1", timestamp=1700000000000, headers={"h": b"v"})
    )
    assert json.loads(encoded) == {
        "source": "orders",
        "channel": "t",
        "position": "0:7",
        "key": "k1",
        "timestamp": 1700000000000,
        "headers": {"h": "v"},
        "payload": {"n": 1},
    }


def test_json_wraps_text_payload_as_string() -> None:
    encoded = JsonCodec().encode(event(b"not json"))
    assert json.loads(encoded)["payload"] == "not json"


def test_json_stays_valid_with_invalid_utf8() -> None:
    counted: list[int] = []
    codec = JsonCodec(lambda: counted.append(1))
    document = json.loads(codec.encode(event(INVALID, headers={"h": b"\xff"})))
    assert document["payload"] == "fo\ufffd\ufffdo"
    assert document["headers"] == {"h": "\ufffd"}
    assert counted == [1, 1]


def test_json_empty_payload_is_empty_string() -> None:
    assert json.loads(JsonCodec().encode(event(b"")))["payload"] == ""


@pytest.mark.parametrize("name", ["plain", "json", "raw"])
def test_make_codec_by_name(name: str) -> None:
    assert make_codec(name).name == name


@pytest.mark.parametrize(
    ("length", "text", "expected"),
    [
        (5, True, b"\x81\x05"),
        (125, False, b"\x82\x7d"),
        (126, True, b"\x81\x7e\x00\x7e"),
        (65535, True, b"\x81\x7e\xff\xff"),
        (65536, True, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_frame_header_lengths(length: int, text: bool, expected: bytes) -> None:
    assert frame_header(length, text) == expected
