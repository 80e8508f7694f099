"""kube-burner's result documents, of any version, shaped into the report's list of jobs (pure).

What kube-burner writes, by version (``metricName`` in brackets):

- [jobSummary] one per job: never ``jobName``; the job is ``jobConfig.name``. Cluster metadata is
  nested under ``metadata`` up to v1.10 and merged at the top level from v1.11. A
  ``garbage-collection`` summary (``gcMetrics``) has a jobConfig of only ``{name, gc, churnConfig}``.
  ``elapsedTime`` is a float up to v1.x, an integer in v2.
- [podLatencyQuantilesMeasurement] one per job and condition (``quantileName``), ``P99, P95, P50,
  max, avg`` (+ ``min`` from v1.12) in ms. The job is ``jobName`` from v1.10.5, the whole
  ``jobConfig`` in v1.9.0-v1.9.5, and *nothing* in v1.9.7-v1.10.4: those are matched to a job by
  time. kube-burner computes them right after the job's ``endTimestamp`` and before the next job
  starts, so a set belongs to the job that started last before it, if it came within
  :data:`ATTRIBUTION_SLACK_NS` of that job's end.
- incrementalLoad (v2.5+): one job writes a summary before its steps, one per step (with
  ``incrementalLoadUUID``) and one after; each step has its own quantile set (with
  ``metadata.incrementalLoadUUID``). Every step is an entry of its own, numbered in order.

Timestamps are RFC 3339 with up to 9 fraction digits. A quantile set that cannot be tied to exactly
one job is kept in an entry without a name, and a reason says so: a job is never invented.

Names (job, condition) are values, never field names, so the report's mapping stays the same
whatever they are; very long ones are cut with a marker that keeps them distinct.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

JOB_SUMMARY = "jobSummary"
POD_LATENCY_QUANTILES = "podLatencyQuantilesMeasurement"
QUANTILE_STATS = ("P99", "P95", "P50", "max", "avg", "min")
# The pod conditions kube-burner measures (v2 adds the last two); each is a typed field of the
# report. Any other name goes to ``latency_other_ms`` as a value.
POD_CONDITIONS = (
    "PodScheduled", "Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers", "ContainersStarted",
)  # fmt: skip
GC_JOB = "garbage-collection"
MAX_NAME_CHARS = 256
# How long after a job's end its quantiles may be timestamped (kube-burner stops the measurement
# right after the job ends; the next job starts later still).
ATTRIBUTION_SLACK_NS = 60 * 10**9

# Phases of a job entry.
JOB, BEFORE, STEP, AFTER, GC = "job", "before", "step", "after", "gc"

# jobSummary keys that are not cluster metadata (v1.11+ merges metadata among them).
_SUMMARY_KEYS = frozenset({
    "timestamp", "endTimestamp", "churnStartTimestamp", "churnEndTimestamp", "elapsedTime", "achievedQps",
    "uuid", "incrementalLoadUUID", "metricName", "jobConfig", "version", "passed", "executionErrors", "metadata",
})  # fmt: skip
_GC_CONFIG_KEYS = frozenset({"name", "gc", "churnConfig"})

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# -- small pure helpers ---------------------------------------------------------------------------


def epoch_ns(value: Any) -> int | None:
    """An RFC 3339 timestamp (any number of fraction digits) as nanoseconds since the epoch; None
    for anything else, and for Go's zero time (``0001-01-01T00:00:00Z``, "not set")."""
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if int(year) <= 1:
        return None
    try:
        if zone in ("Z", "z"):
            tz = timezone.utc
        else:
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    except ValueError:
        return None
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return (moment - _EPOCH) // timedelta(seconds=1) * 10**9 + nanos


def capped(name: Any) -> str:
    """``name`` as text of at most :data:`MAX_NAME_CHARS` characters; a longer one is cut and ends
    with a marker giving its length and a hash, so two long names stay distinct."""
    text = name if isinstance(name, str) else str(name)
    if len(text) <= MAX_NAME_CHARS:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    marker = f"…[{len(text)} chars, sha256 {digest}]"
    return text[: MAX_NAME_CHARS - len(marker)] + marker


