"""From a finished run's event to its report in Elasticsearch: the one path every command uses.

`run` (live), `replay` (the topic again) and `backfill` (the metadata index) all hand events to
:meth:`Pipeline.process`, so a report is built the same way whichever door the run came in by.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from elasticsearch import AsyncElasticsearch

from consumer.elastic import connect
from consumer.links import grafana_links
from consumer.metrics import collect_metrics
from consumer.origin import Origin
from consumer.outage import Outages
from consumer.profiles import Profile, check_rules, load_profiles, profiles_for
from consumer.report import build_report
from consumer.results import gather_results
from consumer.settings import Settings
from consumer.sink import WriteOutcome, ensure_report_index, write_report
from consumer.thanos import Thanos
from producer_hooks.events import Event, Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    uuid: str
    write: WriteOutcome
    status: str  # the report's: complete or partial
    reasons: tuple[str, ...]


def results_wait(run: Run, deadline_s: float, now: datetime, origin: Origin | None = None) -> float:
    """How long results may still take to become searchable.

    A live event waits up to ``deadline_s`` after it was published: an event that arrives late (sent
    from a hook's spool, or by a step that runs after cleanup) still gives the run's results their
    time. A rebuild waits up to ``deadline_s`` after the run's end, so an old run (a replay, a
    backfill) is read once: it has all it will ever have. A run that did not succeed may have
    indexed nothing at all: it is read once, without waiting.
    """
    if not run.succeeded or run.end is None:
        return 0.0
    since = origin.published_at if origin is not None and origin.live else run.end
    return max(0.0, deadline_s - (now - since).total_seconds())


class Pipeline:
    """Builds and stores reports. Holds the clients; open it with :meth:`open`."""

    def __init__(self, settings: Settings, es: AsyncElasticsearch, thanos: Thanos, profiles: dict[str, Profile],
                 outages: Outages | None = None) -> None:
        self.settings = settings
        self.es = es
        self.thanos = thanos
        self.profiles = profiles
        self.outages = outages or Outages(limit_s=settings.outage_limit_s, max_wait_s=settings.retry_max_wait_s)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Pipeline]:
        profiles = load_profiles(settings.profile_dir)
        check_rules(settings.benchmark_profiles, profiles)
        async with AsyncExitStack() as stack:
            es = connect(settings.es)
            stack.push_async_callback(es.close)
            thanos = await stack.enter_async_context(Thanos(settings.thanos, settings.retry))
            pipeline = cls(settings, es, thanos, profiles)
            await pipeline.outages.ride_out(lambda: ensure_report_index(es, settings.report_index, settings.retry),
                                            f"creating index {settings.report_index}")
            yield pipeline

    def profiles_for(self, benchmark: str | None) -> list[Profile]:
        return profiles_for(benchmark, self.settings.benchmark_profiles, self.profiles)

    async def build(self, event: Event, origin: Origin | None = None) -> dict:
        """The report of a finished run. Raises when a server stays unreachable through retries."""
        run, settings = event.run, self.settings
        started = time.perf_counter()
        assert run.start is not None and run.end is not None, "finished events carry their window"
        wait = results_wait(run, settings.results_deadline_s, datetime.now(timezone.utc), origin)
        results = await gather_results(self.es, settings.results_index, run, wait, settings.retry)
        reasons = list(results.reasons)

        profiles = self.profiles_for(run.benchmark)
        metrics: dict = {}
        if run.cluster_name:
            collected = await collect_metrics(
                self.thanos, profiles, settings.thanos.cluster_label, run.cluster_name, run.start, run.end,
                settings.thanos.concurrency, settings.thanos.max_queries,
            )
            metrics = collected.metrics
            reasons.extend(collected.errors)
        elif profiles:
            reasons.append("no cluster name in the run's metadata: metrics not collected")

        links = grafana_links(settings.grafana_url, settings.dashboards, run.cluster_name or "", run.start, run.end)
        return build_report(
            event,
            results=results.data,
            metrics=metrics,
            links=links,
            profiles=[(profile.name, profile.version) for profile in profiles],
            reasons=reasons,
            built_at=datetime.now(timezone.utc),
            origin=origin.to_dict() if origin is not None else None,
            built_in_ms=round((time.perf_counter() - started) * 1000),
        )

    async def process(self, event: Event, origin: Origin | None = None) -> Outcome:
        """Build and store the report of ``event``. A server's outage is waited out (see
        :mod:`consumer.outage`); what is raised belongs to this run: retrying cannot help."""

        async def attempt() -> tuple[dict, WriteOutcome]:
            report = await self.build(event, origin)
            return report, await write_report(self.es, self.settings.report_index, report, self.settings.retry)

        report, outcome = await self.outages.ride_out(attempt, f"building the report of {event.run.uuid}")
        status = report["report"]["status"]
        log.info("report %s %s: %s (%s)%s", event.run.uuid, event.run.benchmark, outcome.value, status,
                 f": {'; '.join(report['report']['reasons'])}" if status != "complete" else "")
        return Outcome(event.run.uuid, outcome, status, tuple(report["report"]["reasons"]))
