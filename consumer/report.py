"""The report document: one per run, shaped from its event, results, metrics and links.

Schema 2: every name (job, metric, label, condition outside the known six) is a value, never part
of a field path, so the index mapping (consumer/sink.py) is the same for every report.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

from consumer.kubeburner import POD_CONDITIONS
from producer_hooks.events import Event
from producer_hooks.redaction import Redactor

# Bump when the report's shape changes, so `--stale-only` rebuilds reports of older formats.
REPORT_FORMAT_VERSION = 2

# The statistics of ``summary.latency_ms``: for each, the highest value over the run's jobs.
SUMMARY_STATS = ("P99", "P95", "P50", "max")

_VERSION = re.compile(r"^[vV]?(\d{1,4})\.(\d{1,4})(?!\d)(?:\.(\d{1,4})(?!\d))?")

_NO_USERINFO = Redactor()  # no secret values here: URL userinfo and Authorization values only


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def version_parts(version: str | None) -> dict[str, int | str] | None:
    """``4.16.0-0.nightly-...`` as ``{major: 4, minor: 16, patch: 0, number: 4016000, release: "4.16"}``:
    integers a range query orders correctly (4.9 < 4.14 < 4.18), which the version string, as a
    keyword, does not. ``number`` is ``major * 10^6 + minor * 10^3 + patch`` (patch 0 when absent).
    ``release`` (major.minor) is what a dashboard groups and filters by: every nightly and z-stream
    of a release under one value."""
    match = _VERSION.match(version or "")
    if not match:
        return None
    major, minor, patch = (int(part) if part is not None else None for part in match.groups())
    assert major is not None and minor is not None
    parts: dict[str, int | str] = {"major": major, "minor": minor}
    if patch is not None:
        parts["patch"] = patch
    if minor < 1000 and (patch or 0) < 1000:
        parts["number"] = major * 1_000_000 + minor * 1_000 + (patch or 0)
    parts["release"] = f"{major}.{minor}"
    return parts


def run_summary(jobs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One number per run for each pod condition and statistic of :data:`SUMMARY_STATS`: the highest
    over the run's jobs (steps and entries without a name included). ``jobs`` is a nested list, which
    a Grafana table cannot show and a chart can only reach with a nested aggregation; these are plain
    fields, so "P99 pod Ready of the run" is a column and a line like any other."""
    worst: dict[str, dict[str, float]] = {}
    for job in jobs:
        latency = job.get("latency_ms")
        for condition, stats in latency.items() if isinstance(latency, Mapping) else ():
            for stat in SUMMARY_STATS:
                value = stats.get(stat) if isinstance(stats, Mapping) else None
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    per_condition = worst.setdefault(condition, {})
                    per_condition[stat] = max(per_condition.get(stat, value), value)
    order = {condition: n for n, condition in enumerate(POD_CONDITIONS)}
    ordered = {c: worst[c] for c in sorted(worst, key=lambda c: (order.get(c, len(order)), c))}
    return {"latency_ms": ordered} if ordered else {}


def build_report(
    event: Event,
    *,
    results: Mapping[str, Any],
    metrics: Sequence[Mapping[str, Any]],
    links: Mapping[str, str],
    profiles: Sequence[tuple[str, int]],
    reasons: Sequence[str],
    built_at: datetime,
    origin: Mapping[str, Any] | None = None,
    status: str | None = None,
    built_in_ms: int | None = None,
) -> dict[str, Any]:
    """The report of one run. ``results`` holds the run's ``jobs``; ``metrics`` is the list of
    series entries. ``reasons`` say what is missing; none means the report is complete (unless
    ``status`` says otherwise: ``incomplete`` for a run that never finished)."""
    run = event.run
    jobs = [dict(job) for job in results.get("jobs", ())]
    end = iso(run.end)
    report: dict[str, Any] = {
        "uuid": run.uuid,
        "benchmark": run.benchmark,
        "job_status": run.status,
        "start_date": iso(run.start),
        "end_date": end,
        "duration_s": run.duration_s,
        "openshift_cluster_name": run.cluster_name,
        "openshift_cluster_version": run.cluster_version,
        "openshift_cluster_version_parts": version_parts(run.cluster_version),
        "openshift_network_type": run.network_type,
        "openshift_platform": run.platform,
        "release_stream": run.release_stream,
        "ci_system": run.ci_system,
        "master_count": run.master_count,
        "worker_count": run.worker_count,
        "infra_count": run.infra_count,
        "workload_count": run.workload_count,
        "total_count": run.total_count,
        "master_type": run.master_type,
        "worker_type": run.worker_type,
        "infra_type": run.infra_type,
        "workload_type": run.workload_type,
        "build_url": _NO_USERINFO.apply(run.build_url),  # like metadata: without URL credentials
        "upstream_job": run.upstream_job,
        "upstream_job_build": run.upstream_job_build,
        # As published, but without URL credentials a pipeline may have put in (a build_url with a token).
        "metadata": _NO_USERINFO.apply(dict(event.metadata)),
        "jobs": jobs,
        "summary": run_summary(jobs),
        # Each series carries the end of the window it summarises (the run's), so a nested date
        # histogram (all a dashboard can run on ``metrics``) can place it in time.
        "metrics": [{**entry, "end_date": end} if end else dict(entry) for entry in metrics],
        "links": dict(links),
        "report": {
            "status": status or ("partial" if reasons else "complete"),
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


def with_verdict(report: Mapping[str, Any], verdict: Mapping[str, Any]) -> dict[str, Any]:
    """``report`` with its ``verdict`` (consumer.verdict). The verdict's conclusion is part of the
    fingerprint: it depends only on the run, its comparable history and their acknowledgements, so
    the same inputs give the same verdict, and a changed one is worth rewriting the report for."""
    changed = {**report, "verdict": dict(verdict)}
    changed["report"] = {**report["report"]}
    changed["report"]["fingerprint"] = fingerprint(changed)
    return changed


def fingerprint(report: Mapping[str, Any]) -> str:
    """A hash of everything but the build's time and duration: equal fingerprints mean nothing worth rewriting.

    Of the verdict, only its conclusion counts (its own fingerprint: status, and which numbers moved
    since which run): the details (medians, p-values, the runs compared with) shift a little as
    the history fills in, e.g. while a replay rebuilds many runs at once, and are not worth
    rewriting a report for; a changed conclusion is.
    """
    block = {key: value for key, value in report["report"].items() if key not in _NOT_CONTENT}
    content = {**report, "report": block}
    if isinstance(report.get("verdict"), Mapping):
        content["verdict"] = report["verdict"].get("fingerprint")
    return _hash(content)


def _hash(content: Any) -> str:
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).hexdigest()
