"""Settings: defaults, precedence, and one-line errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ConfigError
from service.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove BROKERCAST_* variables of the calling shell."""
    import os

    for name in list(os.environ):
        if name.startswith("BROKERCAST_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_defaults_match_the_logstash_output() -> None:
    settings = load_settings()
    assert settings.host == "0.0.0.0"
    assert settings.port == 3232
    assert settings.codec == "plain"
    assert settings.enable_metric is True
    assert settings.sources == ()


def test_id_generated_once_when_absent() -> None:
    first = load_settings().id
    assert first.startswith("brokercast-")
    assert len(first) == len("brokercast-") + 8
    assert load_settings().id != first


def test_environment_overrides_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "settings.toml", "port = 4000\ncodec = 'json'\n")
    monkeypatch.setenv("BROKERCAST_PORT", "4001")
    settings = load_settings([config])
    assert settings.port == 4001
    assert settings.codec == "json"


def test_config_file_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "settings.toml", "port = 4002\n")
    monkeypatch.setenv("BROKERCAST_CONFIG", config)
    assert load_settings().port == 4002


def test_secrets_file_beside_settings(tmp_path: Path) -> None:
    config = write(
        tmp_path / "settings.toml",
        "[sources.orders]\ntype = 'kafka'\nbootstrap_servers = ['k:9092']\n"
        "topics = ['orders']\nsecurity_protocol = 'SASL_PLAINTEXT'\n"
        "sasl_plain_username = 'bridge'\n",
    )
    write(tmp_path / ".secrets.toml", "[sources.orders]\nsasl_plain_password = 's3'\n")
    (source,) = load_settings([config]).sources
    assert source.options.sasl_plain_username == "bridge"
    assert source.options.sasl_plain_password == "s3"


def test_nested_source_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERCAST_SOURCES__ORDERS__TYPE", "kafka")
    monkeypatch.setenv("BROKERCAST_SOURCES__ORDERS__BOOTSTRAP_SERVERS", "a:1,b:2")
    monkeypatch.setenv("BROKERCAST_SOURCES__ORDERS__TOPICS", '["orders", "refunds"]')
    monkeypatch.setenv("BROKERCAST_SOURCES__ORDERS__GROUP_ID", "bridge")
    (source,) = load_settings().sources
    assert source.name == "orders"
    assert source.type == "kafka"
    assert source.options.bootstrap_servers == ("a:1", "b:2")
    assert source.options.topics == ("orders", "refunds")
    assert source.options.group_id == "bridge"
    assert source.options.start == "latest"


