"""The report index: its mapping, and writing one report per run without duplicates or lost updates.

A report's ``_id`` is its run's uuid, and ``report.fingerprint`` (computed by the builder, over the
report without its build time) says whether its content changed. A writer reads the stored
fingerprint first: the same content is never written twice, and a changed one is written with
optimistic concurrency, so a replay beside the live consumer cannot clobber or duplicate a report.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError, ConflictError

from consumer.elastic import is_transient
from consumer.kubeburner import POD_CONDITIONS, QUANTILE_STATS
from consumer.report import REPORT_FORMAT_VERSION
from consumer.retry import RetryPolicy
from producer_hooks.settings import SettingsError

log = logging.getLogger(__name__)

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_LONG_KEYWORD = {"type": "keyword", "ignore_above": 8191}  # URLs, PromQL, error messages
_DOUBLE = {"type": "double", "ignore_malformed": True}
_INTEGER = {"type": "integer", "ignore_malformed": True}
_LONG = {"type": "long", "ignore_malformed": True}
_DATE = {"type": "date", "ignore_malformed": True}
_BOOLEAN = {"type": "boolean", "ignore_malformed": True}
# Free-form parts (run metadata, job configs, metric labels): one field whatever their keys.
_FLATTENED = {"type": "flattened", "ignore_above": 1024}
_FREE_FORM = {**_FLATTENED, "depth_limit": 100}  # kube-burner's, not ours: never refuse a report for it


def _typed(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object of exactly these fields: other keys stay in ``_source`` but add no field."""
    return {**extra, "dynamic": False, "properties": properties}


_QUANTILES = {stat: _DOUBLE for stat in QUANTILE_STATS}

# Schema 2 (consumer/report.py): no field path is made of a name. Jobs and metric series are
# nested lists whose names are values, the known pod conditions are fields, and every object is
# ``dynamic: false``, so the mapping has the same fields whatever the reports hold, and "P99 Ready
# of job X" or "max P99 Ready over all jobs" are each one query. Numbers, dates and booleans
# tolerate a malformed value (``ignore_malformed``): one odd value never rejects a report.
REPORT_MAPPING: dict[str, Any] = _typed(
    {
        "uuid": {"type": "keyword"},
        "benchmark": _KEYWORD,
        "job_status": _KEYWORD,
        "start_date": _DATE,
        "end_date": _DATE,
        "duration_s": _DOUBLE,
        "openshift_cluster_name": _KEYWORD,
        "openshift_cluster_version": _KEYWORD,
        "openshift_cluster_version_parts": _typed(
            {"major": _INTEGER, "minor": _INTEGER, "patch": _INTEGER, "number": _LONG}
        ),
        "openshift_network_type": _KEYWORD,
        "openshift_platform": _KEYWORD,
        "release_stream": _KEYWORD,
        "ci_system": _KEYWORD,
        **{f"{role}_count": _INTEGER for role in ("master", "worker", "infra", "workload", "total")},
        **{f"{role}_type": _KEYWORD for role in ("master", "worker", "infra", "workload")},
        "build_url": _LONG_KEYWORD,
        "upstream_job": _KEYWORD,
        "upstream_job_build": _KEYWORD,
        "metadata": _FLATTENED,
        "jobs": _typed(
            {
                "name": _KEYWORD,
                "phase": _KEYWORD,  # job, before / step / after (incremental load), gc
                "step": _INTEGER,
                "step_id": _KEYWORD,
                "type": _KEYWORD,
                "start_date": _DATE,
                "end_date": _DATE,
                "churn_start_date": _DATE,
                "churn_end_date": _DATE,
                "elapsed_s": _DOUBLE,
                "iterations": _LONG,
                "qps": _DOUBLE,
                "burst": _LONG,
                "achieved_qps": _DOUBLE,
                "namespace": _KEYWORD,
                "passed": _BOOLEAN,
                "errors": _LONG_KEYWORD,
                "version": _KEYWORD,
                "latency_ms": _typed({condition: _typed(_QUANTILES) for condition in POD_CONDITIONS}),
                "latency_other_ms": _typed({"condition": _KEYWORD, **_QUANTILES}, type="nested"),
                "attribution": _KEYWORD,
                "config": _FREE_FORM,
                "metadata": _FREE_FORM,
            },
            type="nested",
        ),
        "metrics": _typed(
            {
                "name": _KEYWORD,
                "profile": _KEYWORD,
                "unit": _KEYWORD,
                "query": _LONG_KEYWORD,
                "status": _KEYWORD,  # ok, no data, error
                "labels": _FLATTENED,
                "avg": _DOUBLE,
                "max": _DOUBLE,
                "samples": _LONG,
                "error": _LONG_KEYWORD,
                "warnings": _LONG_KEYWORD,
            },
            type="nested",
        ),
        "links": {"type": "flattened", "ignore_above": 8191},
        "report": _typed(
            {
                "status": _KEYWORD,
                "reasons": _LONG_KEYWORD,
                "profiles": _typed({"name": _KEYWORD, "version": _INTEGER}),
                "format_version": {"type": "integer"},
                "built_at": {"type": "date"},
                "fingerprint": {"type": "keyword"},
            }
        ),
    },
    # Which report format the index was made for: a consumer of another format refuses to write.
    _meta={"report_format_version": REPORT_FORMAT_VERSION},
    date_detection=False,
)

