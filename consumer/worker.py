"""The live consumer: a Kafka group member that turns each finished run into its report.

Each finished run is built by a task of its own, at most ``max_in_flight`` at once, so a slow run
never holds up the others. Offsets are committed by hand, only up to the oldest event still in
flight on each partition (see :mod:`consumer.tracker`): a crash repeats work, never skips it, and
because reports are written under the run's uuid, repeating work duplicates nothing.

One run, one build: a newer event of a run supersedes its build still in flight (which is
cancelled), and an older one arriving after a newer is dropped, so builds of one uuid never race.
The write itself is conditional on the event's origin as well (see :mod:`consumer.sink`), which
covers other processes (a replay, a member that lost its partition) writing the same run.

A server's outage does not fail a run: its build waits (see :mod:`consumer.outage`), holding its
place; once ``max_in_flight`` builds wait, fetching pauses until they can go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumer import pending
from consumer.deadletter import DeadLetters
from consumer.origin import Origin, compare
from consumer.outage import OutageLimitExceeded
from consumer.pending import Started, due_date
from consumer.pipeline import Pipeline
from consumer.records import RecordReader, Unreadable
from consumer.settings import Settings
from consumer.sink import ReportRejected
from consumer.telemetry import INVALID, UNREADABLE, Telemetry, dead_letter_reason, follow_lag
from consumer.tracker import OffsetTracker
from producer_hooks.events import FINISHED, Event, InvalidEvent, decode_event

log = logging.getLogger(__name__)

STATUS_EVERY_S = 60.0
# Records handed out by one poll: enough that `started` events flow at thousands a second; finished
# ones beyond the build slots wait their turn (and fetching pauses meanwhile).
MAX_RECORDS = 256
POLL_MS = 500
# Started runs waiting to be stored in the pending index before fetching pauses (an outage).
MAX_STARTED_WAITING = 10_000
# While paused, how long to wait for a build slot before polling again (keeps the group membership).
PAUSED_POLL_S = 1.0


@dataclass
class _Build:
    """The build of one run's report, from one of its events."""

    uuid: str
    partition: TopicPartition
    offset: int
    origin: Origin
    task: asyncio.Task | None = None
    superseded: bool = False  # cancelled because a later event of the run arrived


