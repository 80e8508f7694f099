"""What the live consumer tells an operator: Prometheus metrics, and the facts health checks read.

One :class:`Telemetry` per process, owning its own ``CollectorRegistry`` (no global registry, so
tests and embedders can make as many as they like). The worker reports what it consumes and builds,
:class:`~consumer.outage.Outages` reports outages (it is an ``OutageObserver``), and the probes of
:mod:`consumer.health` report whether each server answers. ``/metrics`` is :meth:`exposition`.

Metric names start with ``report_consumer_``; the README lists them, with PromQL for dashboards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from consumer.outage import OutageLimitExceeded
from consumer.sink import ReportRejected, WriteOutcome
from consumer.tracker import OffsetTracker
from producer_hooks.events import KINDS, InvalidEvent

log = logging.getLogger(__name__)

SERVERS = ("Kafka", "Elasticsearch", "Thanos")  # as consumer.outage names them
STATUSES = ("complete", "partial", "incomplete")  # incomplete: a run that never finished
# Every record consumed is one of these: an event of a kind, or a record that is not a valid event.
INVALID, UNREADABLE = "invalid", "unreadable"
EVENT_KINDS = (*KINDS, INVALID, UNREADABLE)
# Why a record went to the dead-letter topic.
DEAD_LETTER_REASONS = ("invalid_event", "unreadable_record", "report_refused", "outage_limit", "build_failed")
# A build waits for results up to RESULTS_DEADLINE (300 s by default) and rides out outages.
BUILD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# How often consumer lag is measured (one ListOffsets request for the assigned partitions).
LAG_EVERY_S = 5.0
LAG_TIMEOUT_S = 10.0


def dead_letter_reason(err: BaseException) -> str:
    """The reason class of a build that ended in the dead-letter topic."""
    if isinstance(err, InvalidEvent):
        return "invalid_event"
    if isinstance(err, ReportRejected):
        return "report_refused"
    if isinstance(err, OutageLimitExceeded):
        return "outage_limit"
    return "build_failed"


def partition_lag(ends: Mapping[TopicPartition, int], done: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Records of each partition not done yet: its end offset minus the offset before which all is
    done (what a commit writes). A partition without a known done offset is left out."""
    return {tp: max(0, end - done[tp]) for tp, end in ends.items() if tp in done}


@dataclass(frozen=True)
class Probe:
    """The last answer of one server to a reachability probe."""

    ok: bool
    detail: str
    at: float  # loop time


