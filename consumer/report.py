"""The report document: one per run, shaped from its event, results, metrics and links."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

from producer_hooks.events import Event
from producer_hooks.redaction import Redactor

# Bump when the report's shape changes, so `--stale-only` rebuilds reports of older formats.
REPORT_FORMAT_VERSION = 1

_NO_USERINFO = Redactor()  # no secret values here: URL userinfo and Authorization values only


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
        # As published, but without URL credentials a pipeline may have put in (a build_url with a token).
        "metadata": _NO_USERINFO.apply(dict(event.metadata)),
        "results": dict(results),
        "metrics": dict(metrics),
        "links": dict(links),
        "report": {
            "status": "partial" if reasons else "complete",
            "reasons": [_NO_USERINFO(reason) for reason in reasons],
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
    report["report"]["fingerprint"] = fingerprint(report)
    return report


def with_origin(report: Mapping[str, Any], origin: Mapping[str, Any]) -> dict[str, Any]:
    """``report`` as if built from the event at ``origin``."""
    changed = {**report, "report": {**report["report"], "origin": dict(origin)}}
    changed["report"]["fingerprint"] = fingerprint(changed)
    return changed


def fingerprint(report: Mapping[str, Any]) -> str:
    """A hash of everything but the build time: equal fingerprints mean nothing worth rewriting."""
    block = {key: value for key, value in report["report"].items() if key not in ("built_at", "fingerprint")}
    return _hash({**report, "report": block})


def _hash(content: Any) -> str:
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).hexdigest()
