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

from consumer.comparisons import Rule, load_rules
from consumer.elastic import connect
from consumer.links import grafana_links
from consumer.metrics import collect_metrics
from consumer.notify import Notifier
from consumer.origin import Origin
from consumer.outage import Outages
from consumer.pending import Started, ensure_pending_index, incomplete_reason
from consumer.profiles import Profile, check_rules, load_profiles, profiles_for
from consumer.report import build_report, with_verdict
from consumer.results import gather_results
from consumer.retry import RetryPolicy
from consumer.settings import Settings
from consumer.sink import WriteOutcome, ensure_report_index, write_report
from consumer.store import Store
from consumer.thanos import Thanos
from consumer.verdict import verdict_for
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

    def __init__(self, settings: Settings, es: Store, thanos: Thanos, profiles: dict[str, Profile],
                 outages: Outages | None = None, rules: list[Rule] | None = None,
                 notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.es = es
        self.thanos = thanos
        self.profiles = profiles
        self.outages = outages or Outages(limit_s=settings.outage_limit_s, max_wait_s=settings.retry_max_wait_s)
        self.rules = load_rules(settings.comparison_dir) if rules is None else rules
        self.notifier = notifier or Notifier(es, settings.notifications_index, settings.webhook_url,
                                             timeout_s=settings.webhook_timeout_s, retry=settings.retry)

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Pipeline]:
        profiles = load_profiles(settings.profile_dir)
        check_rules(settings.benchmark_profiles, profiles)
        rules = load_rules(settings.comparison_dir)
        async with AsyncExitStack() as stack:
            es = connect(settings.es)
            stack.push_async_callback(es.close)
            thanos = await stack.enter_async_context(Thanos(settings.thanos, settings.retry))
            pipeline = cls(settings, es, thanos, profiles, rules=rules)
            stack.push_async_callback(pipeline.notifier.close)
            # The outage tracker is the retry here: told at once, waited out, one line per interval.
            await pipeline.outages.ride_out(lambda: ensure_report_index(es, settings.report_index, RetryPolicy(attempts=1)),
                                            f"creating index {settings.report_index}")
            await pipeline.outages.ride_out(lambda: ensure_pending_index(es, settings.pending_index),
                                            f"creating index {settings.pending_index}")
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
        metrics: list = []
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
        report = build_report(
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
        return with_verdict(report, await verdict_for(self.es, settings.report_index, settings.acks_index, self.rules,
                                                      report, settings.retry))

    async def report_incomplete(self, started: Started) -> Outcome:
        """Store the ``incomplete`` report of a run whose finished event never came: its metadata
        and the results that exist, no metrics (its window never closed)."""
        run, settings = started.event.run, self.settings
        reason = incomplete_reason(settings.incomplete_after_s)

        async def attempt() -> tuple[dict, WriteOutcome]:
            results = await gather_results(self.es, settings.results_index, run, 0.0, settings.retry)
            start = run.start or started.origin.published_at
            links = grafana_links(settings.grafana_url, settings.dashboards, run.cluster_name or "", start, started.due)
            report = build_report(started.event, results=results.data, metrics=[], links=links, profiles=[],
                                  reasons=[reason], built_at=datetime.now(timezone.utc),
                                  origin=started.origin.to_dict(), status="incomplete")
            return report, await write_report(self.es, settings.report_index, report, settings.retry)

        report, outcome = await self.outages.ride_out(attempt, f"reporting {run.uuid} incomplete")
        log.info("report %s %s: %s (incomplete): %s", run.uuid, run.benchmark, outcome.value, reason)
        return Outcome(run.uuid, outcome, "incomplete", (reason,))

    async def process(self, event: Event, origin: Origin | None = None) -> Outcome:
        """Build and store the report of ``event``. A server's outage is waited out (see
        :mod:`consumer.outage`); what is raised belongs to this run: retrying cannot help."""

        async def attempt() -> tuple[dict, WriteOutcome]:
            report = await self.build(event, origin)
            return report, await write_report(self.es, self.settings.report_index, report, self.settings.retry)

        report, outcome = await self.outages.ride_out(attempt, f"building the report of {event.run.uuid}")
        if outcome is not WriteOutcome.SUPERSEDED:
            self.notifier.after_write(report)  # a regression is told once, in the background
        status = report["report"]["status"]
        log.info("report %s %s: %s (%s, verdict %s)%s", event.run.uuid, event.run.benchmark, outcome.value, status,
                 report.get("verdict", {}).get("status"),
                 f": {'; '.join(report['report']['reasons'])}" if status != "complete" else "")
        return Outcome(event.run.uuid, outcome, status, tuple(report["report"]["reasons"]))
