"""Comparison rules: which runs a run is judged against, and which of its numbers are judged.

YAML files, loaded like the metric profiles: the shipped ones in ``consumer/comparisons/``, more in
``COMPARISON_DIR`` (a file of the same name there replaces the shipped one). Each file holds a list
of ``rules``; rules of ``COMPARISON_DIR`` come first, then the shipped ones, each folder's files in
name order, and the first rule whose ``benchmarks`` glob matches a run's benchmark applies::

    rules:
      - benchmarks: "node-density*"
        comparable: [benchmark, openshift_platform, worker_count, release_stream]
        history: 50            # the last N comparable runs (default 50)
        min_history: 5         # fewer: insufficient-history (default 5)
        window: 50             # E-Divisive window, in runs (default 50)
        max_p_value: 0.001     # change-point significance (default 0.001)
        numbers:
          - job: "*"                                     # job name glob
            value: [latency_ms.Ready.P99, elapsed_s]     # fields of the job entry
            direction: lower                             # lower (default) or higher is better
            min_change: 10%                              # the smallest change that matters
          - metric: podCPU                               # metric name (or a list, or globs)
            labels: {namespace: [openshift-etcd]}        # label -> allowed value globs (optional)
            value: [avg, max]

A judged number is named ``JOB/FIELD`` (``node-density/latency_ms.Ready.P99``) or
``METRIC{LABELS}/STAT`` (``podCPU{namespace=openshift-etcd}/avg``): the name ``ack`` takes.
Extracting the numbers from a report is pure (:func:`numbers_of`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

SHIPPED_DIR = Path(__file__).parent / "comparisons"

# Report fields a rule may compare on: the run's typed fields (keywords and integers).
COMPARABLE_FIELDS = frozenset({
    "benchmark", "openshift_platform", "openshift_network_type", "openshift_cluster_name",
    "openshift_cluster_version", "openshift_cluster_version_parts.major", "openshift_cluster_version_parts.minor",
    "openshift_cluster_version_parts.patch", "release_stream", "ci_system", "upstream_job",
    "master_count", "worker_count", "infra_count", "workload_count", "total_count",
    "master_type", "worker_type", "infra_type", "workload_type",
})
_METADATA_KEY = re.compile(r"^metadata\.[^.\s][^\s]*$")
_JOB_VALUE = re.compile(r"^(elapsed_s|iterations|achieved_qps|latency_ms\.[A-Za-z]+\.(P99|P95|P50|max|avg|min))$")
METRIC_STATS = ("avg", "max")
DIRECTIONS = ("lower", "higher")
_RULE_KEYS = {"benchmarks", "comparable", "history", "min_history", "window", "max_p_value", "numbers"}
_NUMBER_KEYS = {"job", "metric", "labels", "value", "direction", "min_change", "phases"}


class ComparisonError(ValueError):
    """A comparison file cannot be loaded; ``str(err)`` is one line naming the file."""


@dataclass(frozen=True)
class Judged:
    """One kind of judged number: a job field (``job`` set) or a metric statistic (``metric`` set)."""

    value: str  # job field path (latency_ms.Ready.P99) or metric stat (avg, max)
    direction: str = "lower"  # which way is better
    min_change_pct: float = 10.0
    jobs: tuple[str, ...] = ()  # job name globs
    phases: tuple[str, ...] = ("job",)
    metrics: tuple[str, ...] = ()  # metric name globs
    labels: tuple[tuple[str, tuple[str, ...]], ...] = ()  # label -> value globs, all must match


@dataclass(frozen=True)
class Rule:
    benchmarks: str
    comparable: tuple[str, ...]
    numbers: tuple[Judged, ...]
    history: int = 50
    min_history: int = 5
    window: int = 50
    max_p_value: float = 0.001
    source: str = "<memory>"

    @property
    def label(self) -> str:
        return f"{Path(self.source).name}: {self.benchmarks}"


@dataclass(frozen=True)
class Number:
    """One judged number of one report."""

    name: str
    value: float
    judged: Judged
    unit: str | None = None
    job: str | None = None
    metric: str | None = None
    labels: Mapping[str, Any] = field(default_factory=dict)


# -- loading --------------------------------------------------------------------------------------


def _strings(value: Any, what: str, fail: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise fail(f"{what} is not a string or a list of strings")
    return tuple(items)


def _percent(value: Any, fail: Any) -> float:
    text = str(value).strip()
    number = text[:-1].strip() if text.endswith("%") else text
    try:
        pct = float(number)
    except ValueError:
        raise fail(f"min_change {value!r} is not a percentage such as 10%") from None
    if not 0 <= pct < 1000 or isinstance(value, bool):
        raise fail(f"min_change {value!r} is not a percentage such as 10%")
    return pct


def _whole(raw: Mapping[str, Any], key: str, default: int, minimum: int, fail: Any) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise fail(f"{key} {value!r} is not a whole number of at least {minimum}")
    return value


def parse_number(raw: Any, where: str, fail: Any) -> list[Judged]:
    if not isinstance(raw, Mapping):
        raise fail(f"{where} is not a mapping")
    unknown = set(raw) - _NUMBER_KEYS
    if unknown:
        raise fail(f"{where} has unknown keys {', '.join(sorted(map(str, unknown)))}")
    if ("job" in raw) == ("metric" in raw):
        raise fail(f"{where} needs either job or metric")
    if "value" not in raw:
        raise fail(f"{where} needs a value")
    values = _strings(raw["value"], f"{where}: value", fail)
    direction = raw.get("direction", "lower")
    if direction not in DIRECTIONS:
        raise fail(f"{where}: direction {direction!r} is not lower or higher")
    min_change = _percent(raw.get("min_change", "10%"), fail)
    common = {"direction": direction, "min_change_pct": min_change}
    if "job" in raw:
        bad = [value for value in values if not _JOB_VALUE.match(value)]
        if bad:
            raise fail(f"{where}: {', '.join(bad)} is not a job field (elapsed_s, iterations, latency_ms.CONDITION.STAT)")
        if "labels" in raw:
            raise fail(f"{where}: labels belong to metrics")
        jobs = _strings(raw["job"], f"{where}: job", fail)
        phases = _strings(raw.get("phases", ["job"]), f"{where}: phases", fail)
        return [Judged(value, jobs=jobs, phases=phases, **common) for value in values]
    bad = [value for value in values if value not in METRIC_STATS]
    if bad:
        raise fail(f"{where}: {', '.join(bad)} is not a metric statistic ({', '.join(METRIC_STATS)})")
    labels = raw.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise fail(f"{where}: labels is not a mapping of label to values")
    matchers = tuple((str(label), _strings(allowed, f"{where}: labels.{label}", fail))
                     for label, allowed in sorted(labels.items()))
    metrics = _strings(raw["metric"], f"{where}: metric", fail)
    return [Judged(value, metrics=metrics, labels=matchers, **common) for value in values]


def parse_rules(document: Any, source: str) -> list[Rule]:
    """The rules of one parsed YAML document; :class:`ComparisonError` names ``source``."""

    def fail(problem: str) -> ComparisonError:
        return ComparisonError(f"{source}: {problem}")

    if not isinstance(document, Mapping) or not isinstance(document.get("rules"), list):
        raise fail("not a mapping with a list of rules")
    rules = []
    for index, raw in enumerate(document["rules"]):
        where = f"rules[{index}]"
        if not isinstance(raw, Mapping):
            raise fail(f"{where} is not a mapping")
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise fail(f"{where} has unknown keys {', '.join(sorted(map(str, unknown)))}")
        benchmarks = raw.get("benchmarks")
        if not isinstance(benchmarks, str) or not benchmarks:
            raise fail(f"{where} needs benchmarks, a glob")
        comparable = _strings(raw.get("comparable", []) or ["benchmark"], f"{where}: comparable", fail)
        bad = [name for name in comparable if name not in COMPARABLE_FIELDS and not _METADATA_KEY.match(name)]
        if bad:
            raise fail(f"{where}: {', '.join(bad)} is not a comparable report field "
                       f"({', '.join(sorted(COMPARABLE_FIELDS))}, or metadata.KEY)")
        numbers_raw = raw.get("numbers")
        if not isinstance(numbers_raw, list) or not numbers_raw:
            raise fail(f"{where}: numbers is not a non-empty list")
        numbers = [judged for n, number in enumerate(numbers_raw)
                   for judged in parse_number(number, f"{where}.numbers[{n}]", fail)]
        p_value = raw.get("max_p_value", 0.001)
        if not isinstance(p_value, (int, float)) or isinstance(p_value, bool) or not 0 < p_value < 1:
            raise fail(f"{where}: max_p_value {p_value!r} is not between 0 and 1")
        rules.append(Rule(
            benchmarks, comparable, tuple(numbers),
            history=_whole(raw, "history", 50, 2, fail), min_history=_whole(raw, "min_history", 5, 2, fail),
            window=_whole(raw, "window", 50, 2, fail), max_p_value=float(p_value), source=source,
        ))
    return rules


def load_rules(comparison_dir: Path | None = None, *, shipped_dir: Path = SHIPPED_DIR) -> list[Rule]:
    """Every rule, in the order they are tried: ``comparison_dir``'s files, then the shipped ones
    not replaced by a file of the same name."""
    files: dict[str, Path] = {}
    for folder in (shipped_dir, comparison_dir):
        if folder is None:
            continue
        if not folder.is_dir():
            raise ComparisonError(f"{folder}: not a folder of comparison rules (COMPARISON_DIR)")
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            files.pop(path.stem, None)
            files[path.stem] = path  # the later folder's file replaces the shipped one, and comes first
    ordered = sorted(files.values(), key=lambda path: (path.parent != comparison_dir, path.name))
    rules: list[Rule] = []
    for path in ordered:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ComparisonError(f"{path}: cannot be read: {err.strerror}") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ComparisonError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', None) or type(err).__name__}") from None
        rules += parse_rules(document, str(path))
    return rules


def rule_for(benchmark: str | None, rules: Sequence[Rule]) -> Rule | None:
    """The first rule whose glob matches ``benchmark``."""
    return next((rule for rule in rules if fnmatch.fnmatchcase(benchmark or "", rule.benchmarks)), None)


# -- the numbers of a report ----------------------------------------------------------------------


def field_value(document: Mapping[str, Any], path: str) -> Any:
    """``document``'s value at a dotted ``path`` (``metadata.KEY`` is one key of the metadata)."""
    if path.startswith("metadata."):
        metadata = document.get("metadata")
        return metadata.get(path[len("metadata."):]) if isinstance(metadata, dict) else None
    value: Any = document
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def _job_subject(job: Mapping[str, Any]) -> str:
    name = str(job.get("name"))
    return f"{name}#step{job.get('step')}" if job.get("phase") == "step" else name


