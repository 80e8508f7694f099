"""Typed settings read once from the environment.

Every product setting is an environment variable; each is parsed here, once, into frozen dataclasses.
A missing or malformed value raises :class:`SettingsError`, whose message is one line naming the
variable, so command-line entry points can print it instead of a traceback.

Secrets (SASL passwords, API keys, tokens) are read from ``NAME`` or from the file named by
``NAME_FILE`` and are wrapped in :class:`Secret`, which never shows its value in a repr or a log.
"""

from __future__ import annotations

import dataclasses
import math
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from producer_hooks.events import DEFAULT_LIMITS, EventLimits
from producer_hooks.redaction import redact_url_value

Env = Mapping[str, str]
N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """A setting is missing or malformed. ``str(err)`` is a single line naming the variable."""


class Secret:
    """A string that keeps out of reprs, logs and tracebacks; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# -- parsing helpers, shared by every settings class of the product ------------------------------


def env_str(env: Env, name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def env_required(env: Env, name: str, default: str | None = None) -> str:
    value = env_str(env, name, default)
    if value is None:
        raise SettingsError(f"{name} is not set")
    return value


def env_int(env: Env, name: str, default: int, *, minimum: int | None = None) -> int:
    return _env_number(env, name, default, int, "a whole number", minimum)


def env_float(env: Env, name: str, default: float, *, minimum: float | None = None) -> float:
    return _env_number(env, name, default, float, "a number", minimum)


def _env_number(env: Env, name: str, default: N, convert: Callable[[str], N], noun: str, minimum: N | None) -> N:
    raw = env_str(env, name)
    if raw is None:
        return default
    try:
        value = convert(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not {noun}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}={value:g} must be at least {minimum:g}")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(env: Env, name: str, default: bool) -> bool:
    raw = env_str(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


def env_choice(env: Env, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_required(env, name, default).upper()
    if value not in choices:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``scheme://user:password@host/path`` into the URL without its userinfo, the user name and the
    password (percent-decoded; ``None`` when absent). A password may hold an unencoded ``@``: the
    host starts after the last one."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=hostport)), unquote(user) or None, unquote(password) if colon else None


def env_url(env: Env, name: str, default: str | None) -> str | None:
    """An http(s) URL without credentials (see :func:`env_url_credentials` for one that may carry some)."""
    url, user, password = env_url_credentials(env, name, default)
    if user is not None or password is not None:
        raise SettingsError(f"{name} must not carry credentials (user:password@)")
    return url


def env_url_credentials(env: Env, name: str, default: str | None) -> tuple[str | None, str | None, Secret | None]:
    """An http(s) URL, and the user name and password it carried, taken out of it here, once, so no
    URL the product holds contains a secret. Errors echo the value with its userinfo masked."""
    value = env_str(env, name, default)
    if value is None:
        return None, None, None
    shown = redact_url_value(value)
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={shown!r} is not an http:// or https:// URL")
    url, user, password = split_userinfo(value)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = None
    # An "@" after the host is a password cut short by an unencoded "/", "?" or "#".
    if parts is None or "@" in url:
        raise SettingsError(f"{name}={shown!r} is not a valid URL (a / ? or # in its user name or password must be percent-encoded)")
    if not parts.hostname:
        raise SettingsError(f"{name}={shown!r} has no host")
    return url.rstrip("/"), user, Secret(password) if password is not None else None


def env_path(env: Env, name: str, default: Path | None = None, *, must_exist: bool = False) -> Path | None:
    raw = env_str(env, name)
    if raw is None:
        return default
    path = Path(raw).expanduser()
    if must_exist and not path.exists():
        raise SettingsError(f"{name}={raw!r}: no such file")
    return path


def env_secret(env: Env, name: str) -> Secret | None:
    """``NAME`` itself, or the contents of the file named by ``NAME_FILE``."""
    value = env_str(env, name)
    if value is not None:
        return Secret(value)
    path = env_str(env, f"{name}_FILE")
    if path is None:
        return None
    try:
        return Secret(Path(path).expanduser().read_text().strip())
    except OSError as err:
        raise SettingsError(f"{name}_FILE={path!r} cannot be read: {err.strerror}") from None


def ssl_context(cafile: Path | None, certfile: Path | None, keyfile: Path | None, verify: bool = True) -> ssl.SSLContext:
    """A client TLS context: the system CAs (or ``cafile``), an optional client certificate."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if certfile:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# -- Kafka: shared by the hooks and the consumer ------------------------------------------------

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "localhost:9092"
    topic: str = "perf-scale-ci-runs"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: Secret | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @classmethod
    def from_env(cls, env: Env) -> KafkaSettings:
        settings = cls(
            bootstrap_servers=env_required(env, "KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers),
            topic=env_required(env, "RUNS_TOPIC", cls.topic),
            security_protocol=env_choice(env, "KAFKA_SECURITY_PROTOCOL", cls.security_protocol, SECURITY_PROTOCOLS),
            sasl_mechanism=env_choice(env, "KAFKA_SASL_MECHANISM", cls.sasl_mechanism, SASL_MECHANISMS),
            sasl_username=env_str(env, "KAFKA_SASL_USERNAME"),
            sasl_password=env_secret(env, "KAFKA_SASL_PASSWORD"),
            ssl_cafile=env_path(env, "KAFKA_SSL_CAFILE", must_exist=True),
            ssl_certfile=env_path(env, "KAFKA_SSL_CERTFILE", must_exist=True),
            ssl_keyfile=env_path(env, "KAFKA_SSL_KEYFILE", must_exist=True),
        )
        if settings.security_protocol.startswith("SASL") and not (settings.sasl_username and settings.sasl_password):
            raise SettingsError(
                f"KAFKA_SECURITY_PROTOCOL={settings.security_protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
            )
        return settings

    def secrets(self) -> tuple[Secret, ...]:
        return (self.sasl_password,) if self.sasl_password is not None else ()

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = ssl_context(self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.reveal() if self.sasl_password else None
        return options


# -- event limits: shared by the hooks (which refuse) and the consumer (which dead-letters) ------


def limits_from_env(env: Env) -> EventLimits:
    """The event limits, with the longest run window from ``RUN_WINDOW_MAX_HOURS`` (default 168)."""
    name = "RUN_WINDOW_MAX_HOURS"
    raw = env_str(env, name)
    if raw is None:
        return DEFAULT_LIMITS
    try:
        hours = float(raw)
        if not math.isfinite(hours) or hours <= 0:
            raise ValueError
        window = timedelta(hours=hours)
    except (ValueError, OverflowError):
        raise SettingsError(f"{name}={raw!r} is not a positive number of hours") from None
    return dataclasses.replace(DEFAULT_LIMITS, max_window=window)


def default_spool_path(env: Env) -> Path:
    state = env_str(env, "XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "report-hook" / "spool.jsonl"


@dataclass(frozen=True)
class HookSettings:
    """What a publishing pipeline step needs: the broker, where to keep events it cannot send, and
    the limits the consumer will apply to them."""

    kafka: KafkaSettings = KafkaSettings()
    spool_path: Path = Path("spool.jsonl")
    timeout_s: float = 15.0
    limits: EventLimits = DEFAULT_LIMITS

    def secrets(self) -> tuple[Secret, ...]:
        return self.kafka.secrets()

    @classmethod
    def from_env(cls, env: Env | None = None) -> HookSettings:
        env = os.environ if env is None else env
        return cls(
            kafka=KafkaSettings.from_env(env),
            spool_path=env_path(env, "REPORT_HOOK_SPOOL", default_spool_path(env)),  # type: ignore[arg-type]
            timeout_s=env_float(env, "REPORT_HOOK_TIMEOUT", cls.timeout_s, minimum=0.1),
            limits=limits_from_env(env),
        )
