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

from elasticsearch import AsyncElasticsearch, BadRequestError, ConflictError

from consumer.elastic import is_transient
from consumer.origin import Origin, compare
from consumer.report import with_origin
from consumer.retry import RetryPolicy

log = logging.getLogger(__name__)

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_LONG_KEYWORD = {"type": "keyword", "ignore_above": 8191}  # URLs, PromQL
_DOUBLE = {"type": "double", "ignore_malformed": True}
_DATE = {"type": "date", "ignore_malformed": True}


def _template(name: str, path: str | list[str], types: str | list[str], mapping: dict[str, Any]) -> dict[str, Any]:
    return {name: {"path_match": path, "match_mapping_type": types, "mapping": mapping}}


# Everything free-form (run metadata, metric labels, job configs) is ``flattened``: one field
# whatever its keys, so the mapping stays bounded. The per-job and per-series numbers stay real
# doubles, aggregatable in dashboards. Numbers, dates and booleans tolerate a malformed value
# (``ignore_malformed``): one odd report must never be rejected for a field's type.
REPORT_MAPPING: dict[str, Any] = {
    "dynamic": True,
    # Dates are declared, never guessed: a guessed date field rejects the next non-date string.
    "date_detection": False,
    "dynamic_templates": [
        # results.<job>.jobSummary: scalars stay fields; jobConfig, (pre-1.11) metadata and any other
        # nested part are flattened.
        _template("results_objects", "results.*.jobSummary.*", "object", {"type": "flattened"}),
        _template(
            "results_dates",
            ["results.*.jobSummary.timestamp", "results.*.jobSummary.*Timestamp"],
            "string",
            _DATE,
        ),
        # e.g. results.<job>.podLatencyQuantiles.Ready.P99, results.<job>.jobSummary.elapsedTime
        _template("results_numbers", "results.*", ["long", "double"], _DOUBLE),
        _template("results_booleans", "results.*", "boolean", {"type": "boolean", "ignore_malformed": True}),
        _template("results_strings", "results.*", "string", _KEYWORD),
        # metrics.<name>.series: one nested document per series, its labels one flattened field.
        _template("metrics_series", "metrics.*.series", "object", {"type": "nested"}),
        _template("metrics_labels", "metrics.*.series.labels", "object", {"type": "flattened"}),
        _template("metrics_samples", "metrics.*.series.samples", ["long", "double"], {"type": "long", "ignore_malformed": True}),
        _template("metrics_numbers", "metrics.*", ["long", "double"], _DOUBLE),
        _template("metrics_queries", "metrics.*.query", "string", _LONG_KEYWORD),
        _template("metrics_strings", "metrics.*", "string", _KEYWORD),
        _template("links", "links.*", "string", _LONG_KEYWORD),
        {"strings": {"match_mapping_type": "string", "mapping": _KEYWORD}},
    ],
    "properties": {
        "uuid": {"type": "keyword"},
        "benchmark": {"type": "keyword"},
        "job_status": {"type": "keyword"},
        "openshift_cluster_name": {"type": "keyword"},
        "openshift_cluster_version": {"type": "keyword"},
        "openshift_network_type": {"type": "keyword"},
        "openshift_platform": {"type": "keyword"},
        "start_date": {"type": "date"},
        "end_date": {"type": "date"},
        "metadata": {"type": "flattened", "ignore_above": 1024},
        "links": {"type": "object"},
        "results": {"type": "object"},
        "metrics": {"type": "object"},
        "report": {
            "properties": {
                "status": {"type": "keyword"},
                "reasons": {"type": "text"},
                "profiles": {"properties": {"name": {"type": "keyword"}, "version": {"type": "integer"}}},
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
        },
    },
}

REPORT_SETTINGS: dict[str, Any] = {
    # Job and metric names are the only keys that add fields; leave room for them, and past the
    # limit keep the report (unmapped fields stay in _source) rather than reject it.
    "index.mapping.total_fields.limit": 5000,
    "index.mapping.total_fields.ignore_dynamic_beyond_limit": True,
    # One nested field per metric name, one nested document per series.
    "index.mapping.nested_fields.limit": 500,
    "index.mapping.nested_objects.limit": 100_000,
}


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


async def ensure_report_index(es: AsyncElasticsearch, index: str, retry: RetryPolicy | None = None) -> bool:
    """Create the report index with its mapping unless it exists; True if this call created it.

    Safe to call from many consumers at once: losing the race to create it is not an error.
    """
    async for attempt in (retry or RetryPolicy()).retrying(is_transient, f"creating index {index}"):
        with attempt:
            return await _create_index(es, index)
    raise AssertionError("unreachable")  # pragma: no cover


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


async def _write_once(es: AsyncElasticsearch, index: str, report: Mapping[str, Any]) -> WriteOutcome:
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
    "ReportRejected",
    "WriteConflict",
    "WriteOutcome",
    "decide",
    "ensure_report_index",
    "stored_versions",
    "write_report",
]