REPORT_SETTINGS: dict[str, Any] = {
    # Nested documents per report: one per job, step and metric series.
    "index.mapping.nested_objects.limit": 100_000,
}


class ReportIndexMismatch(SettingsError):
    """``REPORT_INDEX`` names an index made for another report format."""


class WriteOutcome(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class WriteConflict(Exception):
    """Other writers kept changing the report between our read and our write."""


_MAX_RACES = 10


async def ensure_report_index(es: AsyncElasticsearch, index: str, retry: RetryPolicy | None = None) -> bool:
    """Create the report index with its mapping unless it exists; True if this call created it.

    Safe to call from many consumers at once: losing the race to create it is not an error. An
    existing index made for another report format raises :class:`ReportIndexMismatch`: writing
    into it would leave the reports unsearchable (or be refused).
    """
    async for attempt in (retry or RetryPolicy()).retrying(is_transient, f"creating index {index}"):
        with attempt:
            created = await _create_index(es, index)
            if not created:
                await _check_format(es, index)
            return created
    raise AssertionError("unreachable")  # pragma: no cover


async def _check_format(es: AsyncElasticsearch, index: str) -> None:
    for name, body in (await es.indices.get_mapping(index=index)).body.items():
        found = body.get("mappings", {}).get("_meta", {}).get("report_format_version", 1)
        if found != REPORT_FORMAT_VERSION:
            raise ReportIndexMismatch(
                f"REPORT_INDEX: index {name} was made for report format {found}, this consumer writes format "
                f"{REPORT_FORMAT_VERSION}; set REPORT_INDEX to a new index (e.g. {index}-v{REPORT_FORMAT_VERSION}) "
                "and rebuild its reports with `report-consumer backfill` or `replay`, or delete the old index"
            )


async def _create_index(es: AsyncElasticsearch, index: str) -> bool:
    try:
        await es.indices.create(index=index, mappings=REPORT_MAPPING, settings=REPORT_SETTINGS)
    except BadRequestError as exc:
        if exc.error == "resource_already_exists_exception":
            return False
        raise
    log.info("created report index %s", index)
    return True


async def write_report(es: AsyncElasticsearch, index: str, report: Mapping[str, Any], retry: RetryPolicy) -> WriteOutcome:
    """Store ``report`` under ``report["uuid"]`` unless the stored one has the same fingerprint.

    A transient error (even after Elasticsearch applied the write) is retried from the read, so a
    retry never writes the same content twice: it finds it stored and answers UNCHANGED.
    """
    async for attempt in retry.retrying(is_transient, f"writing report {report.get('uuid')}"):
        with attempt:
            return await _write_once(es, index, report)
    raise AssertionError("unreachable")  # pragma: no cover


async def _write_once(es: AsyncElasticsearch, index: str, report: Mapping[str, Any]) -> WriteOutcome:
    doc_id = report["uuid"]
    fingerprint = report["report"]["fingerprint"]
    for _ in range(_MAX_RACES):
        stored = (
            await es.options(ignore_status=404).get(index=index, id=doc_id, source_includes=["report.fingerprint"])
        ).body
        if _index_missing(stored):
            # Never let the first write auto-create the index with a guessed mapping.
            await _create_index(es, index)
            continue
        try:
            if not stored.get("found"):
                await es.index(index=index, id=doc_id, document=report, op_type="create")
                return WriteOutcome.CREATED
            if stored.get("_source", {}).get("report", {}).get("fingerprint") == fingerprint:
                return WriteOutcome.UNCHANGED
            await es.index(
                index=index,
                id=doc_id,
                document=report,
                if_seq_no=stored["_seq_no"],
                if_primary_term=stored["_primary_term"],
            )
            return WriteOutcome.UPDATED
        except ConflictError:
            # Someone wrote it between our read and our write: look again at what they wrote.
            log.debug("report %s changed under us, reading it again", doc_id)
    raise WriteConflict(f"report {doc_id} kept changing under {_MAX_RACES} attempts to write it")


def _index_missing(body: Mapping[str, Any]) -> bool:
    error = body.get("error")
    return isinstance(error, Mapping) and error.get("type") == "index_not_found_exception"


async def stored_versions(
    es: AsyncElasticsearch,
    index: str,
    uuids: Iterable[str],
    retry: RetryPolicy | None = None,
    *,
    chunk_size: int = 500,
) -> dict[str, dict[str, Any]]:
    """The ``report`` block (format_version, profiles, fingerprint, ...) of each stored report, by uuid.

    Reports not stored (or stored without a ``report`` block) are absent from the answer.
    """
    wanted = list(dict.fromkeys(uuids))
    policy = retry or RetryPolicy()
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), chunk_size):
        chunk = wanted[start : start + chunk_size]
        async for attempt in policy.retrying(is_transient, f"reading stored reports of {index}"):
            with attempt:
                response = await es.options(ignore_status=404).mget(index=index, ids=chunk, source_includes=["report"])
        if _index_missing(response.body):
            return {}
        for doc in response.body.get("docs", ()):
            block = doc.get("_source", {}).get("report") if doc.get("found") else None
            if isinstance(block, dict):
                found[doc["_id"]] = block
    return found


__all__ = [
    "REPORT_MAPPING",
    "REPORT_SETTINGS",
    "ReportIndexMismatch",
    "WriteConflict",
    "WriteOutcome",
    "ensure_report_index",
    "stored_versions",
    "write_report",
]
