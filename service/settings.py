"""Settings: read by dynaconf, validated once, handed on as frozen dataclasses.

Values come, lowest precedence first, from the defaults below, the settings files
(``--config`` or ``BROKERCAST_CONFIG``, each with an optional ``.secrets.toml``
beside it) and ``BROKERCAST_*`` environment variables, where ``__`` separates nested
keys. Every value is checked before any socket is bound; a bad one raises
:class:`ConfigError` naming the key, the value and where it was set.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import secrets
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dynaconf import Dynaconf
from dynaconf.utils.inspect import get_history

from service.auth import AUTH_MODES, AuthSettings
from service.edge import check_origin_pattern
from service.errors import ConfigError

ENV_PREFIX = "BROKERCAST"
CONFIG_ENV = "BROKERCAST_CONFIG"
CODECS = ("plain", "json", "raw")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Settings file types; dynaconf would also run ``.py`` files and skip unknown ones.
FILE_TYPES = (".toml", ".yaml", ".yml", ".json")
TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})

T = TypeVar("T")


@dataclass(frozen=True)
class SourceSettings:
    """One entry of ``sources``: its name, adapter type and validated options."""

    name: str
    type: str
    options: Any


@dataclass(frozen=True)
class Settings:
    """The validated, read-only settings of one brokercast process."""

    host: str = "0.0.0.0"
    port: int = 3232
    codec: str = "plain"
    id: str = ""
    enable_metric: bool = True
    #: Seconds that shutdown may take before remaining work is abandoned.
    shutdown_timeout: float = 10.0
    #: Events waiting between the sources and the hub; sources wait when it is full.
    event_queue_size: int = 10_000
    #: Bytes waiting to be written to one client before it counts as too slow.
    client_queue_bytes: int = 1_048_576
    #: Largest payload in bytes that is broadcast; larger events are dropped.
    max_event_bytes: int = 1_048_576
    #: Largest frame in bytes a client may send; larger ones close it with 1009.
    max_client_message_bytes: int = 4096
    #: Seconds between keepalive pings; 0 turns keepalive off.
    ping_interval: float = 20.0
    #: Seconds to wait for a pong before closing the connection.
    ping_timeout: float = 20.0
    #: Offer permessage-deflate to clients; costs CPU and memory per client.
    compression: bool = False
    log_level: str = "INFO"
    log_format: str = "text"
    sources: tuple[SourceSettings, ...] = field(default_factory=tuple)
    #: Origins whose pages may connect: exact ``scheme://host[:port]``,
    #: ``scheme://*.example.com`` patterns or ``*`` for any. Empty: only an
    #: origin whose host and port equal the request's ``Host`` header.
    allowed_origins: tuple[str, ...] = ()
    #: Accept handshakes without an ``Origin`` header (clients that are not
    #: browsers send none).
    allow_missing_origin: bool = True
    #: Token authentication of handshakes; off by default.
    auth: AuthSettings = field(default_factory=AuthSettings)
    #: PEM certificate chain and private key; both set turns on TLS (wss://).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    #: Open websocket connections above which handshakes get HTTP 503;
    #: 0 means no limit.
    max_connections: int = 10_000
    #: Handshakes a second one client address may start (a burst of up to
    #: this many at once); more get HTTP 429. 0 turns the limit off.
    max_connection_rate_per_address: float = 0.0
    #: Seconds a client has to complete the opening handshake (TLS included).
    open_timeout: float = 10.0
    #: Serve the demo page at ``GET /`` and the JS client at ``/client.js``.
    demo_page: bool = True

    @property
    def close_timeout(self) -> float:
        """Seconds a client close may take: half of ``shutdown_timeout``, 0.5 to 5."""
        return max(0.5, min(5.0, self.shutdown_timeout / 2))


TOP_LEVEL_KEYS = frozenset(Settings.__dataclass_fields__)


def new_instance_id() -> str:
    """Return a fresh instance id such as ``brokercast-1a2b3c4d``."""
    return f"brokercast-{secrets.token_hex(4)}"


class Origins:
    """Tells where a setting came from, for error messages."""

    def __init__(self, history: Sequence[Mapping[str, Any]]) -> None:
        self._history = history

    def describe(self, path: Sequence[str]) -> str:
        """Return e.g. ``environment variable BROKERCAST_PORT`` or a file name."""
        for entry in reversed(self._history):
            if not _contains_path(entry.get("value"), path):
                continue
            loader = str(entry.get("loader", ""))
            if loader.startswith("env"):
                # dynaconf records the whole merged table under the variable
                # that changed one key of it, so only a variable that names
                # this key (or a table holding it) counts as its origin.
                name = _env_name_for(path)
                if name is not None:
                    return f"environment variable {name}"
                continue
            if loader not in ("set_method",):
                return f"file {entry.get('identifier')}"
        return "default"


def _contains_path(value: Any, path: Sequence[str]) -> bool:
    for part in path:
        if not isinstance(value, Mapping):
            return False
        matches = [k for k in value if str(k).lower() == part.lower()]
        if not matches:
            return False
        value = value[matches[0]]
    return True


def _env_name_for(path: Sequence[str]) -> str | None:
    wanted = "__".join(path).upper()
    for name in os.environ:
        if not name.startswith(ENV_PREFIX + "_"):
            continue
        rest = name[len(ENV_PREFIX) + 1 :].upper()
        if wanted == rest or wanted.startswith(rest + "__"):
            return name
    return None


class OptionReader:
    """Reads and checks the keys of one settings table.

    Source adapters receive one for their own table, so that their errors name
    the key, the value and its origin the same way the core settings do.
    """

    def __init__(
        self, values: Mapping[str, Any], path: tuple[str, ...], origins: Origins
    ) -> None:
        self.values = {str(k).lower(): v for k, v in values.items()}
        self.path = path
        self.origins = origins
        self.used: set[str] = set()

    def fail(self, key: str, value: Any, expected: str) -> ConfigError:
        """Build the error for ``key`` holding ``value`` instead of ``expected``."""
        path = (*self.path, key)
        dotted = ".".join(path)
        if value is None:
            variable = f"{ENV_PREFIX}_{'__'.join(path).upper()}"
            return ConfigError(
                f"missing setting {dotted}: expected {expected}; set it in a "
                f"settings file or with the environment variable {variable}"
            )
        where = self.origins.describe(path)
        return ConfigError(
            f"invalid setting {dotted}={value!r} (from {where}): expected {expected}"
        )

    def unknown(self, key: str, value: Any) -> ConfigError:
        """Build the error for a key that is not a setting, with a likely match."""
        path = (*self.path, key)
        where = self.origins.describe(path)
        close = difflib.get_close_matches(key, sorted(self.used), n=1)
        hint = f"; did you mean {'.'.join((*self.path, close[0]))}?" if close else ""
        return ConfigError(
            f"unknown setting {'.'.join(path)}={value!r} (from {where}){hint}"
        )

    def has(self, key: str) -> bool:
        """Return whether ``key`` is set to something other than ``None``."""
        return self.values.get(key) is not None

    def raw(self, key: str) -> Any:
        """Return the unchecked value of ``key``, or ``None`` when unset."""
        self.used.add(key)
        return self.values.get(key)

    def string(self, key: str, default: str | None = None) -> str:
        """Return a non-empty string; ``default`` when unset."""
        value = self._get(key, default)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, value, "a non-empty string")
        return value

    def optional_string(self, key: str) -> str | None:
        """Return a non-empty string, or ``None`` when unset."""
        if self.has(key):
            return self.string(key)
        self.used.add(key)
        return None

    def choice(self, key: str, default: str | None, choices: Iterable[str]) -> str:
        """Return one of ``choices``, compared without case."""
        allowed = tuple(choices)
        value = self._get(key, default)
        text = str(value).lower() if isinstance(value, str) else None
        if text not in {c.lower() for c in allowed}:
            raise self.fail(key, value, "one of " + ", ".join(allowed))
        return next(c for c in allowed if c.lower() == text)

    def integer(
        self, key: str, default: int, minimum: int, maximum: int | None = None
    ) -> int:
        """Return an integer within ``minimum`` and ``maximum`` (inclusive)."""
        value = self._get(key, default)
        number = _as_int(value)
        out_of_range = number is None or number < minimum
        if number is not None and maximum is not None and number > maximum:
            out_of_range = True
        if number is None or out_of_range:
            if maximum is None:
                raise self.fail(key, value, f"an integer of at least {minimum}")
            raise self.fail(key, value, f"an integer from {minimum} to {maximum}")
        return number

    def number(
        self, key: str, default: float, minimum: float = 0.0, maximum: float = 86_400.0
    ) -> float:
        """Return a finite float from ``minimum`` to ``maximum`` (inclusive).

        The default maximum of one day suits every duration in seconds here and
        keeps values such as ``1e300`` away from timers that cannot take them.
        """
        value = self._get(key, default)
        number = _as_float(value)
        if number is None or not minimum <= number <= maximum:
            raise self.fail(key, value, f"a number from {minimum:g} to {maximum:g}")
        return number

    def boolean(self, key: str, default: bool) -> bool:
        """Return a boolean; accepts true/false, yes/no, on/off, 1/0 in any case."""
        value = self._get(key, default)
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise self.fail(key, value, "true or false (also yes/no, on/off, 1/0)")

    def string_list(self, key: str) -> tuple[str, ...]:
        """Return a non-empty list of non-empty strings.

        A single string is accepted as a comma-separated list, because that is
        how a list is most often written in an environment variable.
        """
        expected = "a non-empty list of names"
        if not self.has(key):
            self.used.add(key)
            raise self.fail(key, None, expected)
        value = self._get(key, None)
        items: Any = value
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",")]
        valid = isinstance(items, (list, tuple)) and bool(items)
        if valid and all(isinstance(i, str) and i.strip() for i in items):
            return tuple(items)
        raise self.fail(key, value, expected)

    def check_unknown(self) -> None:
        """Raise for any key that no reader asked for, which is usually a typo."""
        for key, value in self.values.items():
            if key not in self.used:
                raise self.unknown(key, value)

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        value = self.values.get(key)
        if value is None:
            if default is None:
                raise self.fail(key, None, "a value")
            return default
        return value


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        # isdigit() accepts digits such as "²" that int() rejects.
        if text.isascii() and text.lstrip("+-").isdigit():
            return int(text)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


SourceParser = Callable[[OptionReader], Any]


def load_settings(
    config_files: Sequence[str] = (),
    source_parsers: Mapping[str, SourceParser] | None = None,
) -> Settings:
    """Read, check and freeze the settings.

    ``config_files`` defaults to the comma-separated ``BROKERCAST_CONFIG``.
    ``source_parsers`` maps a source type to the function that checks its options;
    it defaults to the registered source adapters.
    """
    _check_environment(os.environ)
    files = list(config_files)
    origin = "--config"
    if not files:
        files = _split_files(os.environ.get(CONFIG_ENV, ""))
        origin = f"environment variable {CONFIG_ENV}"
    for path in files:
        if not Path(path).is_file():
            raise ConfigError(f"settings file not found: {path} (from {origin})")
        if Path(path).suffix.lower() not in FILE_TYPES:
            raise ConfigError(
                f"invalid settings file {path} (from {origin}): expected a name "
                "ending in " + ", ".join(FILE_TYPES)
            )

    dynaconf = Dynaconf(
        envvar_prefix=ENV_PREFIX,
        settings_files=_with_secrets(files),
        environments=False,
        load_dotenv=False,
        merge_enabled=True,
    )
    try:
        values = _lower_keys(dynaconf.as_dict())
    except Exception as error:  # dynaconf raises many types for unparsable files
        text = " ".join(str(error).split())
        raise ConfigError(f"cannot read settings: {text}") from error
    # BROKERCAST_CONFIG names the files; it is not a setting of its own.
    for key in ("load_dotenv", "config"):
        values.pop(key, None)

    origins = Origins(get_history(dynaconf))
    if source_parsers is None:
        from service.sources import registered_parsers

        source_parsers = registered_parsers()
    return _build(values, origins, source_parsers)


def _split_files(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _with_secrets(files: Sequence[str]) -> list[str]:
    result: list[str] = []
    for path in files:
        result.append(path)
        secrets_file = Path(path).parent / ".secrets.toml"
        if secrets_file.is_file() and str(secrets_file) not in result:
            result.append(str(secrets_file))
    return result


def _check_environment(env: Mapping[str, str]) -> None:
    """Reject empty values and keys that dynaconf would silently misread."""
    for name, value in sorted(env.items()):
        if name.upper().endswith("_FOR_DYNACONF"):
            # These would change how dynaconf reads BROKERCAST_* (its prefix,
            # its loaders), so brokercast would run on settings nobody wrote.
            raise ConfigError(
                f"invalid environment variable {name}={value!r}: dynaconf's own "
                "variables are not supported; unset it"
            )
        if not name.startswith(ENV_PREFIX + "_"):
            continue
        if name == CONFIG_ENV:
            if not value.strip():
                raise ConfigError(
                    f"invalid setting {name}='' (from environment variable {name}): "
                    "the value is empty; unset the variable or name a settings file"
                )
            continue
        if not value.strip():
            raise ConfigError(
                f"invalid setting {name}='' (from environment variable {name}): "
                "the value is empty; unset the variable or give it a value"
            )
        top = name[len(ENV_PREFIX) + 1 :].split("__")[0].lower()
        if top in TOP_LEVEL_KEYS:
            continue
        hint = _double_underscore_hint(name)
        raise ConfigError(
            f"invalid setting {name}={value!r} (from environment variable {name}): "
            f"no such setting{hint}"
        )


def _double_underscore_hint(name: str) -> str:
    rest = name[len(ENV_PREFIX) + 1 :].upper()
    if rest.startswith("SOURCES_") and not rest.startswith("SOURCES__"):
        example = f"{ENV_PREFIX}_SOURCES__ORDERS__TYPE"
        return f"; nested keys need a double underscore between levels, as in {example}"
    return ""


def _lower_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


def _host(reader: OptionReader, default: str) -> str:
    """Return the listen address: an IPv4 or IPv6 address or a host name."""
    value = reader.raw("host")
    if value is None:
        return default
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if _HOSTNAME.match(value):
                return value
        else:
            return value
    raise reader.fail("host", value, "an IP address or a host name")


def _build(
    values: Mapping[str, Any],
    origins: Origins,
    source_parsers: Mapping[str, SourceParser],
) -> Settings:
    reader = OptionReader(values, (), origins)
    defaults = Settings()
    settings = Settings(
        host=_host(reader, defaults.host),
        port=reader.integer("port", defaults.port, 1, 65535),
        codec=reader.choice("codec", defaults.codec, CODECS),
        id=reader.string("id", new_instance_id()),
        enable_metric=reader.boolean("enable_metric", defaults.enable_metric),
        shutdown_timeout=reader.number(
            "shutdown_timeout", defaults.shutdown_timeout, minimum=0.1
        ),
        event_queue_size=reader.integer(
            "event_queue_size", defaults.event_queue_size, 1
        ),
        client_queue_bytes=reader.integer(
            "client_queue_bytes", defaults.client_queue_bytes, 1024
        ),
        max_event_bytes=reader.integer("max_event_bytes", defaults.max_event_bytes, 1),
        max_client_message_bytes=reader.integer(
            "max_client_message_bytes", defaults.max_client_message_bytes, 16
        ),
        ping_interval=reader.number("ping_interval", defaults.ping_interval),
        ping_timeout=reader.number("ping_timeout", defaults.ping_timeout),
        compression=reader.boolean("compression", defaults.compression),
        log_level=reader.choice("log_level", defaults.log_level, LOG_LEVELS),
        log_format=reader.choice("log_format", defaults.log_format, LOG_FORMATS),
        sources=_build_sources(reader, origins, source_parsers),
        **_build_edge(reader, origins),
    )
    reader.check_unknown()
    return settings


def _build_edge(reader: OptionReader, origins: Origins) -> dict[str, Any]:
    """Read the settings of the browser edge: origins, auth, TLS and limits."""
    defaults = Settings()
    cert_file, key_file = _build_tls(reader)
    return {
        "allowed_origins": _build_allowed_origins(reader),
        "allow_missing_origin": reader.boolean(
            "allow_missing_origin", defaults.allow_missing_origin
        ),
        "auth": _build_auth(reader, origins),
        "tls_cert_file": cert_file,
        "tls_key_file": key_file,
        "max_connections": reader.integer(
            "max_connections", defaults.max_connections, 0
        ),
        "max_connection_rate_per_address": reader.number(
            "max_connection_rate_per_address",
            defaults.max_connection_rate_per_address,
        ),
        "open_timeout": _positive(reader, "open_timeout", defaults.open_timeout),
        "demo_page": reader.boolean("demo_page", defaults.demo_page),
    }


def _positive(reader: OptionReader, key: str, default: float) -> float:
    value = reader.number(key, default)
    if value <= 0:
        raise reader.fail(key, reader.raw(key), "a number greater than 0")
    return value


def _build_allowed_origins(reader: OptionReader) -> tuple[str, ...]:
    if not reader.has("allowed_origins"):
        reader.used.add("allowed_origins")
        return ()
    entries = reader.string_list("allowed_origins")
    for entry in entries:
        problem = check_origin_pattern(entry.strip())
        if problem is not None:
            raise reader.fail(
                "allowed_origins",
                reader.raw("allowed_origins"),
                f"a list of origins or *; {entry!r} is {problem}",
            )
    return tuple(entry.strip() for entry in entries)


#: Shortest secrets accepted: RFC 7518 requires an HS256 key of at least
#: 256 bits; a shared token gets the same floor.
MIN_SECRET_CHARS = 32


def _build_auth(reader: OptionReader, origins: Origins) -> AuthSettings:
    table = reader.raw("auth") or {}
    if not isinstance(table, Mapping):
        raise reader.fail("auth", table, "a table with mode, secret, ...")
    auth = OptionReader(table, ("auth",), origins)
    defaults = AuthSettings()
    mode = auth.choice("mode", defaults.mode, AUTH_MODES)
    if mode == "none":
        for key in ("secret", "issuer", "audience", "leeway"):
            auth.raw(key)
        auth.check_unknown()
        return AuthSettings()

    secret = auth.string("secret")
    if len(secret) < MIN_SECRET_CHARS:
        # The message must not show the secret itself.
        raise auth.fail(
            "secret",
            f"<{len(secret)} characters>",
            f"at least {MIN_SECRET_CHARS} characters",
        )
    settings = AuthSettings(
        mode=mode,
        secret=secret,
        issuer=auth.string("issuer")
        if mode == "jwt"
        else auth.optional_string("issuer"),
        audience=auth.string("audience")
        if mode == "jwt"
        else auth.optional_string("audience"),
        leeway=auth.number("leeway", defaults.leeway),
    )
    auth.check_unknown()
    return settings


def _build_tls(reader: OptionReader) -> tuple[str | None, str | None]:
    cert_file = reader.optional_string("tls_cert_file")
    key_file = reader.optional_string("tls_key_file")
    if (cert_file is None) != (key_file is None):
        missing = "tls_key_file" if key_file is None else "tls_cert_file"
        raise reader.fail(missing, None, "a file name, since TLS needs both files")
    if cert_file is None or key_file is None:
        return None, None
    for key, path in (("tls_cert_file", cert_file), ("tls_key_file", key_file)):
        if not Path(path).is_file():
            raise reader.fail(key, path, "an existing, readable PEM file")
    try:
        make_tls_context(cert_file, key_file)
    except (OSError, ssl.SSLError) as error:
        raise reader.fail(
            "tls_cert_file", cert_file, f"a certificate matching tls_key_file ({error})"
        ) from error
    return cert_file, key_file


def make_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """Return a server TLS context (TLS 1.2 or later) for the two PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def _build_sources(
    reader: OptionReader,
    origins: Origins,
    source_parsers: Mapping[str, SourceParser],
) -> tuple[SourceSettings, ...]:
    table = reader.raw("sources") or {}
    if not isinstance(table, Mapping):
        raise reader.fail("sources", table, "a table of named sources")
    result = []
    for name, options in table.items():
        if not isinstance(options, Mapping):
            raise reader.fail(f"sources.{name}", options, "a table of source options")
        source_reader = OptionReader(options, ("sources", name), origins)
        kind = source_reader.choice("type", None, source_parsers)
        parsed = source_parsers[kind](source_reader)
        source_reader.check_unknown()
        result.append(SourceSettings(name=name, type=kind, options=parsed))
    return tuple(result)
