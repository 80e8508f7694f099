"""A run's metrics: every query of its profiles, summarised over the run's window on its cluster.

Report shape, keyed by query name in profile order (control-plane's queries first)::

    {"podCPU": {"profile": "control-plane", "query": "<rendered PromQL>", "unit": "cores",
                "series": [{"labels": {...}, "avg": 1.2, "max": 3.4, "samples": 361}],
                "warnings": ["..."]},                      # only when Thanos sent some
     "etcdMemory": {"profile": ..., "query": ..., "error": "<server's message>"}}

A query name used by two selected profiles keeps its bare name for the first profile (so
control-plane's keys never move) and becomes ``"<profile>.<name>"`` for the later ones.

A query the server refuses (:class:`~consumer.thanos.QueryError`) becomes an ``error`` entry and a
reason in :attr:`MetricsOutcome.errors` (the report is then partial). Thanos being unavailable
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
    metrics: dict[str, dict[str, Any]]
    profiles: list[tuple[str, int]]  # (name, version) of every profile used, for stale-report checks
    errors: list[str] = field(default_factory=list)  # one reason per failed query

    @property
    def partial(self) -> bool:
        return bool(self.errors)


@dataclass(frozen=True)
class PlannedQuery:
    key: str
    profile: str
    query: Query
    rendered: str


def plan(profiles: Sequence[Profile], cluster_label: str, cluster: str) -> list[PlannedQuery]:
    """Every query of ``profiles`` in order, rendered for ``cluster``, under a unique report key."""
    planned: list[PlannedQuery] = []
    keys: set[str] = set()
    for profile in {p.name: p for p in profiles}.values():  # each profile once
        for query in profile.queries:
            key = query.name if query.name not in keys else f"{profile.name}.{query.name}"
            if key in keys:
                raise ValueError(f"profile {profile.name}: query key {key!r} is already used by another profile")
            keys.add(key)
            planned.append(PlannedQuery(key, profile.name, query, query.render(cluster_label, cluster)))
    return planned


def entry(planned: PlannedQuery, result: QueryResult | None = None, error: str | None = None) -> dict[str, Any]:
    """One query's part of the report."""
    doc: dict[str, Any] = {"profile": planned.profile, "query": planned.rendered}
    if planned.query.unit:
        doc["unit"] = planned.query.unit
    if error is not None:
        doc["error"] = error
        return doc
    assert result is not None
    doc["series"] = [{"labels": s.labels, "avg": s.avg, "max": s.max, "samples": s.samples} for s in result.series]
    if result.step_s:
        doc["step_s"] = result.step_s
    if result.warnings:
        doc["warnings"] = result.warnings
    return doc


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

    async def run(item: PlannedQuery) -> dict[str, Any]:
        async with limit:
            try:
                result = await thanos.summarize(item.rendered, start, end)
            except QueryError as err:
                return entry(item, error=str(err) or type(err).__name__)
        return entry(item, result)

    tasks = [asyncio.ensure_future(run(item)) for item in planned]
    try:
        entries = await asyncio.gather(*tasks)
    except BaseException:
        # One query's fatal error (Thanos unavailable, cancellation) stops the others at once.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    metrics = {item.key: doc for item, doc in zip(planned, entries)}
    for item in over:
        metrics[item.key] = entry(item, error=f"not asked: the run's budget is {max_queries} queries (THANOS_MAX_QUERIES)")
    errors = [f"{key}: {doc['error']}" for key, doc in metrics.items() if "error" in doc]
    used = list(dict.fromkeys((p.name, p.version) for p in profiles))
    return MetricsOutcome(metrics, used, errors)
