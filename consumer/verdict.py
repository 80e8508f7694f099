"""The verdict: how a run compares with its comparable history, stored in its report as ``verdict``.

For each judged number (see :mod:`consumer.comparisons`), the series of the comparable runs
(oldest first) followed by this run goes through E-Divisive means with the Student-t test
(:mod:`consumer.edivisive`, as Otava and orion run it). The change points cut the history into
segments; walking them from the oldest:

- a segment worse than the reference by at least ``min_change`` whose runs nobody acknowledged
  (``report-consumer ack``) is a **standing regression**: the reference stays the level before it,
  so every later run at the worse level is judged a regression too, naming the run it started at;
- any other segment (better, a change too small to matter, or an acknowledged one) becomes the
  reference: the expected level from then on.

This run is then compared with the reference (the **baseline**: its median, its spread, a t-test):
it is a ``regression`` if it is worse by at least ``min_change`` and either starts a change point
itself or continues a standing regression; an ``improvement`` if it is better by at least that much
and starts a change point; otherwise it ``pass``-es. An acknowledged number is ``acked``, never a
regression. With fewer than ``min_history`` comparable runs the verdict is ``insufficient-history``
and each number gets the threshold rule alone (``method: threshold``: the change against the median
of the runs there are). A run that did not succeed is ``not-judged``.

:func:`judge` is pure; :func:`verdict_for` reads the history and the acknowledgements
(:mod:`consumer.acks`) from Elasticsearch first. Nothing here depends on the time it runs, so rebuilding a report from the same
inputs gives the same verdict, and the same report fingerprint.
"""

from __future__ import annotations

import fnmatch
import hashlib
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from consumer.acks import Ack, acks_for
from consumer.comparisons import Number, Rule, field_value, numbers_of, rule_for, values_of
from consumer.edivisive import change_points, t_test
from consumer.store import Store

if TYPE_CHECKING:

    from consumer.retry import RetryPolicy

STATUSES = ("pass", "regression", "improvement", "insufficient-history", "not-judged")
# What a history search reads of each comparable report: never configs, queries or metadata.
HISTORY_SOURCE = ["uuid", "start_date", "jobs", "metrics"]
HISTORY_EXCLUDES = ["jobs.config", "jobs.metadata", "jobs.errors", "metrics.query", "metrics.error", "metrics.warnings"]
_MAD_TO_SIGMA = 1.4826  # the median absolute deviation of normal noise, scaled to its standard deviation


# -- the history ----------------------------------------------------------------------------------


def history_query(report: Mapping[str, Any], rule: Rule) -> dict[str, Any]:
    """Successful, complete reports started before ``report`` that agree on every comparable field."""
    filters: list[dict[str, Any]] = [
        {"term": {"job_status": "success"}},
        {"term": {"report.status": "complete"}},
        {"range": {"start_date": {"lt": report.get("start_date")}}},
    ]
    must_not: list[dict[str, Any]] = [{"term": {"uuid": report.get("uuid")}}]
    for name in rule.comparable:
        value = field_value(report, name)
        if value is None or isinstance(value, (Mapping, list)):
            must_not.append({"exists": {"field": name}})
        else:
            # flattened metadata holds every value as a keyword: true, not True
            filters.append({"term": {name: str(value).lower() if isinstance(value, bool) else value}})
    return {"bool": {"filter": filters, "must_not": must_not}}


async def comparable_history(es: Store, index: str, report: Mapping[str, Any], rule: Rule,
                             retry: RetryPolicy) -> list[dict[str, Any]]:
    """The last ``rule.history`` comparable reports before ``report``'s start, oldest first."""
    from consumer.elastic import is_transient

    if not report.get("start_date"):
        return []
    async for attempt in retry.retrying(is_transient, f"reading the comparable runs of {report.get('uuid')}"):
        with attempt:
            response = await es.search(
                index=index, query=history_query(report, rule), size=rule.history,
                sort=[{"start_date": "desc"}, {"uuid": "asc"}], source_includes=HISTORY_SOURCE,
                source_excludes=HISTORY_EXCLUDES, ignore_unavailable=True, track_total_hits=False)
    return [hit["_source"] for hit in reversed(response["hits"]["hits"])]


