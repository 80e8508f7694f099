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

_REFUSED_CREDENTIALS = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)


class KafkaRefused(Exception):
    """Kafka answered and refused us (credentials, mechanism, certificate): retrying cannot help.
    The message is one line naming the settings to check."""


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
        except _REFUSED_CREDENTIALS as err:
            raise KafkaRefused(
                f"Kafka at {where} refused the credentials of user {kafka.sasl_username!r} ({kafka.sasl_mechanism}): "
                f"{_text(err)}; check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
            ) from None
        except ssl.SSLCertVerificationError as err:
            raise KafkaRefused(
                f"Kafka at {where}: its TLS certificate is not trusted ({err.verify_message}); check KAFKA_SSL_CAFILE"
            ) from None
        except Exception as err:  # noqa: BLE001 - down, closed, timed out: try the next server
            failures.append(f"{where}: {_text(err)}")
        else:
            connection.close()
            return
    raise KafkaUnreachable("; ".join(failures) or f"no bootstrap server in {kafka.bootstrap_servers!r}")


def _text(err: BaseException) -> str:
    if isinstance(err, asyncio.TimeoutError):
        return "no answer"
    if isinstance(err, UnsupportedSaslMechanismError):
        return "the broker does not offer this SASL mechanism"
    return " ".join(str(err).split()) or type(err).__name__
