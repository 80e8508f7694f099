"""The live consumer: a Kafka group member that turns each finished run into its report.

Each finished run is built by a task of its own, at most ``max_in_flight`` at once, so a slow run
never holds up the others. Offsets are committed by hand, only up to the oldest run still in flight
on each partition (see :mod:`consumer.tracker`): a crash repeats work, never skips it, and because
reports are written under the run's uuid, repeating work duplicates nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumer.deadletter import DeadLetters
from consumer.pipeline import Pipeline
from consumer.settings import Settings
from consumer.tracker import OffsetTracker
from producer_hooks.events import InvalidEvent, decode_event

log = logging.getLogger(__name__)

STATUS_EVERY_S = 60.0


class Worker:
    def __init__(self, settings: Settings, pipeline: Pipeline, dead_letters: DeadLetters) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.dead_letters = dead_letters
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.tasks: set[asyncio.Task] = set()
        self.builds = asyncio.Semaphore(settings.max_in_flight)
        self.counts: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain in-flight runs within the budget and commit."""
        consumer = AIOKafkaConsumer(
            group_id=self.settings.group,
            enable_auto_commit=False,  # time-based auto-commit would commit runs still being built
            auto_offset_reset="earliest",
            **self.settings.kafka.client_options(),
        )
        consumer.subscribe([self.settings.kafka.topic], listener=_CommitOnRevoke(self, consumer))
        await consumer.start()
        log.info("consuming %s as group %s (at most %d runs in flight)", self.settings.kafka.topic,
                 self.settings.group, self.settings.max_in_flight)
        loop = asyncio.get_running_loop()
        last_commit = last_status = loop.time()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=self.settings.max_in_flight)
                for partition, records in batch.items():
                    for record in records:
                        self._accept(partition, record)
                self._apply_backpressure(consumer)
                now = loop.time()
                if now - last_commit >= self.settings.commit_interval_s:
                    await self.commit(consumer)
                    last_commit = now
                if now - last_status >= STATUS_EVERY_S:
                    self._log_status()
                    last_status = now
            await self._drain(consumer)
        finally:
            await consumer.stop()
        self._log_status()

    def _accept(self, partition: TopicPartition, record: ConsumerRecord) -> None:
        self.tracker.start(partition, record.offset)
        task = asyncio.create_task(self._handle(partition, record))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, partition: TopicPartition, record: ConsumerRecord) -> None:
        # A cancelled task (drain budget exceeded) leaves its offset in flight, so it is redone.
        try:
            event = decode_event(record.key, record.value, record.headers)
        except InvalidEvent as err:
            self.counts["invalid"] += 1
            await self.dead_letters.send(record, f"invalid event: {err}")
        else:
            if event.kind == "finished":
                async with self.builds:
                    try:
                        outcome = await self.pipeline.process(event)
                        self.counts[outcome.write.value] += 1
                    except Exception as err:  # retries are exhausted by now
                        log.exception("report of %s could not be built; once the cause is fixed, rebuild it with "
                                      "`report-consumer replay --uuid %s`", event.run.uuid, event.run.uuid)
                        self.counts["dead-lettered"] += 1
                        await self.dead_letters.send(record, f"report not built: {type(err).__name__}: {err}")
            else:
                self.counts["started"] += 1
                log.debug("run %s (%s) started on %s", event.run.uuid, event.run.benchmark, event.run.cluster_name)
        self.tracker.finish(partition, record.offset)

    def _apply_backpressure(self, consumer: AIOKafkaConsumer) -> None:
        """Pause fetching while too much is in flight; polling goes on, so the group keeps us."""
        in_flight = self.tracker.in_flight()
        if in_flight >= self.settings.max_in_flight:
            newly = consumer.assignment() - consumer.paused()
            if newly:
                consumer.pause(*newly)
                log.info("fetching paused: %d runs in flight (MAX_IN_FLIGHT=%d)", in_flight, self.settings.max_in_flight)
        elif consumer.paused():
            consumer.resume(*consumer.paused())
            log.info("fetching resumed: %d runs in flight", in_flight)

    async def commit(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition] | None = None) -> None:
        offsets = self.tracker.to_commit()
        owned = consumer.assignment() if partitions is None else partitions
        offsets = {partition: offset for partition, offset in offsets.items() if partition in owned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as err:  # rebalancing or broker away: the next commit carries the same offsets
            log.warning("commit of %s failed (%s); will retry", _describe(offsets), err)
            return
        self.tracker.committed(offsets)
        log.debug("committed %s", _describe(offsets))

    async def _drain(self, consumer: AIOKafkaConsumer) -> None:
        consumer.pause(*consumer.assignment())
        if self.tasks:
            log.info("stopping: waiting up to %g s for %d runs in flight", self.settings.drain_timeout_s, len(self.tasks))
            _, late = await asyncio.wait(set(self.tasks), timeout=self.settings.drain_timeout_s)
            for task in late:
                task.cancel()
            if late:
                log.warning("%d runs did not finish in time; they will be built again on the next start", len(late))
                await asyncio.gather(*late, return_exceptions=True)
        await self.commit(consumer)

    def _log_status(self) -> None:
        counts = ", ".join(f"{key} {value}" for key, value in sorted(self.counts.items())) or "nothing yet"
        log.info("in flight %d; %s", self.tracker.in_flight(), counts)


class _CommitOnRevoke(ConsumerRebalanceListener):
    """Commit what is finished before partitions move to another member, then let them go."""

    def __init__(self, worker: Worker, consumer: AIOKafkaConsumer) -> None:
        self.worker = worker
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            await self.worker.commit(self.consumer, set(revoked))
            self.worker.tracker.forget(list(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing")


def _describe(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in sorted(offsets.items()))
