"""A run's benchmark results, read from Elasticsearch by a reader chosen by benchmark name.

A reader makes one attempt: it returns what is searchable now and says whether that is the whole
of it. :func:`gather_results` polls the reader until the results are complete or the deadline
passes, because a run's results are often not searchable yet when the run ends (index refresh,
late indexing). New benchmarks plug in with :meth:`Readers.add`, without touching the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import partial
from typing import Any

from elasticsearch import AsyncElasticsearch

from consumer.elastic import is_transient, search_all
from consumer.kubeburner import JOB_SUMMARY, POD_LATENCY_QUANTILES, job_name, shape_kube_burner
from consumer.retry import RetryPolicy
from producer_hooks.events import Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Results:
    data: dict[str, Any]  # {"jobs": [job entries, as the report stores them]}
    complete: bool
    reasons: tuple[str, ...] = ()


# One attempt at a run's results: (client, index, run) -> Results.
Reader = Callable[[AsyncElasticsearch, str, Run], Awaitable[Results]]


@dataclass(frozen=True)
class Readers:
    """Benchmark name or glob -> reader. An exact name beats any glob; among globs the first added wins.

    Immutable: :meth:`add` returns a new registry, so a registry can be shared without surprises.
    """

    rules: tuple[tuple[str, Reader], ...] = ()

    def add(self, patterns: str | Iterable[str], reader: Reader) -> Readers:
        names = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        return Readers(self.rules + tuple((name.lower(), reader) for name in names))

    def find(self, benchmark: str | None) -> Reader | None:
        if not benchmark:
            return None
        name = benchmark.lower()
        for pattern, reader in self.rules:
            if pattern == name:
                return reader
        for pattern, reader in self.rules:
            if fnmatchcase(name, pattern):
                return reader
        return None


# -- kube-burner ----------------------------------------------------------------------------------

# Workloads of kube-burner, kube-burner-ocp, e2e-benchmarking and web-burner.
KUBE_BURNER_BENCHMARKS = (
    "*density*",  # cluster-density[-v2|-ms], node-density[-cni|-heavy], pod-density[-heavy], pvc-, udn-, virt-, web-burner-
    "networkpolicy*",
    "network-policy*",
    "crd-scale*",
    "udn-*",
    "web-burner-*",
    "virt-*",
    "egressip*",
    "whereabouts*",
    "rds-core*",
    "max-namespaces*",
    "max-services*",
    "concurrent-builds*",
    "pods-service-route*",
    "services-per-namespace*",
    "namespaces-per-cluster*",
    "deployments-per-ns*",
    "garbage-collection*",
    "kube-burner*",
)


def kube_burner_query(uuid: str) -> dict[str, Any]:
    """A run's jobSummary and quantile documents, whether ``uuid``/``metricName`` are mapped as
    keyword or as text with a ``.keyword`` subfield (indices of one pattern may differ)."""
    return {
        "bool": {
            "filter": [
                _keyword_terms("uuid", [uuid]),
                _keyword_terms("metricName", [JOB_SUMMARY, POD_LATENCY_QUANTILES]),
            ]
        }
    }


def _keyword_terms(name: str, values: list[str]) -> dict[str, Any]:
    # On a field an index lacks, a clause matches nothing; a whole value rarely matches a text
    # field's tokens, and the reader re-checks ``uuid`` exactly anyway.
    return {
        "bool": {
            "should": [{"terms": {name: values}}, {"terms": {f"{name}.keyword": values}}],
            "minimum_should_match": 1,
        }
    }


async def read_kube_burner(es: AsyncElasticsearch, index: str, run: Run, *, page_size: int = 1000) -> Results:
    """One read of a kube-burner run; complete once a jobSummary is searchable.

    kube-burner indexes the jobSummary documents after a job's measurements, so once one is
    searchable the run's latencies are too. Quantiles that cannot be tied to one job are reasons.
    """
    docs = [
        doc
        async for doc in search_all(es, index, kube_burner_query(run.uuid), page_size=page_size)
        # Belt and braces: an exact match, whatever the field's mapping.
        if doc.get("uuid") == run.uuid
    ]
    shaped = shape_kube_burner(docs)
    data = {"jobs": shaped.jobs}
    if shaped.summaries:
        return Results(data, complete=True, reasons=tuple(shaped.reasons))
    return Results(data, complete=False, reasons=(f"no jobSummary for uuid {run.uuid}", *shaped.reasons))


def kube_burner_reader(page_size: int) -> Reader:
    """The kube-burner reader with another page size (tests, or very large runs)."""
    return partial(read_kube_burner, page_size=page_size)


DEFAULT_READERS = Readers().add(KUBE_BURNER_BENCHMARKS, read_kube_burner)


# -- polling --------------------------------------------------------------------------------------


async def gather_results(
    es: AsyncElasticsearch,
    index: str,
    run: Run,
    deadline_s: float,
    retry: RetryPolicy,
    *,
    readers: Readers = DEFAULT_READERS,
    first_wait_s: float = 1.0,
    max_wait_s: float = 15.0,
) -> Results:
    """The run's results, waiting up to ``deadline_s`` for them to become searchable.

    Polls with jittered exponential backoff (``first_wait_s`` doubling to ``max_wait_s``). At the
    deadline, returns what exists with ``complete=False`` and the reasons. Transient Elasticsearch
    errors are retried with ``retry``; when it gives up, the error propagates.
    """
    reader = readers.find(run.benchmark)
    if reader is None:
        return Results({}, complete=False, reasons=(f"no results reader for benchmark {run.benchmark!r}",))

    loop = asyncio.get_running_loop()
    started = loop.time()
    wait = first_wait_s
    polls = 0
    while True:
        polls += 1
        async for attempt in retry.retrying(is_transient, f"reading results of {run.uuid}"):
            with attempt:
                results = await reader(es, index, run)
        elapsed = loop.time() - started
        if results.complete:
            if polls > 1:
                log.info("results of %s (%s) searchable after %.0f s", run.uuid, run.benchmark, elapsed)
            return results
        remaining = deadline_s - elapsed
        if remaining <= 0:
            log.warning("results of %s (%s) incomplete after %.0f s: %s", run.uuid, run.benchmark, elapsed, results.reasons)
            # No timings in the reasons: equal inputs must give an equal report (and fingerprint).
            return Results(
                results.data,
                complete=False,
                reasons=tuple(f"{reason} by the results deadline" for reason in results.reasons),
            )
        pause = min(random.uniform(wait / 2, wait), remaining)
        log.debug("results of %s not searchable yet (poll %d), next poll in %.1f s", run.uuid, polls, pause)
        await asyncio.sleep(pause)
        wait = min(wait * 2, max_wait_s)


__all__ = [
    "DEFAULT_READERS",
    "KUBE_BURNER_BENCHMARKS",
    "Reader",
    "Readers",
    "Results",
    "gather_results",
    "job_name",
    "kube_burner_query",
    "kube_burner_reader",
    "read_kube_burner",
    "shape_kube_burner",
]