# -- judging --------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _spread(values: Sequence[float]) -> float:
    middle = _median(values)
    return _MAD_TO_SIGMA * _median([abs(value - middle) for value in values])


def _change_pct(value: float, base: float) -> float | None:
    return None if base == 0 else (value - base) / abs(base) * 100


def _worse(pct: float | None, direction: str) -> float:
    """How much worse (positive) or better (negative) a change is, in %."""
    if pct is None:
        return 0.0
    return pct if direction == "lower" else -pct


def _segments(length: int, cuts: Iterable[int]) -> list[tuple[int, int]]:
    bounds = [0, *sorted(cuts), length]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if bounds[i] < bounds[i + 1]]


def judge_number(number: Number, uuid: str, history: Sequence[tuple[str, float | None]], acked: set[str],
                 rule: Rule) -> dict[str, Any]:
    """The verdict on one number: ``history`` is (uuid, value or None) of the comparable runs,
    oldest first; ``acked`` the runs whose change of this number is acknowledged."""
    judged = number.judged
    points = [(run, value) for run, value in history if value is not None]
    runs, values = [run for run, _ in points], [value for _, value in points]
    entry: dict[str, Any] = {
        "name": number.name, "job": number.job, "metric": number.metric, "labels": dict(number.labels),
        "stat": judged.value, "unit": number.unit, "direction": judged.direction,
        "min_change_pct": judged.min_change_pct, "value": number.value,
        "series": [value for _, value in history],
    }
    if not values:
        return {**entry, "status": "insufficient-history", "method": "threshold", "baseline_runs": 0,
                "change_point": False, "change_points": []}
    method = "e-divisive" if len(values) >= rule.min_history else "threshold"
    reference = (0, len(values))
    standing: int | None = None
    found: list[int] = []
    if method == "e-divisive":
        found = [point.index for point in change_points([*values, number.value], window=rule.window,
                                                        max_p_value=rule.max_p_value)]
        segments = _segments(len(values), [index for index in found if index < len(values)])
        reference = segments[0]
        for start, stop in segments[1:]:
            shift = _worse(_change_pct(_median(values[start:stop]), _median(values[slice(*reference)])), judged.direction)
            if shift >= judged.min_change_pct and not acked.intersection(runs[start:stop]):
                standing = start if standing is None else standing
            else:
                reference, standing = (start, stop), None
    baseline = values[slice(*reference)]
    median = _median(baseline)
    delta = number.value - median
    pct = _change_pct(number.value, median)
    worse = _worse(pct, judged.direction)
    here = len(values) in found
    if method == "threshold":
        moved = worse >= judged.min_change_pct or -worse >= judged.min_change_pct
        status = "pass" if not moved else "regression" if worse > 0 else "improvement"
    elif worse >= judged.min_change_pct and (here or standing is not None):
        status = "regression"
    elif -worse >= judged.min_change_pct and here:
        status = "improvement"
    else:
        status = "pass"
    since = None
    if status == "regression":
        since = runs[standing] if standing is not None else uuid
        if uuid in acked or (standing is not None and acked.intersection(runs[standing:])):
            status = "acked"
    elif status == "improvement":
        since = uuid
    return {
        **entry, "status": status, "method": method, "since": since,
        "baseline_median": median, "baseline_spread": _spread(baseline), "baseline_runs": len(baseline),
        "baseline_from": runs[reference[0]],
        "delta": delta, "delta_pct": pct, "change_point": here,
        "p_value": t_test(baseline, [number.value])[0] if len(baseline) >= 2 else None,
        "change_points": [runs[index] if index < len(runs) else uuid for index in found],
    }


