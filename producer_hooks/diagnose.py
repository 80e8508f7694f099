"""Why a Kafka client could not bootstrap.

aiokafka reports every failed bootstrap as "Unable to bootstrap from [...]", whether nothing
listens, TLS fails or the broker refuses the credentials; the cause only reaches its log. A refused
password is not an outage that ends by itself, so after such a failure :func:`diagnose` opens one
connection by hand, the way the client does, to name the cause.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    KafkaError,
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


@dataclass(frozen=True)
class BootstrapFailure:
    reason: str  # one line, never a secret
    credentials_refused: bool = False  # the broker answered and refused who we are: fix the settings


async def diagnose(kafka: KafkaSettings, timeout_s: float) -> BootstrapFailure | None:
    """What a fresh connection to the bootstrap servers says: refused credentials, a failed TLS
    handshake, or nothing worth naming (``None``: the broker is down or unreachable)."""
    if kafka.security_protocol == "PLAINTEXT":
        return None  # neither TLS nor SASL: nothing but the connection itself can fail
    options = kafka.client_options()
    for host, port, _ in collect_hosts(kafka.bootstrap_servers, randomize=False):
        where = f"{host}:{port}"
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    port,
                    request_timeout_ms=int(timeout_s * 1000),
                    ssl_context=options.get("ssl_context"),
                    security_protocol=kafka.security_protocol,
                    sasl_mechanism=kafka.sasl_mechanism,
                    sasl_plain_username=kafka.sasl_username,
                    sasl_plain_password=kafka.sasl_password.reveal() if kafka.sasl_password else None,
                ),
                timeout_s,
            )
        except AUTHENTICATION_ERRORS as err:
            return BootstrapFailure(f"{where}: {describe_authentication_error(err, kafka)}", credentials_refused=True)
        except ssl.SSLError as err:
            return BootstrapFailure(f"{where}: TLS handshake failed: {err.reason or _one_line(err)}")
        except (KafkaError, OSError, asyncio.TimeoutError):
            continue  # this one is down; another may say more
        else:
            conn.close()
    return None


def describe_authentication_error(err: BaseException, kafka: KafkaSettings) -> str:
    """One line on a refused authentication, in the broker's words when it gave some."""
    if isinstance(err, UnsupportedSaslMechanismError):
        return f"authentication failed: the broker does not offer SASL mechanism {kafka.sasl_mechanism}"
    said = err.args[0] if err.args and isinstance(err.args[0], str) else ""
    detail = f" ({_one_line(said)})" if said.strip() else ""
    return f"authentication failed for user {kafka.sasl_username!r} with {kafka.sasl_mechanism}{detail}"


def _one_line(err: object) -> str:
    return " ".join(str(err).split()) or type(err).__name__


__all__ = ["AUTHENTICATION_ERRORS", "BootstrapFailure", "describe_authentication_error", "diagnose"]
