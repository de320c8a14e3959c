"""Log records: the instance id on every line, text or JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from service.logs import configure_logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_id_and_fields(
    capsys: pytest.CaptureFixture[str], restore_root_logger: object
) -> None:
    configure_logging("brokercast-0000abcd", "INFO", "json")
    logging.getLogger("brokercast.source").warning(
        "source disconnected %s", "now", extra={"source": "orders"}
    )
    document = json.loads(capsys.readouterr().err)
    assert document["message"] == "source disconnected now"
    assert document["level"] == "WARNING"
    assert document["logger"] == "brokercast.source"
    assert document["id"] == "brokercast-0000abcd"
    assert document["source"] == "orders"


def test_text_lines_end_with_fields_and_id(
    capsys: pytest.CaptureFixture[str], restore_root_logger: object
) -> None:
    configure_logging("brokercast-0000abcd", "INFO", "text")
    logging.getLogger("brokercast.hub").info("hello", extra={"client": "1.2.3.4:5"})
    line = capsys.readouterr().err.strip()
    assert line.endswith(
        "INFO brokercast.hub hello client=1.2.3.4:5 id=brokercast-0000abcd"
    )


def test_level_filters_debug(
    capsys: pytest.CaptureFixture[str], restore_root_logger: object
) -> None:
    configure_logging("brokercast-0000abcd", "INFO", "text")
    logging.getLogger("brokercast.hub").debug("hidden")
    assert capsys.readouterr().err == ""


def test_websockets_errors_become_rare_warnings(
    capsys: pytest.CaptureFixture[str], restore_root_logger: object
) -> None:
    """A peer-triggered websockets ERROR is logged once a minute, without traceback."""
    configure_logging("brokercast-0000abcd", "INFO", "text")
    server_logger = logging.getLogger("websockets.server")
    for _ in range(3):
        try:
            raise AssertionError("eof sent twice")
        except AssertionError:
            server_logger.error("unexpected internal error", exc_info=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert " WARNING websockets.server unexpected internal error: " in lines[0]
    assert "AssertionError: eof sent twice" in lines[0]
