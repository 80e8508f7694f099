"""The safety net that keeps secrets out of everything a user can see.

Secrets are kept out by construction first: settings take credentials out of URLs when they are
read (:func:`producer_hooks.settings.split_userinfo`), and :class:`~producer_hooks.settings.Secret`
never shows its value. This module catches what we do not word ourselves: exception messages and
tracebacks of libraries (aiohttp, elastic_transport, aiokafka), reasons that quote them, and
documents pipelines publish (a ``build_url`` with a token in it).

:class:`Redactor` removes from a text every known secret value, the userinfo of any
``scheme://user:password@host`` URL and the value of any ``Authorization`` header;
:class:`RedactingFilter` applies it to every log record a handler emits, tracebacks included.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

MASK = "***"

# Shorter values would match inside ordinary words of every log line, and the holes left there
# would spell the value out anyway.
MIN_SECRET_LENGTH = 4

# The userinfo of a URL runs from "scheme://" to the last "@" before the authority ends ("/", "?",
# "#", whitespace, quotes): a password with an unencoded "@" in it is still masked whole.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#'\"<>`\\]*@")
# "Authorization: Basic ...", 'authorization': 'Bearer ...', authorization=ApiKey ...
_AUTHORIZATION = re.compile(
    r"(?P<name>\bauthorization['\"]?\s*[:=]\s*['\"]?)(?P<scheme>(?:basic|bearer|apikey)\s+)?[^\s'\",}]+",
    re.IGNORECASE,
)
# A rejected URL setting is echoed with everything before its last "@" masked: when a value does
# not parse, where its userinfo ends is anyone's guess, so the guess is the widest one.
_URL_VALUE_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)?.*@", re.DOTALL)


class _Revealable(Protocol):
    def reveal(self) -> str: ...


def strip_userinfo(text: str) -> str:
    """``text`` with the userinfo of every ``scheme://user:password@`` URL in it masked."""
    return _USERINFO.sub(lambda match: f"{match['scheme']}{MASK}@", text)


def redact_url_value(value: str) -> str:
    """A URL setting's value as it may be echoed in an error: everything before its last ``@``
    masked, whether or not it parses as a URL."""
    return _URL_VALUE_USERINFO.sub(lambda match: f"{match['scheme'] or ''}{MASK}@", value)


@dataclass(frozen=True)
class Redactor:
    """``redactor(text)``: ``text`` without the known secret values, URL userinfo or
    ``Authorization`` values. A redactor without secrets still masks the last two."""

    secrets: tuple[str, ...] = ()  # longest first, so a secret containing another goes whole

    @classmethod
    def of(cls, values: Iterable[str | _Revealable | None]) -> Redactor:
        """A redactor for ``values`` (strings or :class:`Secret`; ``None`` is skipped), each also in
        its percent-encoded form, as it appears inside a URL."""
        found: set[str] = set()
        for value in values:
            if value is None:
                continue
            text = value if isinstance(value, str) else value.reveal()
            for form in (text, quote(text, safe=""), quote(text, safe="!$&'()*+,;=")):
                if len(form) >= MIN_SECRET_LENGTH:
                    found.add(form)
        return cls(tuple(sorted(found, key=lambda s: (-len(s), s))))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = strip_userinfo(text)
        return _AUTHORIZATION.sub(lambda match: f"{match['name']}{match['scheme'] or ''}{MASK}", text)

    def apply(self, value: Any) -> Any:
        """Every string inside ``value`` (dicts, lists, tuples, nested) redacted; the rest as is."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {key: self.apply(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.apply(item) for item in value)
        return value


_TRACEBACKS = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Redacts each record's final message, exception text and stack before any handler formats it.

    Installed on handlers (not loggers), so records of every library logger that propagate to
    them are covered. ``redactor`` may be replaced once more secrets are known (after settings).
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not bypass redaction
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.redactor(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


def install(redactor: Redactor, logger: logging.Logger | None = None) -> RedactingFilter:
    """Put one :class:`RedactingFilter` on every handler of ``logger`` (default: the root logger)
    and on logging's last-resort handler, in place of one installed before; return it, so its
    redactor can be updated."""
    redacting = RedactingFilter(redactor)
    target = logging.getLogger() if logger is None else logger
    for handler in [*target.handlers, logging.lastResort]:
        if handler is None:
            continue
        for earlier in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(earlier)
        handler.addFilter(redacting)
    return redacting
