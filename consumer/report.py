"""The report document: one per run, shaped from its event, results, metrics and links."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

from producer_hooks.events import Event

# Bump when the report's shape changes, so `--stale-only` rebuilds reports of older formats.
REPORT_FORMAT_VERSION = 1


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_report(
    event: Event,
    *,
    results: Mapping[str, Any],
    metrics: Mapping[str, Any],
    links: Mapping[str, str],
    profiles: Sequence[tuple[str, int]],
    reasons: Sequence[str],
    built_at: datetime,
    origin: Mapping[str, Any] | None = None,
    built_in_ms: int | None = None,
) -> dict[str, Any]:
    """The report of one run. ``reasons`` say what is missing; none means the report is complete."""
    run = event.run
    report: dict[str, Any] = {
        "uuid": run.uuid,
        "benchmark": run.benchmark,
        "job_status": run.status,
        "start_date": iso(run.start),
        "end_date": iso(run.end),
        "openshift_cluster_name": run.cluster_name,
        "openshift_cluster_version": run.cluster_version,
        "openshift_network_type": run.network_type,
        "openshift_platform": run.platform,
        "metadata": dict(event.metadata),
        "results": dict(results),
        "metrics": dict(metrics),
        "links": dict(links),
        "report": {
            "status": "partial" if reasons else "complete",
            "reasons": list(reasons),
            "profiles": [{"name": name, "version": version} for name, version in profiles],
            "format_version": REPORT_FORMAT_VERSION,
            "built_at": iso(built_at),
            # Which event of the run this is built from (see consumer.origin), and a hash of that
            # event's metadata, so a rebuild of the same event can be told from a stale one.
            "event_fingerprint": _hash(event.metadata),
        },
    }
    if origin is not None:
        report["report"]["origin"] = dict(origin)
    if built_in_ms is not None:
        report["report"]["built_in_ms"] = built_in_ms  # how long the build took; like built_at, not content
    report["report"]["fingerprint"] = fingerprint(report)
    return report


def with_origin(report: Mapping[str, Any], origin: Mapping[str, Any]) -> dict[str, Any]:
    """``report`` as if built from the event at ``origin``."""
    changed = {**report, "report": {**report["report"], "origin": dict(origin)}}
    changed["report"]["fingerprint"] = fingerprint(changed)
    return changed


_NOT_CONTENT = ("built_at", "built_in_ms", "fingerprint")


def fingerprint(report: Mapping[str, Any]) -> str:
    """A hash of everything but the build's time and duration: equal fingerprints mean nothing worth rewriting."""
    block = {key: value for key, value in report["report"].items() if key not in _NOT_CONTENT}
    return _hash({**report, "report": block})


def _hash(content: Any) -> str:
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).hexdigest()
