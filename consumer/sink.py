"""The report index: its mapping, and writing one report per run without duplicates, lost updates
or stale overwrites.

A report's ``_id`` is its run's uuid. ``report.fingerprint`` (computed by the builder, over the
report without its build time) says whether its content changed, and ``report.origin`` which event
of the run it was built from. A writer reads those two first (:func:`decide`): the same content is
never written twice, a report from an earlier event never replaces one from a later event, and a
changed one is written with optimistic concurrency, so a replay beside the live consumer cannot
clobber, duplicate or roll back a report.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from elasticsearch import BadRequestError, ConflictError

from consumer.elastic import is_transient
from consumer.kubeburner import POD_CONDITIONS, QUANTILE_STATS
from consumer.origin import Origin, compare
from consumer.report import REPORT_FORMAT_VERSION, SUMMARY_STATS, with_origin
from consumer.retry import RetryPolicy
from consumer.store import Store, create_index
from producer_hooks.settings import SettingsError

log = logging.getLogger(__name__)

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
# The run's canonical fields: the event model keeps their strings under Lucene's 32 kB term limit.
_CANONICAL = {"type": "keyword"}
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
        "uuid": _CANONICAL,
        "benchmark": _CANONICAL,
        "job_status": _CANONICAL,
        "start_date": _DATE,
        "end_date": _DATE,
        "duration_s": _DOUBLE,
        "openshift_cluster_name": _CANONICAL,
        "openshift_cluster_version": _CANONICAL,
        "openshift_cluster_version_parts": _typed(
            {"major": _INTEGER, "minor": _INTEGER, "patch": _INTEGER, "number": _LONG, "release": _KEYWORD}
        ),
        "openshift_network_type": _CANONICAL,
        "openshift_platform": _CANONICAL,
        "release_stream": _CANONICAL,
        "ci_system": _CANONICAL,
        **{f"{role}_count": _INTEGER for role in ("master", "worker", "infra", "workload", "total")},
        **{f"{role}_type": _CANONICAL for role in ("master", "worker", "infra", "workload")},
        "build_url": _CANONICAL,
        "upstream_job": _CANONICAL,
        "upstream_job_build": _CANONICAL,
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
        # Per run, the highest of each statistic over its jobs: plain fields for tables and charts.
        "summary": _typed(
            {"latency_ms": _typed({c: _typed({stat: _DOUBLE for stat in SUMMARY_STATS}) for c in POD_CONDITIONS})}
        ),
        "metrics": _typed(
            {
                "name": _KEYWORD,
                "profile": _KEYWORD,
                "unit": _KEYWORD,
                "query": _LONG_KEYWORD,
                "status": _KEYWORD,  # ok, no data, error
                "labels": _FLATTENED,
                "label_values": _KEYWORD,
                "avg": _DOUBLE,
                "max": _DOUBLE,
                "samples": _LONG,
                "step_s": _DOUBLE,
                "end_date": _DATE,  # the end of the window summarised: a date histogram's field
                "error": _LONG_KEYWORD,
                "warnings": _LONG_KEYWORD,
            },
            type="nested",
        ),
        "links": {"type": "flattened", "ignore_above": 8191},
        # consumer/verdict.py; `history` and each number's `series` (for charts) stay in _source only.
        "verdict": _typed(
            {
                "status": _KEYWORD,  # pass, regression, improvement, insufficient-history, not-judged
                "method": _KEYWORD,
                "rule": _KEYWORD,
                "reason": _LONG_KEYWORD,
                "comparable": _FLATTENED,
                "history_runs": _INTEGER,
                "min_history": _INTEGER,
                "regressions": _KEYWORD,
                "improvements": _KEYWORD,
                "acked": _KEYWORD,
                "fingerprint": _KEYWORD,
                "numbers": _typed(
                    {
                        "name": _KEYWORD,
                        "job": _KEYWORD,
                        "metric": _KEYWORD,
                        "labels": _FLATTENED,
                        "stat": _KEYWORD,
                        "unit": _KEYWORD,
                        "direction": _KEYWORD,
                        "min_change_pct": _DOUBLE,
                        "value": _DOUBLE,
                        "baseline_median": _DOUBLE,
                        "baseline_spread": _DOUBLE,
                        "baseline_runs": _INTEGER,
                        "baseline_from": _KEYWORD,
                        "delta": _DOUBLE,
                        "delta_pct": _DOUBLE,
                        "change_point": _BOOLEAN,
                        "change_points": _KEYWORD,
                        "p_value": _DOUBLE,
                        "status": _KEYWORD,  # pass, regression, improvement, acked, insufficient-history
                        "method": _KEYWORD,  # e-divisive, threshold
                        "since": _KEYWORD,
                    },
                    type="nested",
                ),
            }
        ),
        "report": _typed(
            {
                "status": _KEYWORD,
                "reasons": _LONG_KEYWORD,
                "profiles": _typed({"name": _KEYWORD, "version": _INTEGER}),
                "format_version": {"type": "integer"},
                "built_at": {"type": "date"},
                "fingerprint": {"type": "keyword"},
                "event_fingerprint": {"type": "keyword"},
                "origin": {
                    "properties": {
                        "published_at": {"type": "date"},
                        "topic": {"type": "keyword"},
                        "partition": {"type": "integer"},
                        "offset": {"type": "long"},
                    }
                },
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
    SUPERSEDED = "superseded"  # a report built from a later event of the run stands


class WriteConflict(Exception):
    """Other writers kept changing the report between our read and our write."""


class ReportRejected(Exception):
    """The report index refuses this report (a mapping conflict, a limit): the same every time."""


_MAX_RACES = 10


async def ensure_report_index(es: Store, index: str, retry: RetryPolicy | None = None) -> bool:
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


async def _check_format(es: Store, index: str) -> None:
    for name, body in (await es.indices.get_mapping(index=index)).body.items():
        found = body.get("mappings", {}).get("_meta", {}).get("report_format_version", 1)
        if found != REPORT_FORMAT_VERSION:
            raise ReportIndexMismatch(
                f"REPORT_INDEX: index {name} was made for report format {found}, this consumer writes format "
                f"{REPORT_FORMAT_VERSION}; set REPORT_INDEX to a new index (e.g. {index}-v{REPORT_FORMAT_VERSION}) "
                "and rebuild its reports with `report-consumer backfill` or `replay`, or delete the old index"
            )


async def _create_index(es: Store, index: str) -> bool:
    created = await create_index(es, index, REPORT_MAPPING, REPORT_SETTINGS)
    if created:
        log.info("created report index %s", index)
    return created


async def write_report(es: Store, index: str, report: Mapping[str, Any], retry: RetryPolicy) -> WriteOutcome:
    """Store ``report`` under ``report["uuid"]`` unless the stored one has the same fingerprint.

    A transient error (even after Elasticsearch applied the write) is retried from the read, so a
    retry never writes the same content twice: it finds it stored and answers UNCHANGED.
    """
    async for attempt in retry.retrying(is_transient, f"writing report {report.get('uuid')}"):
        with attempt:
            return await _write_once(es, index, report)
    raise AssertionError("unreachable")  # pragma: no cover


# What a writer reads of the stored report to decide: never the whole document.
_HEAD = ["report.fingerprint", "report.origin", "report.event_fingerprint"]


def decide(report: Mapping[str, Any], stored: Mapping[str, Any] | None) -> tuple[WriteOutcome, Mapping[str, Any]]:
    """What writing ``report`` over the ``stored`` report block (None: no report yet) should do,
    and the report to write.

    A report built from an earlier event of the run than the stored one's never replaces it: the
    latest event wins, whatever order the builds finish in. The one exception is a rebuild from an
    earlier delivery of the very same metadata (a backfill, after a format change): it stands for
    the later event, whose origin it then keeps.
    """
    if stored is None:
        return WriteOutcome.CREATED, report
    block = report["report"]
    if "origin" in block and "origin" in stored:
        order = compare(Origin.from_dict(block["origin"]), Origin.from_dict(stored["origin"]))
        if order < 0:
            if block.get("event_fingerprint") != stored.get("event_fingerprint"):
                return WriteOutcome.SUPERSEDED, report
            report = with_origin(report, stored["origin"])
            block = report["report"]
    if stored.get("fingerprint") == block["fingerprint"]:
        return WriteOutcome.UNCHANGED, report
    return WriteOutcome.UPDATED, report


async def _write_once(es: Store, index: str, report: Mapping[str, Any]) -> WriteOutcome:
    doc_id = report["uuid"]
    for _ in range(_MAX_RACES):
        stored = (await es.options(ignore_status=404).get(index=index, id=doc_id, source_includes=_HEAD)).body
        if _index_missing(stored):
            # Never let the first write auto-create the index with a guessed mapping.
            await _create_index(es, index)
            continue
        found = stored.get("found", False)
        outcome, document = decide(report, stored.get("_source", {}).get("report", {}) if found else None)
        if outcome in (WriteOutcome.UNCHANGED, WriteOutcome.SUPERSEDED):
            return outcome
        try:
            if not found:
                await es.index(index=index, id=doc_id, document=document, op_type="create")
            else:
                # Optimistic concurrency: written only over exactly what was read.
                await es.index(index=index, id=doc_id, document=document,
                               if_seq_no=stored["_seq_no"], if_primary_term=stored["_primary_term"])
            return outcome
        except ConflictError:
            # Someone wrote it between our read and our write: look again at what they wrote.
            log.debug("report %s changed under us, reading it again", doc_id)
        except BadRequestError as err:
            raise ReportRejected(f"the report index refused report {doc_id}: {_reason(err)}") from err
    raise WriteConflict(f"report {doc_id} kept changing under {_MAX_RACES} attempts to write it")


def _reason(err: BadRequestError) -> str:
    info = err.info if isinstance(err.info, Mapping) else {}
    error = info.get("error", {}) if isinstance(info.get("error"), Mapping) else {}
    caused = error.get("caused_by", {}) if isinstance(error.get("caused_by"), Mapping) else {}
    parts = [error.get("type"), error.get("reason"), caused.get("reason")]
    return "; ".join(str(part) for part in parts if part) or str(err)


def _index_missing(body: Mapping[str, Any]) -> bool:
    error = body.get("error")
    return isinstance(error, Mapping) and error.get("type") == "index_not_found_exception"


async def stored_versions(
    es: Store,
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
    "ReportRejected",
    "WriteConflict",
    "WriteOutcome",
    "decide",
    "ensure_report_index",
    "stored_versions",
    "write_report",
]