def number(value: Any) -> int | float | None:
    """A finite number, from a number or a numeric string; None otherwise (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def integer(value: Any) -> int | None:
    parsed = number(value)
    if parsed is None or parsed != int(parsed):
        return None
    return int(parsed)


def job_name(doc: Mapping[str, Any]) -> str | None:
    """The job a document names: ``jobName`` (quantiles, v1.10.5+) or ``jobConfig.name``
    (every jobSummary; quantiles of v1.9.0-v1.9.5); None when it names none."""
    name = doc.get("jobName")
    if name not in (None, ""):
        return capped(name)
    config = doc.get("jobConfig")
    if isinstance(config, Mapping) and config.get("name") not in (None, ""):
        return capped(config["name"])
    return None


def step_id(doc: Mapping[str, Any]) -> str | None:
    """The incremental-load step a document belongs to (v2.5+), if any."""
    value = doc.get("incrementalLoadUUID")
    if value in (None, ""):
        metadata = doc.get("metadata")
        value = metadata.get("incrementalLoadUUID") if isinstance(metadata, Mapping) else None
    return None if value in (None, "") else capped(value)


def _canonical(doc: Mapping[str, Any]) -> bytes:
    """A total order among documents, for deterministic choices between duplicates."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)


def _is_gc(summary: Mapping[str, Any]) -> bool:
    config = summary.get("jobConfig")
    return isinstance(config, Mapping) and config.get("name") == GC_JOB and set(config) <= _GC_CONFIG_KEYS


# -- shaping --------------------------------------------------------------------------------------


@dataclass
class _Job:
    """A job entry while it is being assembled."""

    name: str | None
    step_id: str | None = None
    phase: str = JOB
    summary: Mapping[str, Any] | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    quantiles: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # condition -> document
    attribution: set[str] = field(default_factory=set)  # how its quantiles were tied to it
    step: int | None = None

    def add(self, doc: Mapping[str, Any], how: str) -> None:
        condition = capped(doc["quantileName"])
        seen = self.quantiles.get(condition)
        if seen is None or _quantile_order(doc) > _quantile_order(seen):  # a re-indexed set: latest wins
            self.quantiles[condition] = doc
        self.attribution.add(how)

    @property
    def sort_ns(self) -> int | None:
        if self.start_ns is not None:
            return self.start_ns
        times = [t for t in (epoch_ns(d.get("timestamp")) for d in self.quantiles.values()) if t is not None]
        return min(times) if times else None


@dataclass(frozen=True)
class KubeBurnerJobs:
    jobs: list[dict[str, Any]]  # the report's ``jobs``, in run order
    summaries: int  # jobSummary documents among them: none means the run's results are not all there
    reasons: list[str]  # what could not be attributed


def shape_kube_burner(docs: Iterable[Mapping[str, Any]]) -> KubeBurnerJobs:
    """kube-burner documents (any version, any order) into the report's ``jobs`` list.

    One entry per job, per incremental-load step (and the job's summaries before and after its
    steps), each with its summary numbers and its pod latency quantiles per condition. Other
    documents (metrics, per-pod latencies) are ignored. A document indexed twice counts once, the
    later (by ``timestamp``) winning; the same documents always give the same list.
    """
    summaries: list[Mapping[str, Any]] = []
    quantiles: list[Mapping[str, Any]] = []
    for doc in docs:
        metric = doc.get("metricName")
        if metric == JOB_SUMMARY:
            summaries.append(doc)
        elif metric == POD_LATENCY_QUANTILES and doc.get("quantileName") not in (None, ""):
            quantiles.append(doc)

    jobs = _jobs_from_summaries(summaries)
    unattributed: list[Mapping[str, Any]] = []
    for doc in sorted(quantiles, key=_quantile_order):
        job, how = _attribute(doc, jobs)
        if job is None:
            unattributed.append(doc)
        else:
            job.add(doc, how)

    reasons = []
    if unattributed:
        why = "no jobSummary to match them with" if not summaries else "no single job's time window holds them"
        reasons.append(f"{len(unattributed)} pod latency quantile documents name no job and {why}: "
                       "kept in job entries without a name")
    jobs += _unnamed(unattributed)
    _number_steps(jobs)
    jobs.sort(key=lambda j: (j.sort_ns is None, j.sort_ns or 0, j.name or "", j.step or 0, j.step_id or ""))
    return KubeBurnerJobs([_entry(job) for job in jobs], len(summaries), reasons)


