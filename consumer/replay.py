"""`replay`: the runs topic read again, from the beginning or a point in time, to rebuild reports.

Partitions are assigned by hand, outside any group, so the live consumer's committed offsets are
never touched; the span ends at the end offsets seen when the replay started.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.origin import Delivery, Origin, compare
from consumer.rebuild import Summary
from consumer.records import RecordReader, Unreadable
from consumer.settings import Settings
from consumer.topics import partitions_of
from producer_hooks.events import InvalidEvent, decode_event

log = logging.getLogger(__name__)


async def finished_runs_in_topic(settings: Settings, summary: Summary, *, since: datetime | None = None,
                                 uuids: Collection[str] = ()) -> dict[str, Delivery]:
    """The last finished event of every run in the span, by uuid (a re-published run counts once)."""
    topic = settings.kafka.topic
    assigned = [TopicPartition(topic, p) for p in await partitions_of(settings.kafka, topic)]
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **settings.kafka.client_options())
    await consumer.start()
    try:
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        starts = await _start_offsets(consumer, assigned, since)
        remaining = {}
        for tp in assigned:
            consumer.seek(tp, starts[tp])
            if starts[tp] < ends[tp]:
                remaining[tp] = ends[tp]
        log.info("replaying %d events of %s%s", sum(ends[tp] - starts[tp] for tp in assigned), topic,
                 f" since {since.isoformat()}" if since else "")

        reader = RecordReader(consumer, settings.kafka.client_options())
        runs: dict[str, Delivery] = {}
        while remaining:
            batch = await reader.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= remaining.get(tp, -1):
                        continue  # past the span: published after the replay began
                    summary.seen += 1
                    if isinstance(record, Unreadable):
                        summary.skip("unreadable record")
                        continue
                    origin = Origin.from_record(record.topic, record.partition, record.offset, record.timestamp,
                                                live=False)
                    try:
                        event = decode_event(record.key, record.value, record.headers, now=origin.published_at,
                                             limits=settings.limits)
                    except InvalidEvent as err:
                        summary.skip("invalid event")
                        log.debug("skipping %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, err)
                        continue
                    if uuids and event.run.uuid not in uuids:
                        summary.skip("other uuid")
                    elif event.kind != "finished":
                        summary.skip("not finished")
                    else:
                        previous = runs.get(event.run.uuid)
                        if previous is None or compare(origin, previous.origin) > 0:
                            runs[event.run.uuid] = Delivery(event, origin)
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
        return runs
    finally:
        await consumer.stop()


async def _start_offsets(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                         since: datetime | None) -> dict[TopicPartition, int]:
    if since is None:
        return await consumer.beginning_offsets(partitions)
    ends = await consumer.end_offsets(partitions)
    found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
    # No record at or after `since` in a partition: nothing of it is in the span.
    return {tp: found[tp].offset if found[tp] is not None else ends[tp] for tp in partitions}
