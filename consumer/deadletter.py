"""The dead-letter topic: events we could not turn into reports, with the reason in headers."""

from __future__ import annotations

import dataclasses
import logging

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError

from consumer.settings import Settings
from producer_hooks.redaction import Redactor

log = logging.getLogger(__name__)


def dead_letter_headers(record: ConsumerRecord, reason: str) -> list[tuple[str, bytes]]:
    """The original headers, plus where the event came from and why it is here."""
    return [
        *((key, value) for key, value in (record.headers or ()) if not key.startswith("dead-letter-")),
        ("dead-letter-reason", reason.encode()[:4000]),
        ("dead-letter-topic", record.topic.encode()),
        ("dead-letter-partition", str(record.partition).encode()),
        ("dead-letter-offset", str(record.offset).encode()),
    ]


class DeadLetters:
    def __init__(self, settings: Settings) -> None:
        self.topic = settings.dead_letter_topic
        self._producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **settings.kafka.client_options())
        self._retry = dataclasses.replace(settings.retry, attempts=None)
        self._redact = Redactor.of(settings.secrets())  # reasons quote errors, and errors may quote secrets

    async def start(self) -> None:
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()  # releases what a failed start opened
            raise

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, record: ConsumerRecord, reason: str) -> None:
        """Park the record; keeps trying while the broker is away (the record's offset must not be
        committed before it is parked, or it would be lost)."""
        reason = self._redact(reason)
        headers = dead_letter_headers(record, reason)
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        async for attempt in self._retry.retrying(lambda err: isinstance(err, KafkaError), f"parking {where} in {self.topic}"):
            with attempt:
                await self._producer.send_and_wait(self.topic, value=record.value, key=record.key, headers=headers)
        log.warning("event at %s parked in %s: %s", where, self.topic, reason)
