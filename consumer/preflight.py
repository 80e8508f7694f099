"""What the commands check before they start work.

A failure that retrying cannot fix (credentials refused, a certificate not trusted, the runs topic
missing) becomes :class:`Fatal` here, at start-up, with one line that names what to fix; the
command then exits 2 instead of retrying, crashing deep inside a client, or dead-lettering every
run. A server that is merely away is waited for under the command's retry policy.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone

from consumer.retry import RetryPolicy
from consumer.settings import ThanosSettings
from consumer.thanos import Thanos, ThanosAuthError, ThanosError
from consumer.topics import MissingTopic, partitions_of
from producer_hooks.kafka_check import KafkaRefused, KafkaUnreachable, check_connection
from producer_hooks.settings import KafkaSettings

log = logging.getLogger(__name__)

# Thanos answering slowly at start-up is for the builds to meet; the check only wants a verdict.
THANOS_CHECK_TIMEOUT_S = 10.0


class Fatal(Exception):
    """A failure that retrying cannot fix. ``str(err)`` is one line naming the setting to check."""


async def kafka_ready(kafka: KafkaSettings, retry: RetryPolicy, topic: str | None = None) -> None:
    """Return once Kafka lets us in (and ``topic``, if given, exists).

    An unreachable Kafka is retried under ``retry`` (then :class:`KafkaUnreachable` propagates);
    refused credentials or an untrusted certificate, a missing topic or one we may not see are
    :class:`Fatal` at once.
    """
    what = f"connecting to Kafka at {kafka.bootstrap_servers}"
    try:
        async for attempt in retry.retrying(lambda err: isinstance(err, KafkaUnreachable), what):
            with attempt:
                await check_connection(kafka)
        if topic is not None:
            await partitions_of(kafka, topic)
    except (KafkaRefused, MissingTopic, PermissionError) as err:
        raise Fatal(str(err)) from None


async def thanos_accepts(settings: ThanosSettings) -> None:
    """One instant query: refused credentials are :class:`Fatal`; Thanos being away or slow is
    only logged, since each run's metrics are retried when they are collected."""
    quick = dataclasses.replace(settings, timeout_s=min(settings.timeout_s, THANOS_CHECK_TIMEOUT_S))
    async with Thanos(quick, RetryPolicy(attempts=1)) as thanos:
        try:
            await thanos.instant("vector(1)", datetime.now(timezone.utc))
        except ThanosAuthError as err:
            raise Fatal(f"Thanos at {err}; check the credentials in THANOS_URL, THANOS_USERNAME/THANOS_PASSWORD "
                        "or THANOS_TOKEN") from None
        except ThanosError as err:
            log.warning("Thanos is not answering at start-up (%s); metrics are retried run by run", err)
