"""A run's metrics: every query of its profiles, summarised over the run's window on its cluster.

Report shape: one flat list of series, in profile order (control-plane's queries first), each
naming its query, so one mapping serves every metric whatever its name::

    [{"name": "podCPU", "profile": "control-plane", "unit": "cores", "query": "<rendered PromQL>",
      "status": "ok", "labels": {"namespace": "openshift-etcd"}, "avg": 1.2, "max": 3.4, "samples": 361,
      "step_s": 10.0,                                       # the resolution evaluated
      "warnings": ["..."]},                                 # only when Thanos sent some
     {"name": "etcdMemory", "profile": ..., "query": ..., "status": "no data"},
     {"name": "apiLatency", "profile": ..., "query": ..., "status": "error", "error": "<server's message>"}]

Every query planned keeps at least one entry, so the report shows what was asked even when nothing
came back (or, past the run's query budget, that it was not asked). A query the server refuses (:class:`~consumer.thanos.QueryError`) becomes an ``error``
entry and a reason in :attr:`MetricsOutcome.errors` (the report is then partial). Thanos being unavailable
(:class:`~consumer.thanos.ThanosUnavailable`, or any other :class:`~consumer.thanos.ThanosError`)
propagates: nothing is worth reporting without the metrics server, and the run is retried later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from consumer.profiles import Profile, Query
from consumer.thanos import QueryError, QueryResult


class Summarizer(Protocol):
    """What :func:`collect_metrics` needs of :class:`~consumer.thanos.Thanos`."""

    async def summarize(self, query: str, start: datetime, end: datetime) -> QueryResult: ...


@dataclass(frozen=True)
class MetricsOutcome:
    metrics: list[dict[str, Any]]  # the report's ``metrics``: one entry per series (or per empty or failed query)
    profiles: list[tuple[str, int]]  # (name, version) of every profile used, for stale-report checks
    errors: list[str] = field(default_factory=list)  # one reason per failed query

    @property
    def partial(self) -> bool:
        return bool(self.errors)


@dataclass(frozen=True)
class PlannedQuery:
    profile: str
    query: Query
    rendered: str


OK, NO_DATA, ERROR = "ok", "no data", "error"


def plan(profiles: Sequence[Profile], cluster_label: str, cluster: str) -> list[PlannedQuery]:
    """Every query of ``profiles`` in order, rendered for ``cluster``; a profile listed twice counts
    once. Queries of the same name in two profiles are both kept: ``profile`` tells them apart."""
    return [
        PlannedQuery(profile.name, query, query.render(cluster_label, cluster))
        for profile in {p.name: p for p in profiles}.values()
        for query in profile.queries
    ]


def entries(planned: PlannedQuery, result: QueryResult | None = None, error: str | None = None) -> list[dict[str, Any]]:
    """One query's part of the report: an entry per series, or one saying why there is none."""
    base: dict[str, Any] = {"name": planned.query.name, "profile": planned.profile, "query": planned.rendered}
    if planned.query.unit:
        base["unit"] = planned.query.unit
    if error is not None:
        return [{**base, "status": ERROR, "error": error}]
    assert result is not None
    if result.step_s:
        base["step_s"] = result.step_s
    if result.warnings:
        base["warnings"] = list(result.warnings)
    if not result.series:
        return [{**base, "status": NO_DATA}]
    return [
        {**base, "status": OK, "labels": s.labels, "avg": s.avg, "max": s.max, "samples": s.samples}
        for s in result.series
    ]


async def collect_metrics(
    thanos: Summarizer,
    profiles: Sequence[Profile],
    cluster_label: str,
    cluster: str,
    start: datetime,
    end: datetime,
    concurrency: int,
    max_queries: int | None = None,
) -> MetricsOutcome:
    """Summarise every query of ``profiles`` over ``[start, end]``, at most ``concurrency`` at a time;
    past ``max_queries`` queries, the rest are reported as not asked (a per-run budget)."""
    planned = plan(profiles, cluster_label, cluster)
    over = planned[max_queries:] if max_queries is not None else []
    planned = planned[: len(planned) - len(over)]
    limit = asyncio.Semaphore(concurrency)

    async def run(item: PlannedQuery) -> list[dict[str, Any]]:
        async with limit:
            try:
                result = await thanos.summarize(item.rendered, start, end)
            except QueryError as err:
                return entries(item, error=str(err) or type(err).__name__)
        return entries(item, result)

    tasks = [asyncio.ensure_future(run(item)) for item in planned]
    try:
        per_query = await asyncio.gather(*tasks)
    except BaseException:
        # One query's fatal error (Thanos unavailable, cancellation) stops the others at once.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    per_query += [entries(item, error=f"not asked: the run's budget is {max_queries} queries (THANOS_MAX_QUERIES)")
                  for item in over]
    metrics = [entry for group in per_query for entry in group]
    errors = [f"{entry['name']}: {entry['error']}" for entry in metrics if entry["status"] == ERROR]
    used = list(dict.fromkeys((p.name, p.version) for p in profiles))
    return MetricsOutcome(metrics, used, errors)
