"""The dead-letter topic: events we could not turn into reports, with the reason in headers.

Every copy fits: a record the broker accepted can be larger than what the producer may send once
the reason headers are added, so the copy's largest part (usually the value) is cut to fit, with a
header saying how large it was. A record that could not even be read is parked as a
message without value whose key and headers say where it is. The original stays in the runs topic.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from consumer.records import Unreadable
from consumer.settings import Settings
from consumer.topics import max_message_bytes
from producer_hooks.kafka_errors import unavailable
from producer_hooks.redaction import Redactor

log = logging.getLogger(__name__)

Headers = list[tuple[str, "bytes | None"]]

# aiokafka's default: the producer refuses larger messages before the broker sees them.
MAX_REQUEST_SIZE = 1048576
MAX_REASON_BYTES = 4000

TRUNCATED = "dead-letter-truncated"  # the value was cut; the header holds its original size in bytes
KEY_TRUNCATED = "dead-letter-key-truncated"  # the same for the key
HEADERS_DROPPED = "dead-letter-headers-dropped"  # how many original headers were left out


def location_headers(topic: str, partition: int, offset: int, reason: str) -> Headers:
    return [
        ("dead-letter-reason", reason.encode()[:MAX_REASON_BYTES]),
        ("dead-letter-topic", topic.encode()),
        ("dead-letter-partition", str(partition).encode()),
        ("dead-letter-offset", str(offset).encode()),
    ]


def _original_headers(record: ConsumerRecord) -> Headers:
    return [(key, value) for key, value in (record.headers or ()) if not key.startswith("dead-letter-")]


def message_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """The size the producer checks against ``max_request_size`` (an upper bound of the batch)."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers))


def fit(key: bytes | None, value: bytes | None, original: Headers, own: Headers,
        limit: int) -> tuple[bytes | None, bytes | None, Headers]:
    """The copy's key, value and headers within ``limit`` bytes. While too large, the largest of
    value, key and original headers goes (the value first on a tie), noted in a header of its
    own; then what went of the key and the value comes back as far as it fits."""
    whole_key, whole_value = key, value
    notes: Headers = []

    def size() -> int:
        return message_size(key, value, [*original, *own, *notes])

    while size() > limit:
        header_bytes = sum(len(name.encode()) + len(data or b"") for name, data in original)
        part, length = max((TRUNCATED, len(value or b"")), (KEY_TRUNCATED, len(key or b"")),
                           (HEADERS_DROPPED, header_bytes), key=lambda candidate: candidate[1])
        if not length:
            break  # our own headers alone are over the limit: nothing of the record is left to cut
        if part == HEADERS_DROPPED:
            notes.append((HEADERS_DROPPED, str(len(original)).encode()))
            original = []
        elif part == TRUNCATED:
            notes.append((TRUNCATED, str(len(value or b"")).encode()))
            value = b""
        else:
            notes.append((KEY_TRUNCATED, str(len(key or b"")).encode()))
            key = b""
    cut = {name for name, _ in notes}
    if KEY_TRUNCATED in cut:
        key = _cut(whole_key or b"", limit - size())
    if TRUNCATED in cut:
        value = _cut(whole_value or b"", limit - size())
    return key, value, [*original, *own, *notes]


def _cut(data: bytes, room: int) -> bytes:
    """``data`` cut so that it and its length prefix (a varint of up to 5 bytes) take at most
    ``room`` bytes more than an empty one."""
    return data[: max(room - 4, 0)]


class DeadLetters:
    def __init__(self, settings: Settings) -> None:
        self.topic = settings.dead_letter_topic
        self._kafka = settings.kafka
        self._producer = AIOKafkaProducer(acks="all", enable_idempotence=True, max_request_size=MAX_REQUEST_SIZE,
                                          **settings.kafka.client_options())
        self._retry = dataclasses.replace(settings.retry, attempts=None)
        self._redact = Redactor.of(settings.secrets())  # reasons quote errors, and errors may quote secrets
        self.limit = MAX_REQUEST_SIZE  # and the broker's limit for the topic, once known

    async def start(self) -> None:
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()  # releases what a failed start opened
            raise
        try:
            self.limit = min(MAX_REQUEST_SIZE, await max_message_bytes(self._kafka, self.topic))
        except Exception as err:  # noqa: BLE001 - e.g. no right to describe configs: the producer's limit holds
            log.warning("cannot read max.message.bytes of %s (%s); dead letters are kept under %d bytes",
                        self.topic, err, self.limit)

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, record: ConsumerRecord, reason: str) -> bool:
        """Park a copy of the record, cut to fit. Whether it was parked: keeps trying while the
        broker is away (the record's offset must not be committed before it is parked, or it
        would be lost); gives up, logged once at ERROR, on what would fail the same way again."""
        reason = self._redact(reason)  # reasons quote errors, and errors may quote secrets
        own = location_headers(record.topic, record.partition, record.offset, reason)
        key, value, headers = fit(record.key, record.value, _original_headers(record), own, self.limit)
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if key is None and value is None:  # Kafka allows it; producers need one of them
            key = where.encode()
        cuts = [f"{name}: {(data or b'').decode()}" for name, data in headers
                if name in (TRUNCATED, KEY_TRUNCATED, HEADERS_DROPPED)]
        if cuts:
            log.warning("event at %s is too large to copy whole into %s (at most %d bytes): %s", where, self.topic,
                        self.limit, ", ".join(cuts))
        return await self._park(where, key, value, headers, reason)

    async def park_unreadable(self, marker: Unreadable) -> bool:
        """Park a message without value that says where the unreadable record is and why; its key
        is that place too (``topic[partition]@offset``)."""
        reason = f"unreadable record: {marker.reason}"
        headers = location_headers(marker.topic, marker.partition, marker.offset, reason)
        return await self._park(marker.where, marker.where.encode(), None, headers, reason)

    async def _park(self, where: str, key: bytes | None, value: bytes | None, headers: Headers, reason: str) -> bool:
        try:
            async for attempt in self._retry.retrying(unavailable, f"parking {where} in {self.topic}"):
                with attempt:
                    await self._producer.send_and_wait(self.topic, value=value, key=key, headers=headers)
        except Exception as err:  # noqa: BLE001 - sending again would fail the same way
            log.error("event at %s could not be parked in %s and is skipped (%s: %s); it stays in its topic at "
                      "that offset. Reason it was to be parked: %s", where, self.topic, type(err).__name__, err, reason)
            return False
        log.warning("event at %s parked in %s: %s", where, self.topic, reason)
        return True