def judge(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]], acks: Iterable[Ack],
          rule: Rule) -> dict[str, Any]:
    """The ``verdict`` of ``report`` against the comparable ``history`` (oldest first)."""
    uuid = str(report.get("uuid"))
    comparable = {name: field_value(report, name) for name in rule.comparable}
    verdict: dict[str, Any] = {"rule": rule.label, "comparable": comparable, "history_runs": len(history),
                               "min_history": rule.min_history}
    if report.get("job_status") != "success":
        return not_judged(f"the run did not succeed ({report.get('job_status')})", **verdict)
    mine = numbers_of(report, rule)
    theirs = [values_of(run, rule) for run in history]
    acks = list(acks)
    numbers = []
    for name, number in mine.items():
        series = [(str(run.get("uuid")), found.get(name)) for run, found in zip(history, theirs, strict=False)]
        acked = {ack.uuid for ack in acks if fnmatch.fnmatchcase(name, ack.metric)}
        numbers.append(judge_number(number, uuid, series, acked, rule))
    judged = [entry for entry in numbers if entry["method"] == "e-divisive"]
    if len(history) < rule.min_history:
        status = "insufficient-history"
    elif any(entry["status"] == "regression" for entry in judged):
        status = "regression"
    elif any(entry["status"] == "improvement" for entry in judged):
        status = "improvement"
    else:
        status = "pass"
    named = {kind: [entry["name"] for entry in judged if entry["status"] == kind]
             for kind in ("regression", "improvement", "acked")}
    verdict.update(
        status=status, method="e-divisive" if len(history) >= rule.min_history else "threshold",
        regressions=named["regression"], improvements=named["improvement"], acked=named["acked"],
        history=[{"uuid": run.get("uuid"), "start_date": run.get("start_date")} for run in history],
        numbers=numbers,
    )
    verdict["fingerprint"] = verdict_fingerprint(verdict)
    return verdict


def verdict_fingerprint(verdict: Mapping[str, Any]) -> str:
    """What a notification is about: the status and which numbers moved, since which run (not
    their exact values, which a longer history shifts a little)."""
    moved = sorted((entry["name"], entry["status"], entry.get("since")) for entry in verdict.get("numbers", ())
                   if entry.get("status") in ("regression", "improvement") and entry.get("method") == "e-divisive")
    content = orjson.dumps([verdict.get("status"), moved])
    return hashlib.sha256(content).hexdigest()[:16]


def not_judged(reason: str, **fields: Any) -> dict[str, Any]:
    """The verdict of a run that is not judged: it failed, or no rule applies to its benchmark."""
    verdict = {"history_runs": 0, **fields, "status": "not-judged", "reason": reason, "numbers": [],
               "regressions": [], "improvements": [], "acked": []}
    verdict["fingerprint"] = verdict_fingerprint(verdict)
    return verdict


async def verdict_for(es: Store, report_index: str, ack_index: str, rules: Sequence[Rule],
                      report: Mapping[str, Any], retry: RetryPolicy) -> dict[str, Any]:
    """The verdict of a freshly built ``report``: its rule, its comparable history, their acks."""
    rule = rule_for(report.get("benchmark"), rules)
    if rule is None:
        return not_judged(f"no comparison rule matches benchmark {report.get('benchmark')!r}")
    if report.get("job_status") != "success":
        return judge(report, [], [], rule)
    history = await comparable_history(es, report_index, report, rule, retry)
    if not history:  # nothing to compare with: no acknowledgement can matter
        return judge(report, history, [], rule)
    acks = await acks_for(es, ack_index, [str(run.get("uuid")) for run in history] + [str(report.get("uuid"))], retry)
    return judge(report, history, acks, rule)


__all__ = ["STATUSES", "comparable_history", "history_query", "judge", "judge_number", "not_judged",
           "verdict_for", "verdict_fingerprint"]