@pytest.mark.parametrize("word", ["False", "FALSE", "false", "0", "no", "off"])
def test_boolean_false_spellings(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    monkeypatch.setenv("BROKERCAST_ENABLE_METRIC", word)
    assert load_settings().enable_metric is False


@pytest.mark.parametrize("word", ["True", "TRUE", "1", "yes", "on"])
def test_boolean_true_spellings(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    monkeypatch.setenv("BROKERCAST_ENABLE_METRIC", word)
    assert load_settings().enable_metric is True


BAD_ENVIRONMENT = [
    (
        {"BROKERCAST_HOST": "not a host!!"},
        "invalid setting host='not a host!!' (from environment variable "
        "BROKERCAST_HOST): expected an IP address or a host name",
    ),
    (
        {"BROKERCAST_HOST": "127"},
        "invalid setting host=127 (from environment variable BROKERCAST_HOST): "
        "expected an IP address or a host name",
    ),
    (
        {"BROKERCAST_PORT": "abc"},
        "invalid setting port='abc' (from environment variable BROKERCAST_PORT): "
        "expected an integer from 1 to 65535",
    ),
    (
        {"BROKERCAST_PORT": "70000"},
        "invalid setting port=70000 (from environment variable BROKERCAST_PORT): "
        "expected an integer from 1 to 65535",
    ),
    (
        {"BROKERCAST_PORT": "0"},
        "invalid setting port=0 (from environment variable BROKERCAST_PORT): "
        "expected an integer from 1 to 65535",
    ),
    (
        {"BROKERCAST_PORT": ""},
        "invalid setting BROKERCAST_PORT='' (from environment variable "
        "BROKERCAST_PORT): the value is empty; unset the variable or give it a value",
    ),
    (
        {"BROKERCAST_CODEC": "xml"},
        "invalid setting codec='xml' (from environment variable BROKERCAST_CODEC): "
        "expected one of plain, json, raw",
    ),
    (
        {"BROKERCAST_ENABLE_METRIC": "maybe"},
        "invalid setting enable_metric='maybe' (from environment variable "
        "BROKERCAST_ENABLE_METRIC): expected true or false (also yes/no, on/off, 1/0)",
    ),
    (
        {"BROKERCAST_SOURCES_ORDERS_TYPE": "kafka"},
        "invalid setting BROKERCAST_SOURCES_ORDERS_TYPE='kafka' (from environment "
        "variable BROKERCAST_SOURCES_ORDERS_TYPE): no such setting; nested keys need "
        "a double underscore between levels, as in BROKERCAST_SOURCES__ORDERS__TYPE",
    ),
    (
        {"BROKERCAST_PROT": "4000"},
        "invalid setting BROKERCAST_PROT='4000' (from environment variable "
        "BROKERCAST_PROT): no such setting",
    ),
    (
        {"BROKERCAST_SOURCES__ORDERS__TYPE": "nats"},
        "invalid setting sources.orders.type='nats' (from environment variable "
        "BROKERCAST_SOURCES__ORDERS__TYPE): expected one of kafka, redis",
    ),
    (
        {
            "BROKERCAST_SOURCES__ORDERS__TYPE": "kafka",
            "BROKERCAST_SOURCES__ORDERS__BOOTSTRAP_SERVERS": "k:9092",
        },
        "missing setting sources.orders.topics: expected a non-empty list of names; "
        "set it in a settings file or with the environment variable "
        "BROKERCAST_SOURCES__ORDERS__TOPICS",
    ),
    (
        {
            "BROKERCAST_SOURCES__EVENTS__TYPE": "redis",
            "BROKERCAST_SOURCES__EVENTS__URL": "redis://localhost",
            "BROKERCAST_SOURCES__EVENTS__STREAMS": "[]",
        },
        "invalid setting sources.events.streams=[] (from environment variable "
        "BROKERCAST_SOURCES__EVENTS__STREAMS): expected a non-empty list of names",
    ),
]


@pytest.mark.parametrize(("environment", "message"), BAD_ENVIRONMENT)
def test_bad_environment_message(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], message: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == message


def test_bad_file_value_names_file(tmp_path: Path) -> None:
    config = write(tmp_path / "settings.toml", "port = 'high'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings([config])
    assert str(caught.value) == (
        f"invalid setting port='high' (from file {config}): "
        "expected an integer from 1 to 65535"
    )


def test_unknown_source_option_rejected(tmp_path: Path) -> None:
    config = write(
        tmp_path / "settings.toml",
        "[sources.events]\ntype = 'redis'\nurl = 'redis://localhost'\n"
        "streams = ['events']\ngroupp = 'bridge'\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings([config])
    assert str(caught.value) == (
        f"unknown setting sources.events.groupp='bridge' (from file {config}); "
        "did you mean sources.events.group?"
    )


def test_file_value_not_blamed_on_sibling_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An environment variable for one key of a table does not own its siblings."""
    config = write(
        tmp_path / "settings.toml",
        "[sources.events]\ntype = 'redis'\nurl = 'redis://localhost'\n"
        "streams = ['events']\nblock_ms = 'slow'\n",
    )
    monkeypatch.setenv("BROKERCAST_SOURCES__EVENTS__COUNT", "5")
    with pytest.raises(ConfigError) as caught:
        load_settings([config])
    assert str(caught.value) == (
        f"invalid setting sources.events.block_ms='slow' (from file {config}): "
        "expected an integer from 1 to 3600000"
    )


def test_missing_config_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as caught:
        load_settings([missing])
    assert str(caught.value) == f"settings file not found: {missing} (from --config)"
