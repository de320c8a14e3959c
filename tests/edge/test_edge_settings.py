"""Settings of the edge: defaults and one-line errors for bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from service.errors import ConfigError
from service.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove BROKERCAST_* variables of the calling shell."""
    for name in list(os.environ):
        if name.startswith("BROKERCAST_"):
            monkeypatch.delenv(name)


def config(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return [str(path)]


def test_edge_defaults() -> None:
    settings = load_settings()
    assert settings.allowed_origins == ()
    assert settings.allow_missing_origin is True
    assert settings.auth.mode == "none"
    assert settings.tls_cert_file is None
    assert settings.tls_key_file is None
    assert settings.max_connections == 10_000
    assert settings.max_connection_rate_per_address == 0.0
    assert settings.open_timeout == 10.0
    assert settings.demo_page is True


def test_allowed_origins_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "BROKERCAST_ALLOWED_ORIGINS", '["https://*.example.com", "http://a.test:8080"]'
    )
    settings = load_settings()
    assert settings.allowed_origins == ("https://*.example.com", "http://a.test:8080")


def test_allowed_origins_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERCAST_ALLOWED_ORIGINS", "https://a.test, *")
    assert load_settings().allowed_origins == ("https://a.test", "*")


@pytest.mark.parametrize(
    "entry",
    ["example.com", "https://example.com/path", "https://a.*.com", "https://x:99999"],
)
def test_allowed_origins_invalid_entry(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    monkeypatch.setenv("BROKERCAST_ALLOWED_ORIGINS", f'["{entry}"]')
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith("invalid setting allowed_origins=")
    assert "environment variable BROKERCAST_ALLOWED_ORIGINS" in message
    assert repr(entry) in message


def test_jwt_auth_from_file(tmp_path: Path) -> None:
    files = config(
        tmp_path,
        "[auth]\nmode = 'jwt'\nsecret = '" + "k" * 32 + "'\n"
        "issuer = 'https://id.test'\naudience = 'brokercast'\nleeway = 5\n",
    )
    auth = load_settings(files).auth
    assert auth.mode == "jwt"
    assert auth.secret == "k" * 32
    assert auth.issuer == "https://id.test"
    assert auth.audience == "brokercast"
    assert auth.leeway == 5.0
    assert "k" * 32 not in repr(auth)


def test_jwt_auth_needs_issuer(tmp_path: Path) -> None:
    files = config(
        tmp_path,
        "[auth]\nmode = 'jwt'\nsecret = '" + "k" * 32 + "'\naudience = 'b'\n",
    )
    with pytest.raises(ConfigError) as error:
        load_settings(files)
    assert str(error.value).startswith("missing setting auth.issuer")
    assert "BROKERCAST_AUTH__ISSUER" in str(error.value)


def test_short_secret_rejected_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BROKERCAST_AUTH__MODE", "token")
    monkeypatch.setenv("BROKERCAST_AUTH__SECRET", "hunter2")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert message == (
        "invalid setting auth.secret='<7 characters>' (from environment variable "
        "BROKERCAST_AUTH__SECRET): expected at least 32 characters"
    )


def test_unknown_auth_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERCAST_AUTH__MODE", "basic")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value) == (
        "invalid setting auth.mode='basic' (from environment variable "
        "BROKERCAST_AUTH__MODE): expected one of none, token, jwt"
    )


def test_unknown_auth_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERCAST_AUTH__MODE", "token")
    monkeypatch.setenv("BROKERCAST_AUTH__SECRET", "s" * 32)
    monkeypatch.setenv("BROKERCAST_AUTH__ISSUR", "x")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value) == (
        "unknown setting auth.issur='x' (from environment variable "
        "BROKERCAST_AUTH__ISSUR); did you mean auth.issuer?"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("MAX_CONNECTIONS", "-1", "an integer of at least 0"),
        ("MAX_CONNECTION_RATE_PER_ADDRESS", "fast", "a number from 0 to 86400"),
        ("OPEN_TIMEOUT", "0", "a number greater than 0"),
        ("DEMO_PAGE", "maybe", "true or false"),
        ("ALLOW_MISSING_ORIGIN", "perhaps", "true or false"),
    ],
)
def test_edge_limits_invalid(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(f"BROKERCAST_{key}", value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    # dynaconf turns numbers into int or float, other words stay strings.
    assert message.startswith(f"invalid setting {key.lower()}=")
    assert value in message
    assert f"environment variable BROKERCAST_{key}" in message
    assert expected in message


def test_tls_needs_both_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    monkeypatch.setenv("BROKERCAST_TLS_CERT_FILE", str(cert))
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith("missing setting tls_key_file")


def test_tls_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERCAST_TLS_CERT_FILE", str(tmp_path / "none.pem"))
    monkeypatch.setenv("BROKERCAST_TLS_KEY_FILE", str(tmp_path / "none.key"))
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "invalid setting tls_cert_file=" in str(error.value)
    assert "an existing, readable PEM file" in str(error.value)


def test_tls_key_not_matching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    authority = trustme.CA()
    first = authority.issue_cert("127.0.0.1")
    second = authority.issue_cert("127.0.0.1")
    first.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    second.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    monkeypatch.setenv("BROKERCAST_TLS_CERT_FILE", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("BROKERCAST_TLS_KEY_FILE", str(tmp_path / "key.pem"))
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "a certificate matching tls_key_file" in str(error.value)


def test_bad_edge_setting_exits_2() -> None:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("BROKERCAST_")
    }
    environment["BROKERCAST_ALLOWED_ORIGINS"] = "evil"
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("brokercast: invalid setting allowed_origins=")