class _OutageSeconds(Collector):
    """Seconds each server has been in an outage, counting the one in progress up to the scrape."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("report_consumer_outage_seconds",
                                     "Seconds during which runs waited for an unavailable server", labels=["server"])
        for server, seconds in self.telemetry.outage_seconds().items():
            family.add_metric([server], seconds)
        yield family


class Telemetry:
    """Counters, gauges and state of one consumer process. Safe to use without a server."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock  # loop time unless told otherwise
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("report_consumer_events", "Records consumed from the runs topic, by event kind "
                              "(invalid: not a valid event; unreadable: bytes the client cannot parse)",
                              ["kind"], registry=r)
        self.reports = Counter("report_consumer_reports", "Reports built, by write outcome and report status",
                               ["outcome", "status"], registry=r)
        self.superseded_events = Counter("report_consumer_superseded_events", "Finished events whose build was "
                                         "skipped or cancelled because a later event of the run arrived", registry=r)
        self.build_seconds = Histogram("report_consumer_build_duration_seconds", "Time to build and store one "
                                       "report, outages waited out included", buckets=BUILD_BUCKETS, registry=r)
        self.in_flight = Gauge("report_consumer_runs_in_flight", "Runs being built or waiting for a build slot",
                               registry=r)
        self.lag = Gauge("report_consumer_partition_lag", "Records of an assigned partition not done yet (end "
                         "offset minus the offset a commit writes)", ["topic", "partition"], registry=r)
        self.assigned_partitions = Gauge("report_consumer_assigned_partitions", "Partitions of the runs topic "
                                         "assigned to this process", registry=r)
        self.dead_letters = Counter("report_consumer_dead_letters", "Records sent to the dead-letter topic, by "
                                    "reason class", ["reason"], registry=r)
        self.outages = Counter("report_consumer_outages", "Outages (a server unavailable while runs wait)",
                               ["server"], registry=r)
        self.retries = Counter("report_consumer_outage_retries", "Attempts that failed because a server was "
                               "unavailable and were tried again", ["server"], registry=r)
        self.server_up = Gauge("report_consumer_server_up", "Whether the last probe of a server succeeded",
                               ["server"], registry=r)
        r.register(_OutageSeconds(self))
        # Every label value exists from the start, at 0, so rates and increases see the first event.
        for kind in EVENT_KINDS:
            self.events.labels(kind)
        for outcome in WriteOutcome:
            for status in STATUSES:
                self.reports.labels(outcome.value, status)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for server in SERVERS:
            self.outages.labels(server)
            self.retries.labels(server)

        # State the health checks read (loop times).
        self.phase = "starting"  # then "consuming", then "stopping"
        self.polled_at: float | None = None
        self.assignment: frozenset[TopicPartition] | None = None  # None until the group assigned us
        self.probes: dict[str, Probe] = {}
        self._outage_since: dict[str, float] = {}
        self._outage_closed: dict[str, float] = dict.fromkeys(SERVERS, 0.0)

    def now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    # -- the worker ----------------------------------------------------------------------------

    def consumed(self, kind: str) -> None:
        self.events.labels(kind).inc()

    def built(self, outcome: str, status: str, seconds: float) -> None:
        self.reported(outcome, status)
        self.build_seconds.observe(seconds)

    def reported(self, outcome: str, status: str) -> None:
        self.reports.labels(outcome, status).inc()

    def superseded(self) -> None:
        self.superseded_events.inc()

    def dead_lettered(self, reason: str) -> None:
        self.dead_letters.labels(reason).inc()

    def watch_in_flight(self, count: Callable[[], int]) -> None:
        self.in_flight.set_function(count)

    def consuming(self) -> None:
        self.phase = "consuming"

    def stopping(self) -> None:
        self.phase = "stopping"

    def polled(self) -> None:
        self.polled_at = self.now()

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        self.assignment = frozenset(partitions)
        self.assigned_partitions.set(len(self.assignment))

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            try:
                self.lag.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass

    def measured_lag(self, lags: Mapping[TopicPartition, int]) -> None:
        for tp, lag in lags.items():
            self.lag.labels(tp.topic, str(tp.partition)).set(lag)

    # -- consumer.outage.OutageObserver ----------------------------------------------------------

    def outage_started(self, server: str, now: float) -> None:
        self.outages.labels(server).inc()
        self._outage_since[server] = now

    def outage_retried(self, server: str) -> None:
        self.retries.labels(server).inc()

    def outage_ended(self, server: str, now: float) -> None:
        since = self._outage_since.pop(server, None)
        if since is not None:
            self._outage_closed[server] = self._outage_closed.get(server, 0.0) + max(0.0, now - since)

    def in_outage(self) -> list[str]:
        """The servers runs are waiting for now."""
        return sorted(self._outage_since)

    def outage_seconds(self) -> dict[str, float]:
        now = self.now()
        totals = dict(self._outage_closed)
        for server, since in self._outage_since.items():
            totals[server] = totals.get(server, 0.0) + max(0.0, now - since)
        return totals

    # -- the probes ------------------------------------------------------------------------------

    def probed(self, server: str, ok: bool, detail: str) -> None:
        self.probes[server] = Probe(ok, detail, self.now())
        self.server_up.labels(server).set(1 if ok else 0)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the format the scraper's ``Accept`` header asks for (OpenMetrics or
        Prometheus text), and its content type."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


async def follow_lag(consumer: AIOKafkaConsumer, tracker: OffsetTracker[TopicPartition], telemetry: Telemetry,
                     every_s: float = LAG_EVERY_S) -> None:
    """Measure the lag of the assigned partitions every ``every_s`` until cancelled. Runs beside the
    consume loop, so a slow broker delays the measurement, never the consumption."""
    while True:
        await asyncio.sleep(every_s)
        partitions = consumer.assignment()
        if not partitions:
            continue
        try:
            lags = await asyncio.wait_for(_lag(consumer, tracker, partitions), LAG_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - a rebalance or the broker away: measure next time
            log.debug("consumer lag not measured: %s: %s", type(err).__name__, err)
            continue
        owned = consumer.assignment()
        telemetry.measured_lag({tp: lag for tp, lag in lags.items() if tp in owned})


async def _lag(consumer: AIOKafkaConsumer, tracker: OffsetTracker[TopicPartition],
               partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
    ends = await consumer.end_offsets(list(partitions))
    done = {}
    for tp in partitions:
        offset = tracker.done_up_to(tp)
        done[tp] = offset if offset is not None else await consumer.position(tp)
    return partition_lag(ends, done)