def _quantile_order(doc: Mapping[str, Any]) -> tuple[int, bytes]:
    return (epoch_ns(doc.get("timestamp")) or 0, _canonical(doc))


def _summary_order(doc: Mapping[str, Any]) -> tuple[int, int, bytes]:
    return (epoch_ns(doc.get("timestamp")) or 0, epoch_ns(doc.get("endTimestamp")) or 0, _canonical(doc))


def _jobs_from_summaries(summaries: list[Mapping[str, Any]]) -> list[_Job]:
    """One entry per job (the latest summary of a job re-indexed), per step, and, for an
    incremental job, per summary before and after its steps."""
    steps: dict[tuple[str | None, str], Mapping[str, Any]] = {}
    plain: dict[str | None, dict[int, Mapping[str, Any]]] = {}
    for doc in summaries:
        name, step = job_name(doc), step_id(doc)
        if step is not None:
            key = (name, step)
            if key not in steps or _summary_order(doc) > _summary_order(steps[key]):
                steps[key] = doc
        else:
            start = epoch_ns(doc.get("timestamp")) or 0
            seen = plain.setdefault(name, {})
            if start not in seen or _summary_order(doc) > _summary_order(seen[start]):
                seen[start] = doc

    jobs = [_from_summary(doc, name, step, STEP) for (name, step), doc in steps.items()]
    for name, by_start in plain.items():
        step_starts = [j.start_ns for j in jobs if j.name == name and j.start_ns is not None]
        if not any(j.name == name for j in jobs):
            latest = max(by_start.values(), key=_summary_order)  # re-indexed: the later one wins
            jobs.append(_from_summary(latest, name, None, GC if _is_gc(latest) else JOB))
            continue
        first_step = min(step_starts) if step_starts else None
        for start, doc in by_start.items():
            phase = BEFORE if first_step is not None and start < first_step else AFTER
            jobs.append(_from_summary(doc, name, None, phase))
    return jobs


def _from_summary(doc: Mapping[str, Any], name: str | None, step: str | None, phase: str) -> _Job:
    return _Job(name=name, step_id=step, phase=phase, summary=doc,
                start_ns=epoch_ns(doc.get("timestamp")), end_ns=epoch_ns(doc.get("endTimestamp")))


def _attribute(doc: Mapping[str, Any], jobs: list[_Job]) -> tuple[_Job | None, str]:
    """The job a quantile document belongs to, and how that was decided; (None, ...) when no single
    job fits. A document naming a job that has no summary yet gets an entry of its own."""
    name, step = job_name(doc), step_id(doc)
    moment = epoch_ns(doc.get("timestamp"))
    if step is not None:
        matches = [j for j in jobs if j.step_id == step and (name is None or j.name == name)]
        if len(matches) == 1:
            return matches[0], "step"
        if matches or name is None:
            return None, "step"
        jobs.append(_Job(name=name, step_id=step, phase=STEP))
        return jobs[-1], "step"
    if name is not None:
        how = "jobName" if doc.get("jobName") not in (None, "") else "jobConfig"
        matches = [j for j in jobs if j.name == name and j.step_id is None]
        if not matches:
            jobs.append(_Job(name=name))
            return jobs[-1], how
        return (matches[0] if len(matches) == 1 else _by_time(moment, matches)), how
    candidates = [j for j in jobs if j.summary is not None and j.phase != GC]
    return _by_time(moment, candidates), "single-job" if len(candidates) == 1 else "time-window"


