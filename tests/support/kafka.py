"""Reading a topic back with a plain aiokafka consumer, to check what was published; writing raw
record batches, as clients other than aiokafka can."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from consumer.topics import partitions_of
from producer_hooks.settings import KafkaSettings


async def read_topic(kafka: KafkaSettings, topic: str, count: int, timeout: float = 30) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning, waiting until ``count`` arrived or ``timeout``.
    Returns what arrived (maybe more than ``count``: callers assert on the exact list)."""
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None, **kafka.client_options())
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
        # A short grace period, so that extra (duplicate) records are seen too.
        for _ in range(2):
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def topic_size(kafka: KafkaSettings, topic: str) -> int:
    """How many records the topic holds (end offsets minus beginning offsets)."""
    tps = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **kafka.client_options())
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


# -- raw records: bytes other clients can send, which aiokafka's producer would not ------------------

class _RawName(str):
    """A header name whose UTF-8 encoding is whatever bytes we say (aiokafka's pure-Python batch
    builder encodes names with ``name.encode("utf-8")``)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> _RawName:
        name = super().__new__(cls, raw.decode("latin-1"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:  # type: ignore[override]
        return self.raw


RawHeaders = list[tuple[bytes, bytes | None]]


def record_batch(records: list[tuple[bytes | None, bytes | None, RawHeaders]], codec: str | None = None) -> bytes:
    """A v2 record batch holding ``records`` (key, value, headers with names as raw bytes), as a
    librdkafka-based client could send it; compressed with ``codec`` (gzip, snappy, lz4, zstd)."""
    codes = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
    builder = _DefaultRecordBatchBuilderPy(magic=2, compression_type=codes[codec], is_transactional=0,
                                           producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=2**24)
    now = int(time.time() * 1000)
    for delta, (key, value, headers) in enumerate(records):
        builder.append(delta, timestamp=now, key=key, value=value,
                       headers=[(_RawName(name), header_value) for name, header_value in headers])
    return bytes(builder.build())


async def produce_raw(kafka: KafkaSettings, topic: str, partition: int, batch: bytes) -> int:
    """Send ``batch`` to the partition's leader as one Produce request; its first offset. Retries
    while a new topic's leader is being elected."""
    client = AIOKafkaClient(**kafka.client_options())
    await client.bootstrap()
    try:
        await client.add_topic(topic)
        for attempt in range(20):
            leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            response = await client.send(leader, ProduceRequest(None, -1, 30000, [(topic, [(partition, batch)])]))
            [(_, [(_, error_code, offset, *_)])] = response.topics
            error = for_code(error_code)
            if not error_code:
                return offset
            if not error.retriable or attempt == 19:
                raise error(f"producing to {topic}[{partition}]")
            await asyncio.sleep(0.25)
            await client.force_metadata_update()
        raise AssertionError("unreachable")
    finally:
        await client.close()


async def end_offsets(kafka: KafkaSettings, topic: str) -> dict[TopicPartition, int]:
    tps = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **kafka.client_options())
    await consumer.start()
    try:
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def committed_offsets(kafka: KafkaSettings, group: str) -> dict[TopicPartition, int]:
    """The offsets ``group`` has committed, as the broker keeps them."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}
