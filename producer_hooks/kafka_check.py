"""Why Kafka cannot be used: away for now, or refusing us until the settings change.

aiokafka's clients fold every bootstrap failure into one ``KafkaConnectionError`` ("Unable to
bootstrap"), so a wrong SCRAM password reads like a broker that is down. :func:`check_connection`
connects to the bootstrap servers the way the clients will and tells the two apart.
"""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from producer_hooks.settings import KafkaSettings

AUTHENTICATION_ERRORS = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)


class KafkaRefused(Exception):
    """Kafka answered and refused us (credentials, mechanism, certificate): retrying cannot help.
    The message is one line naming the settings to check."""

    def __init__(self, message: str, *, reason: str, credentials: bool) -> None:
        super().__init__(message)
        self.reason = reason  # the broker's side of it, without the advice
        self.credentials = credentials  # refused who we are (not, say, a certificate we do not trust)


class KafkaUnreachable(Exception):
    """No bootstrap server could be reached; it may be back later."""


async def check_connection(kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Return once one bootstrap server accepts a connection (with TLS and SASL as configured).

    Raises :class:`KafkaRefused` as soon as a server refuses our credentials or certificate, and
    :class:`KafkaUnreachable` when none answers.
    """
    options = kafka.client_options()
    options.pop("bootstrap_servers")
    failures = []
    for host, port, _ in collect_hosts(kafka.bootstrap_servers, randomize=False):
        where = f"{host}:{port}"
        try:
            connection = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **options), timeout_s
            )
        except AUTHENTICATION_ERRORS as err:
            reason = f"{where}: {describe_authentication_error(err, kafka)}"
            raise KafkaRefused(
                f"Kafka refused the credentials ({reason}); check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and "
                "KAFKA_SASL_MECHANISM",
                reason=reason,
                credentials=True,
            ) from None
        except ssl.SSLError as err:
            detail = getattr(err, "verify_message", None)
            reason = f"{where}: TLS handshake failed: {err.reason or _text(err)}{f' ({detail})' if detail else ''}"
            raise KafkaRefused(f"Kafka: {reason}; check KAFKA_SSL_CAFILE", reason=reason, credentials=False) from None
        except Exception as err:  # noqa: BLE001 - down, closed, timed out: try the next server
            failures.append(f"{where}: {_text(err)}")
        else:
            connection.close()
            return
    raise KafkaUnreachable("; ".join(failures) or f"no bootstrap server in {kafka.bootstrap_servers!r}")


def describe_authentication_error(err: BaseException, kafka: KafkaSettings) -> str:
    """One line on a refused authentication, in the broker's words when it gave some."""
    if isinstance(err, UnsupportedSaslMechanismError):
        return f"authentication failed: the broker does not offer SASL mechanism {kafka.sasl_mechanism}"
    said = err.args[0] if err.args and isinstance(err.args[0], str) else ""
    detail = f" ({_text(said)})" if said.strip() else ""
    return f"authentication failed for user {kafka.sasl_username!r} with {kafka.sasl_mechanism}{detail}"


def _text(err: object) -> str:
    if isinstance(err, asyncio.TimeoutError):
        return "no answer"
    return " ".join(str(err).split()) or type(err).__name__


__all__ = ["AUTHENTICATION_ERRORS", "KafkaRefused", "KafkaUnreachable", "check_connection", "describe_authentication_error"]
