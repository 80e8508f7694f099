"""Reading a topic back with a plain aiokafka consumer, to check what was published."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

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
