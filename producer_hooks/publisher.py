"""Publishing run events to Kafka, with a local spool for when Kafka cannot be reached.

:func:`publish` returns only once the broker has acknowledged the event (``acks='all'``, idempotent
producer) or once the event is safely on disk in the spool. Every publish first sends what the
spool holds, oldest first, so the events of a run reach the topic in the order they happened; a
new event is never sent past an older spooled one.

Delivery is at-least-once. A spooled event is removed from the spool right after its
acknowledgement, one at a time; it is sent a second time only if the process dies between the
broker's acknowledgement and that removal (one event at most), or if a send timed out on our side
after the broker had in fact written it. The consumer tolerates duplicates (reports are written
with ``_id = uuid``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from producer_hooks.events import Event, Message, encode_event
from producer_hooks.kafka_check import (
    AUTHENTICATION_ERRORS,
    KafkaRefused,
    KafkaUnreachable,
    check_connection,
    describe_authentication_error,
)
from producer_hooks.kafka_errors import REFUSED
from producer_hooks.settings import HookSettings
from producer_hooks.spool import LockedSpool, Spool

log = logging.getLogger(__name__)

T = TypeVar("T")

class PublishError(Exception):
    """Kafka refused the event itself (too large, malformed); retrying will not help. One line."""


class _Unavailable(Exception):
    """Kafka cannot take messages now (down, unreachable, timing out, refusing our credentials)."""

    def __init__(self, reason: str, credentials_refused: bool = False) -> None:
        super().__init__(reason)
        self.credentials_refused = credentials_refused


@dataclass(frozen=True)
class PublishResult:
    delivered: int  # messages the broker acknowledged during the call, spooled ones included
    spooled: bool  # the event was not sent; it waits in the spool for the next publish or flush
    pending: int  # events left in the spool after the call
    reason: str | None = None  # why Kafka could not be reached, when something was left behind
    credentials_refused: bool = False  # Kafka refused our credentials: only fixing the settings helps


class Publisher:
    """Publishes events with one producer, started on first need; use as ``async with``."""

    def __init__(self, settings: HookSettings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_path)
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def publish(self, event: Event) -> PublishResult:
        """Deliver the spool, then ``event``; on a Kafka outage, spool ``event`` instead.

        Raises :class:`~producer_hooks.events.InvalidEvent` (before sending anything) if the event
        cannot be encoded, and :class:`PublishError` if the broker refuses the event itself.
        """
        message = encode_event(event)
        async with self.spool.locked() as spool:
            delivered, outage = await self._drain(spool)
            if outage is not None:
                return self._spool_message(spool, message, delivered, outage)
        # The spool was empty: send without holding the lock, so one slow broker does not queue
        # every task of the worker behind us.
        try:
            await self._send(message)
        except _Unavailable as err:
            async with self.spool.locked() as spool:
                return self._spool_message(spool, message, delivered, err)
        return PublishResult(delivered=delivered + 1, spooled=False, pending=0)

    async def flush(self) -> PublishResult:
        """Deliver what the spool holds, oldest first."""
        async with self.spool.locked() as spool:
            delivered, outage = await self._drain(spool)
            pending = len(spool.messages())
        return PublishResult(
            delivered=delivered,
            spooled=False,
            pending=pending,
            reason=str(outage) if outage else None,
            credentials_refused=bool(outage and outage.credentials_refused),
        )

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            # stop() flushes pending batches: bounded, since after an outage there may be some.
            await asyncio.wait_for(producer.stop(), self.settings.timeout_s)
        except Exception as err:  # noqa: BLE001 - closing must not hide the call's real outcome
            log.debug("Kafka producer did not stop cleanly: %s", err)

    async def _drain(self, spool: LockedSpool) -> tuple[int, _Unavailable | None]:
        messages = spool.messages()
        delivered = 0
        for position, message in enumerate(messages):
            try:
                await self._send(message)
            except _Unavailable as err:
                return delivered, err
            except PublishError as err:
                log.error("spooled event %s refused by Kafka, moved to %s: %s",
                          message.key.decode(), self.spool.rejected_path, err)
                spool.reject(message)
            else:
                delivered += 1
            # Forget each event as soon as it is acknowledged: a crash re-sends one event, not all.
            spool.keep(messages[position + 1 :])
        return delivered, None

    def _spool_message(self, spool: LockedSpool, message: Message, delivered: int, outage: _Unavailable) -> PublishResult:
        spool.append(message)
        pending = len(spool.messages())
        log.warning("Kafka unavailable (%s); event %s spooled to %s (%d pending)",
                    outage, message.key.decode(), self.spool.path, pending)
        return PublishResult(delivered=delivered, spooled=True, pending=pending, reason=str(outage),
                             credentials_refused=outage.credentials_refused)

    async def _send(self, message: Message) -> None:
        timeout = self.settings.timeout_s
        try:
            if self._producer is None:
                self._producer = AIOKafkaProducer(
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=int(timeout * 1000),
                    **self.settings.kafka.client_options(),
                )
                await asyncio.wait_for(self._producer.start(), timeout)
            await asyncio.wait_for(
                self._producer.send_and_wait(
                    self.settings.kafka.topic, value=message.value, key=message.key, headers=message.headers
                ),
                timeout,
            )
        except REFUSED as err:  # about the message itself: sending it again, later, cannot succeed
            raise PublishError(f"Kafka refused event {message.key.decode()!r}: {_describe(err)}") from err
        except AUTHENTICATION_ERRORS as err:  # after bootstrap, e.g. on a new connection to a partition leader
            await self.close()
            reason = f"{self.settings.kafka.bootstrap_servers}: {describe_authentication_error(err, self.settings.kafka)}"
            raise _Unavailable(reason, credentials_refused=True) from err
        except (KafkaError, OSError, asyncio.TimeoutError) as err:
            # Start afresh next time: a producer that failed to bootstrap cannot be restarted.
            await self.close()
            if isinstance(err, KafkaConnectionError) and self.settings.kafka.security_protocol != "PLAINTEXT":
                # aiokafka says "unable to bootstrap" whatever the cause: ask once what it was.
                try:
                    await check_connection(self.settings.kafka, timeout)
                except KafkaRefused as refused:
                    raise _Unavailable(refused.reason, refused.credentials) from err
                except KafkaUnreachable:
                    pass
            raise _Unavailable(_describe(err, self.settings)) from err


def _describe(err: BaseException, settings: HookSettings | None = None) -> str:
    if isinstance(err, asyncio.TimeoutError):
        text = f"no answer within {settings.timeout_s:g}s" if settings else "timed out"
    elif isinstance(err, KafkaConnectionError):
        text = "cannot connect"
    else:
        text = " ".join(str(err).split()) or type(err).__name__
    if settings is not None:
        text = f"{settings.kafka.bootstrap_servers}: {text}"
    return text


async def publish(event: Event, settings: HookSettings) -> PublishResult:
    """Publish one event (after the spool), spooling it if Kafka cannot be reached."""
    async with Publisher(settings) as publisher:
        return await publisher.publish(event)


async def flush(settings: HookSettings) -> PublishResult:
    """Deliver the spooled events, oldest first."""
    async with Publisher(settings) as publisher:
        return await publisher.flush()


def publish_sync(event: Event, settings: HookSettings) -> PublishResult:
    """:func:`publish` for synchronous callers (Airflow callbacks, scripts)."""
    return _run_sync(publish(event, settings))


def flush_sync(settings: HookSettings) -> PublishResult:
    return _run_sync(flush(settings))


def _run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Called from a thread that already runs a loop: asyncio.run would refuse, and blocking that
    # loop on itself would deadlock, so the call gets a loop of its own in another thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


__all__ = ["PublishError", "PublishResult", "Publisher", "flush", "flush_sync", "publish", "publish_sync"]
