"""Comparable histories: reports of generated runs with chosen numbers, as the consumer writes them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from elasticsearch import AsyncElasticsearch

from consumer.report import build_report
from consumer.settings import Settings
from consumer.sink import write_report
from producer_hooks.events import make_event
from tests.support.metadata import run_doc

P99 = "node-density/latency_ms.Ready.P99"
P50 = "node-density/latency_ms.Ready.P50"
ELAPSED = "node-density/elapsed_s"
CPU = "podCPU{namespace=openshift-etcd}/avg"
BASE = {P99: 4000.0, P50: 1500.0, ELAPSED: 1800.0, CPU: 0.8}


@dataclass(frozen=True)
class Levels:
    """A run's judged numbers (the control-plane CPU's max is twice its avg)."""

    p99: float
    p50: float
    elapsed: float
    cpu: float

    @classmethod
    def noisy(cls, rng: random.Random, noise: float = 0.03, **factors: float) -> Levels:
        """The base levels with uniform noise of +-``noise``, times ``factors`` (p99=1.25, ...)."""
        def level(key: str, base: float) -> float:
            return base * factors.get(key, 1.0) * (1 + rng.uniform(-noise, noise))
        return cls(level("p99", BASE[P99]), level("p50", BASE[P50]), level("elapsed", BASE[ELAPSED]), level("cpu", BASE[CPU]))


def run_metadata(uuid: str, start: datetime, *, platform: str = "AWS", workers: int = 24, status: str = "success",
                 benchmark: str = "node-density") -> dict:
    """The metadata document of a 1,900 s run, as a pipeline publishes it."""
    begin = int(start.timestamp())
    doc = run_doc(uuid, cluster="perf-verdicts", benchmark=benchmark, status=status, start=begin, end=begin + 1900)
    doc.update(platform=platform, worker_count=str(workers), cluster_version="4.17.3")
    return doc


def report_of(uuid: str, start: datetime, levels: Levels, *, platform: str = "AWS", workers: int = 24,
              status: str = "success", benchmark: str = "node-density") -> dict:
    """The report the consumer builds for a node-density run with these numbers (no verdict yet)."""
    doc = run_metadata(uuid, start, platform=platform, workers=workers, status=status, benchmark=benchmark)
    jobs = [{"name": benchmark, "phase": "job", "elapsed_s": levels.elapsed, "iterations": 600,
             "latency_ms": {"Ready": {"P99": levels.p99, "P50": levels.p50}}},
            {"name": "garbage-collection", "phase": "gc", "elapsed_s": 30.0}]
    metrics = [{"name": "podCPU", "profile": "control-plane", "unit": "cores", "query": "sum(cpu)", "status": "ok",
                "labels": {"namespace": "openshift-etcd"}, "avg": levels.cpu, "max": 2 * levels.cpu, "samples": 190}]
    return build_report(make_event(doc), results={"jobs": jobs}, metrics=metrics,
                        links={"cluster": "https://grafana.example.com/d/ocp-performance/openshift-performance"},
                        profiles=[("control-plane", 1)], reasons=[], built_at=datetime.now(timezone.utc))


def hours_ago(hours: float) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=hours)


async def store(es: AsyncElasticsearch, settings: Settings, reports: list[dict]) -> None:
    for report in reports:
        await write_report(es, settings.report_index, report, settings.retry)
    await es.indices.refresh(index=settings.report_index)


def history(prefix: str, count: int, rng: random.Random, *, first_hours_ago: float = 200, **kwargs) -> list[dict]:
    """``count`` noisy comparable runs, one an hour, oldest first."""
    return [report_of(f"{prefix}-{i:02d}", hours_ago(first_hours_ago - i), Levels.noisy(rng), **kwargs)
            for i in range(count)]
