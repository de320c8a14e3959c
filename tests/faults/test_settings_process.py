"""Settings read by the real process: switches, empty values, nesting typos."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import Brokercast


def run_cli(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERCAST_")}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-m", "service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("word", ["False", "FALSE", "0", "no"])
async def test_enable_metric_off_words(word: str) -> None:
    """Each spelling of false turns /metrics off (404); /healthz still answers."""
    with Brokercast({"enable_metric": word}) as bc:
        await bc.wait_listening()
        assert bc.http("/metrics")[0] == 404
        assert bc.http("/healthz")[0] == 200
        assert await bc.terminate() == 0


def test_empty_port_exits_2() -> None:
    result = run_cli({"BROKERCAST_PORT": ""})
    assert result.returncode == 2
    assert result.stderr == (
        "brokercast: invalid setting BROKERCAST_PORT='' (from environment variable "
        "BROKERCAST_PORT): the value is empty; unset the variable or give it a "
        "value\n"
    )


def test_single_underscore_nesting_exits_2() -> None:
    result = run_cli({"BROKERCAST_SOURCES_ORDERS__TYPE": "kafka"})
    assert result.returncode == 2
    assert result.stderr == (
        "brokercast: invalid setting BROKERCAST_SOURCES_ORDERS__TYPE='kafka' (from "
        "environment variable BROKERCAST_SOURCES_ORDERS__TYPE): no such setting; "
        "nested keys need a double underscore between levels, as in "
        "BROKERCAST_SOURCES__ORDERS__TYPE\n"
    )