def _by_time(moment: int | None, candidates: list[_Job]) -> _Job | None:
    """The job that started last at or before ``moment``, if ``moment`` is within its window (or
    just after its end); None when there is no such single job."""
    if moment is None:
        return None
    started = [j for j in candidates if j.start_ns is not None and j.start_ns <= moment]
    if not started:
        return None
    latest = max(j.start_ns for j in started if j.start_ns is not None)
    chosen = [j for j in started if j.start_ns == latest]
    if len(chosen) != 1:
        return None
    job = chosen[0]
    if job.end_ns is not None and moment > job.end_ns + ATTRIBUTION_SLACK_NS:
        return None
    return job


def _unnamed(docs: list[Mapping[str, Any]]) -> list[_Job]:
    """Quantile documents tied to no job, as entries without a name: one per set (a set has each
    condition once; documents come in time order)."""
    entries: list[_Job] = []
    for doc in docs:
        condition = capped(doc["quantileName"])
        target = next((e for e in entries if condition not in e.quantiles), None)
        if target is None:
            target = _Job(name=None)
            entries.append(target)
        target.add(doc, "none")
    return entries


def _number_steps(jobs: list[_Job]) -> None:
    steps: dict[str | None, list[_Job]] = {}
    for job in jobs:
        if job.step_id is not None:
            steps.setdefault(job.name, []).append(job)
    for group in steps.values():
        group.sort(key=lambda j: (j.sort_ns is None, j.sort_ns or 0, j.step_id))
        for number_, job in enumerate(group, 1):
            job.step = number_


def _entry(job: _Job) -> dict[str, Any]:
    """A job as the report stores it: typed numbers, dates, latency per condition."""
    summary = job.summary or {}
    config = summary.get("jobConfig") if isinstance(summary.get("jobConfig"), Mapping) else {}
    metadata = dict(summary["metadata"]) if isinstance(summary.get("metadata"), Mapping) else {}
    metadata.update({k: v for k, v in summary.items() if k not in _SUMMARY_KEYS})
    latency: dict[str, dict[str, Any]] = {}
    other: list[dict[str, Any]] = []
    known = {condition: n for n, condition in enumerate(POD_CONDITIONS)}
    for condition, doc in sorted(job.quantiles.items(), key=lambda item: (known.get(item[0], len(known)), item[0])):
        stats = {stat: value for stat in QUANTILE_STATS if (value := number(doc.get(stat))) is not None}
        if condition in POD_CONDITIONS:
            latency[condition] = stats
        else:
            other.append({"condition": condition, **stats})
    entry: dict[str, Any] = {
        "name": job.name,
        "phase": job.phase,
        "step": job.step,
        "step_id": job.step_id,
        "type": _text(config.get("jobType")),
        "start_date": _date(summary.get("timestamp")),
        "end_date": _date(summary.get("endTimestamp")),
        "churn_start_date": _date(summary.get("churnStartTimestamp")),
        "churn_end_date": _date(summary.get("churnEndTimestamp")),
        "elapsed_s": number(summary.get("elapsedTime")),
        "iterations": integer(config.get("jobIterations")),
        "qps": number(config.get("qps")),
        "burst": integer(config.get("burst")),
        "achieved_qps": number(summary.get("achievedQps")),
        "namespace": _text(config.get("namespace")),
        "passed": summary.get("passed") if isinstance(summary.get("passed"), bool) else None,
        "errors": _text(summary.get("executionErrors")),
        "version": _text(summary.get("version")),
        "latency_ms": latency or None,
        "latency_other_ms": other or None,
        "attribution": sorted(job.attribution) or None,
        "config": dict(config) or None,
        "metadata": metadata or None,
    }
    return {key: value for key, value in entry.items() if value is not None}


def _date(value: Any) -> str | None:
    return value.strip() if epoch_ns(value) is not None else None


def _text(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, str) else str(value)


__all__ = [
    "ATTRIBUTION_SLACK_NS",
    "JOB_SUMMARY",
    "KubeBurnerJobs",
    "MAX_NAME_CHARS",
    "POD_CONDITIONS",
    "POD_LATENCY_QUANTILES",
    "QUANTILE_STATS",
    "capped",
    "epoch_ns",
    "job_name",
    "shape_kube_burner",
    "step_id",
]