def labels_text(labels: Mapping[str, Any]) -> str:
    return "{" + ",".join(f"{key}={labels[key]}" for key in sorted(labels)) + "}" if labels else ""


@lru_cache(maxsize=1024)
def _globs(patterns: tuple[str, ...]) -> Callable[[str], Any]:
    """One compiled matcher for any of ``patterns`` (fnmatch globs, case-sensitive)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns)).match


def _judged(report: Mapping[str, Any], rule: Rule) -> Iterator[tuple[str, float, Judged, Mapping[str, Any]]]:
    """(name, value, kind, job or metric entry) of every judged number of ``report``, in the rule's
    order; equal names may repeat (the first counts).

    Run for every run of a history (50 by default) on each verdict, so it matches with compiled
    globs, plain ``dict`` checks (reports come from JSON) and each series' name built once.
    """
    jobs = [job for job in report.get("jobs") or () if isinstance(job, dict) and job.get("name")]
    metrics = [entry for entry in report.get("metrics") or ()
               if isinstance(entry, dict) and entry.get("status") == "ok" and entry.get("name")]
    metric_kinds = [(judged, _globs(judged.metrics), [(label, _globs(globs)) for label, globs in judged.labels])
                    for judged in rule.numbers if not judged.jobs]
    subjects: dict[int, str] = {}
    for judged in rule.numbers:
        if not judged.jobs:
            continue
        job_matches = _globs(judged.jobs)
        for job in jobs:
            if job.get("phase", "job") in judged.phases and job_matches(str(job["name"])):
                value = _number(field_value(job, judged.value))
                if value is not None:
                    yield f"{_job_subject(job)}/{judged.value}", value, judged, job
    for judged, metric_matches, label_matches in metric_kinds:
        for at, entry in enumerate(metrics):
            if not metric_matches(str(entry["name"])):
                continue
            labels = entry.get("labels")
            labels = labels if isinstance(labels, dict) else {}
            if not all(matches(str(labels.get(label, ""))) for label, matches in label_matches):
                continue
            value = _number(entry.get(judged.value))
            if value is not None:
                if at not in subjects:
                    subjects[at] = f"{entry['name']}{labels_text(labels)}"
                yield f"{subjects[at]}/{judged.value}", value, judged, entry


def numbers_of(report: Mapping[str, Any], rule: Rule) -> dict[str, Number]:
    """The judged numbers of ``report`` under ``rule``, by name (the first of equal names)."""
    found: dict[str, Number] = {}
    for name, value, judged, source in _judged(report, rule):
        if name in found:
            continue
        if judged.jobs:
            unit = "ms" if judged.value.startswith("latency_ms.") else "s" if judged.value == "elapsed_s" else None
            found[name] = Number(name, value, judged, unit, job=str(source["name"]))
        else:
            labels = source.get("labels")
            found[name] = Number(name, value, judged, source.get("unit"), metric=str(source["name"]),
                                 labels=dict(labels) if isinstance(labels, dict) else {})
    return found


def values_of(report: Mapping[str, Any], rule: Rule) -> dict[str, float]:
    """Only the values of :func:`numbers_of`: what a history run contributes."""
    found: dict[str, float] = {}
    for name, value, _, _ in _judged(report, rule):
        found.setdefault(name, value)
    return found


__all__ = [
    "COMPARABLE_FIELDS",
    "ComparisonError",
    "Judged",
    "Number",
    "Rule",
    "field_value",
    "load_rules",
    "numbers_of",
    "parse_rules",
    "rule_for",
    "values_of",
]
