"""Settings values that get past validation today but should exit with code 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.errors import ConfigError
from service.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove BROKERCAST_* variables of the calling shell."""
    for name in list(os.environ):
        if name.startswith("BROKERCAST_"):
            monkeypatch.delenv(name)


def test_port_superscript_digit_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``BROKERCAST_PORT=²`` must raise ConfigError (exit 2, one line).

    ``str.isdigit`` accepts "²" but ``int`` does not, so today a ValueError
    escapes and the command line prints a traceback.
    """
    monkeypatch.setenv("BROKERCAST_PORT", "²")
    with pytest.raises(ConfigError, match="port"):
        load_settings()


@pytest.mark.parametrize(
    "key",
    ["SHUTDOWN_TIMEOUT", "PING_INTERVAL", "PING_TIMEOUT"],
)
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_seconds_rejected(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    """NaN and infinity are not durations; they must be a config error.

    Today ``shutdown_timeout=nan`` is accepted and the process dies with a
    traceback at SIGTERM, and ``ping_interval=nan`` logs a keepalive traceback
    at ERROR for every client.
    """
    monkeypatch.setenv(f"BROKERCAST_{key}", value)
    with pytest.raises(ConfigError, match=key.lower()):
        load_settings()


def test_redis_start_zero_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``BROKERCAST_SOURCES__S__START=0`` is the documented way to read a stream
    from the beginning; the value parses as the integer 0 and must be accepted.
    """
    monkeypatch.setenv("BROKERCAST_SOURCES__S__TYPE", "redis")
    monkeypatch.setenv("BROKERCAST_SOURCES__S__URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("BROKERCAST_SOURCES__S__STREAMS", "a")
    monkeypatch.setenv("BROKERCAST_SOURCES__S__START", "0")
    settings = load_settings()
    assert settings.sources[0].options.start == "0"


def test_redis_start_zero_in_toml(tmp_path: Path) -> None:
    """``start = 0`` in a TOML file means the whole stream and must load."""
    config = tmp_path / "settings.toml"
    config.write_text(
        "[sources.s]\ntype = 'redis'\nurl = 'redis://127.0.0.1:6379/0'\n"
        "streams = ['a']\nstart = 0\n"
    )
    settings = load_settings([str(config)])
    assert settings.sources[0].options.start == "0"


@pytest.mark.parametrize("suffix", [".txt", ".ini", ""])
def test_unknown_file_type_rejected(tmp_path: Path, suffix: str) -> None:
    """A settings file that is not TOML, YAML or JSON must be a config error,
    not silently ignored (today ``--config settings.txt`` starts on defaults).
    """
    config = tmp_path / f"settings{suffix}"
    config.write_text("port = 'abc'\n")
    with pytest.raises(ConfigError):
        load_settings([str(config)])


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379", "garbage", "redis://127.0.0.1:abc/0"],
)
def test_redis_url_checked_at_start(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """A Redis URL that redis-py cannot parse must stop start-up with exit 2;
    today the source fails at run time with an ERROR traceback and stays failed.
    """
    monkeypatch.setenv("BROKERCAST_SOURCES__S__TYPE", "redis")
    monkeypatch.setenv("BROKERCAST_SOURCES__S__URL", url)
    monkeypatch.setenv("BROKERCAST_SOURCES__S__STREAMS", "a")
    with pytest.raises(ConfigError, match="url"):
        load_settings()


@pytest.mark.parametrize("servers", ["127.0.0.1:abc", "::::", "host:"])
def test_kafka_servers_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, servers: str
) -> None:
    """``host:port`` entries aiokafka cannot parse must be a config error;
    today the source fails at run time with a ValueError traceback.
    """
    monkeypatch.setenv("BROKERCAST_SOURCES__K__TYPE", "kafka")
    monkeypatch.setenv("BROKERCAST_SOURCES__K__BOOTSTRAP_SERVERS", servers)
    monkeypatch.setenv("BROKERCAST_SOURCES__K__TOPICS", "a")
    with pytest.raises(ConfigError, match="bootstrap_servers"):
        load_settings()