class Worker:
    def __init__(self, settings: Settings, pipeline: Pipeline, dead_letters: DeadLetters,
                 telemetry: Telemetry | None = None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.dead_letters = dead_letters
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.tasks: set[asyncio.Task] = set()
        self.builds: dict[str, _Build] = {}  # uuid -> its newest build, running or waiting for a slot
        self.slots = asyncio.Semaphore(settings.max_in_flight)
        self.slot_freed = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self._status_counts: Counter[str] = Counter()
        self._status_at = 0.0
        self.telemetry = telemetry or Telemetry()
        self.telemetry.watch_in_flight(lambda: len(self.builds))
        # Started runs not yet remembered in the pending index (their offsets stay in flight).
        self.started: list[tuple[TopicPartition, int, Started]] = []
        self._remembering: asyncio.Task | None = None

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
        reader = RecordReader(consumer, self.settings.kafka.client_options())  # no record's bytes stop it
        log.info("consuming %s as group %s (at most %d runs in flight)", self.settings.kafka.topic,
                 self.settings.group, self.settings.max_in_flight)
        loop = asyncio.get_running_loop()
        last_commit = last_status = self._status_at = loop.time()
        stopping = asyncio.ensure_future(stop.wait())
        self.telemetry.consuming()
        lag = asyncio.create_task(follow_lag(consumer, self.tracker, self.telemetry))
        sweeper = asyncio.create_task(self._sweep_forever())
        try:
            while not stop.is_set():
                if self._full():
                    self._pause(consumer)
                    # Wake as soon as a build ends (or the stop comes), not after a whole poll.
                    self.slot_freed.clear()
                    freed = asyncio.ensure_future(self.slot_freed.wait())
                    await asyncio.wait({stopping, freed}, timeout=PAUSED_POLL_S, return_when=asyncio.FIRST_COMPLETED)
                    freed.cancel()
                    # A poll, so the group keeps us; a partition assigned meanwhile may hand out records.
                    for partition, records in (await reader.getmany(timeout_ms=0)).items():
                        for record in records:
                            self._accept(partition, record)
                else:
                    self._resume(consumer)
                    batch = await reader.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
                    for partition, records in batch.items():
                        for record in records:
                            self._accept(partition, record)
                self.telemetry.polled()
                self._remember_started()
                now = loop.time()
                if now - last_commit >= self.settings.commit_interval_s:
                    await self.commit(consumer)
                    last_commit = now
                if now - last_status >= STATUS_EVERY_S:
                    self._log_status()
                    last_status = now
            self.telemetry.stopping()
            await self._drain(consumer)
        finally:
            stopping.cancel()
            lag.cancel()
            sweeper.cancel()
            await consumer.stop()
        self._log_status()

    # -- one record ----------------------------------------------------------------------------

    def _accept(self, partition: TopicPartition, record: ConsumerRecord | Unreadable) -> None:
        self.tracker.start(partition, record.offset)
        if isinstance(record, Unreadable):  # bytes aiokafka cannot parse: parked where they are
            self.counts["unreadable"] += 1
            self.telemetry.consumed(UNREADABLE)
            self.telemetry.dead_lettered("unreadable_record")
            self._spawn(self._park(partition, record, record.reason))
            return
        origin = Origin.from_record(record.topic, record.partition, record.offset, record.timestamp, live=True)
        try:
            # Dates are judged against the record's publication, so a replay judges them the same.
            event = decode_event(record.key, record.value, record.headers, now=origin.published_at,
                                 limits=self.settings.limits)
        except InvalidEvent as err:
            self.counts["invalid"] += 1
            self.telemetry.consumed(INVALID)
            self.telemetry.dead_lettered("invalid_event")
            self._spawn(self._park(partition, record, f"invalid event: {err}"))
            return
        self.telemetry.consumed(event.kind)
        if event.kind != FINISHED:
            self.counts[event.kind] += 1
            log.debug("run %s (%s) %s on %s", event.run.uuid, event.run.benchmark, event.kind, event.run.cluster_name)
            due = due_date(event, origin, self.settings.incomplete_after_s)
            self.started.append((partition, record.offset, Started(event, origin, due)))
            return
        self._build(partition, record, event, origin)

    def _build(self, partition: TopicPartition, record: ConsumerRecord, event: Event, origin: Origin) -> None:
        uuid = event.run.uuid
        current = self.builds.get(uuid)
        if current is not None:
            if compare(origin, current.origin) <= 0:
                # An older (or the same) event behind a newer one: the newer one's report covers it.
                self.counts["superseded"] += 1
                self.telemetry.superseded()
                log.info("event of %s at %s[%d]@%d is older than the one being built; skipped", uuid,
                         record.topic, record.partition, record.offset)
                self.tracker.finish(partition, record.offset)
                return
            current.superseded = True
            if current.task is not None:
                current.task.cancel()
            # This event's build covers the older offset. Finished here, not by the cancelled task:
            # a task cancelled before it ever ran (both events in one batch) never runs its `finally`.
            self.tracker.finish(current.partition, current.offset)
            self.counts["superseded"] += 1
            self.telemetry.superseded()
            log.info("a later event of %s arrived (%s[%d]@%d): its build starts over", uuid, record.topic,
                     record.partition, record.offset)
        build = _Build(uuid, partition, record.offset, origin)
        self.builds[uuid] = build
        build.task = self._spawn(self._run_build(build, record, event))

    async def _run_build(self, build: _Build, record: ConsumerRecord, event: Event) -> None:
        done = True  # whether the offset may be committed past once this task ends
        try:
            async with self.slots:
                started = asyncio.get_running_loop().time()
                outcome = await self.pipeline.process(event, build.origin)
                self.telemetry.built(outcome.write.value, outcome.status, asyncio.get_running_loop().time() - started)
            self.counts[outcome.write.value] += 1
        except asyncio.CancelledError:
            # Superseded: the later event's build covers this offset. Drain budget exceeded:
            # the offset stays in flight, so the next start builds the run again.
            done = build.superseded
            raise
        except (InvalidEvent, ReportRejected, OutageLimitExceeded) as err:
            await self._dead_letter(build, record, err)
        except Exception as err:  # a failure of this run's own that no retry can fix
            log.exception("report of %s could not be built", event.run.uuid)
            await self._dead_letter(build, record, err)
        finally:
            if self.builds.get(build.uuid) is build:
                del self.builds[build.uuid]
            if done:
                self.tracker.finish(build.partition, build.offset)
            self.slot_freed.set()

    async def _dead_letter(self, build: _Build, record: ConsumerRecord, err: BaseException) -> None:
        log.error("report of %s not built (%s: %s); the event goes to %s. Once the cause is fixed, rebuild it "
                  "with `report-consumer replay --uuid %s`", build.uuid, type(err).__name__, err,
                  self.dead_letters.topic, build.uuid)
        self.counts["dead-lettered"] += 1
        self.telemetry.dead_lettered(dead_letter_reason(err))
        await self.dead_letters.send(record, f"report not built: {type(err).__name__}: {err}")

    async def _park(self, partition: TopicPartition, record: ConsumerRecord | Unreadable, reason: str) -> None:
        try:
            if isinstance(record, Unreadable):
                await self.dead_letters.park_unreadable(record)
            else:
                await self.dead_letters.send(record, reason)
        finally:
            self.tracker.finish(partition, record.offset)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- runs that never finish (consumer.pending) -----------------------------------------------

    def _remember_started(self) -> None:
        """Store the started runs seen since the last time, in one bulk request at a time; their
        offsets are done once stored, so a crash before that sees them again."""
        if not self.started or (self._remembering is not None and not self._remembering.done()):
            return
        batch, self.started = self.started, []
        self._remembering = self._spawn(self._remember(batch))

    async def _remember(self, batch: list[tuple[TopicPartition, int, Started]]) -> None:
        es, index = self.pipeline.es, self.settings.pending_index
        runs = [started for _, _, started in batch]
        await self.pipeline.outages.ride_out(lambda: pending.remember(es, index, runs),
                                             f"remembering {len(runs)} started runs")
        for partition, offset, _ in batch:
            self.tracker.finish(partition, offset)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_every_s)
            try:
                await self.sweep()
            except Exception:  # a failed sweep is tried again at the next one
                log.exception("sweeping runs that never finished failed; trying again in %g s",
                              self.settings.sweep_every_s)

    async def sweep(self) -> None:
        """Report every remembered run past its deadline incomplete, then forget it."""
        es, index = self.pipeline.es, self.settings.pending_index
        now = datetime.now(timezone.utc)
        overdue, unreadable = await self.pipeline.outages.ride_out(lambda: pending.due(es, index, now),
                                                                   "reading started runs")
        for started in overdue:
            try:
                async with self.slots:
                    outcome = await self.pipeline.report_incomplete(started)
            except Exception:  # the run's own failure (an outage is waited out inside)
                log.exception("incomplete report of %s not built", started.event.run.uuid)
                self.counts["incomplete failed"] += 1
            else:
                self.counts[f"incomplete {outcome.write.value}"] += 1
                self.telemetry.reported(outcome.write.value, outcome.status)
        done = [started.event.run.uuid for started in overdue] + unreadable
        if done:
            await self.pipeline.outages.ride_out(lambda: pending.forget(es, index, done), "forgetting started runs")

    # -- flow control and offsets ----------------------------------------------------------------

    def _full(self) -> bool:
        """Enough builds are running or waiting for a slot (or started runs waiting to be stored):
        fetch no more for now."""
        return len(self.builds) >= self.settings.max_in_flight or len(self.started) >= MAX_STARTED_WAITING

    def _pause(self, consumer: AIOKafkaConsumer) -> None:
        newly = consumer.assignment() - consumer.paused()
        if newly:
            consumer.pause(*newly)
            log.debug("fetching paused: %d runs in flight (MAX_IN_FLIGHT=%d)", len(self.builds),
                      self.settings.max_in_flight)

    def _resume(self, consumer: AIOKafkaConsumer) -> None:
        if consumer.paused():
            consumer.resume(*consumer.paused())
            log.debug("fetching resumed: %d runs in flight", len(self.builds))

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
        if self._remembering is not None and not self._remembering.done():
            await asyncio.wait({self._remembering}, timeout=self.settings.drain_timeout_s)
        self._remember_started()
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
        """Totals since start, and the rate of each over the last interval."""
        now = asyncio.get_running_loop().time()
        elapsed = max(now - self._status_at, 1e-9)
        counts = ", ".join(
            f"{key} {value} ({(value - self._status_counts[key]) / elapsed:.1f}/s)"
            for key, value in sorted(self.counts.items())
        ) or "nothing yet"
        self._status_at, self._status_counts = now, Counter(self.counts)
        waiting = self.pipeline.outages.unavailable()
        outage = f"; waiting for {', '.join(waiting)}" if waiting else ""
        log.info("in flight %d; %s%s", len(self.builds), counts, outage)


class _CommitOnRevoke(ConsumerRebalanceListener):
    """Commit what is finished before partitions move to another member, then let them go."""

    def __init__(self, worker: Worker, consumer: AIOKafkaConsumer) -> None:
        self.worker = worker
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            await self.worker.commit(self.consumer, set(revoked))
            self.worker.tracker.forget(list(revoked))
            self.worker.telemetry.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.telemetry.assigned(assigned)
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing")


def _describe(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in sorted(offsets.items()))
