"""Reading reports from a terminal: ``report-consumer show``, ``list`` and ``compare``.

Text fits an 80-column terminal, numbers carry their units (latencies in ms, durations in
minutes and seconds, bytes in binary prefixes, metric units from the profiles); ``--json`` prints
the same information as JSON for scripts. Shaping and formatting are pure; the two searches are at
the edge. A run may be named by its uuid or by a unique prefix of it (as ``list`` shows them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from consumer.report import REPORT_FORMAT_VERSION

if TYPE_CHECKING:  # the client is imported when a command runs, so --help stays quick
    from elasticsearch import AsyncElasticsearch

    from consumer.settings import Settings

WIDTH = 80
REPORT_STATUSES = ("complete", "partial")
LIST_FIELDS = ("uuid", "benchmark", "openshift_cluster_name", "openshift_cluster_version", "openshift_platform",
               "start_date", "end_date", "job_status", "report.status", "report.reasons")
LATENCY_STATS = ("P99", "P95", "P50")
_MIN_PREFIX = 4
_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# -- the commands ---------------------------------------------------------------------------------


def add_view_commands(commands: argparse._SubParsersAction) -> None:
    """``show``, ``list`` and ``compare`` on the CLI's subcommands."""
    show = commands.add_parser("show", help="print one run's report: jobs, latencies, metrics, reasons, links")
    show.add_argument("uuid", help="the run's uuid, or a unique prefix of it")
    show.add_argument("--json", action="store_true", help="the stored report document, as JSON")

    listing = commands.add_parser("list", help="list reports, newest first")
    listing.add_argument("--cluster", help="only this cluster")
    listing.add_argument("--benchmark", help="only this benchmark")
    listing.add_argument("--since", type=since, help="runs started since then: ISO 8601 time or 30m, 12h, 7d, 2w")
    listing.add_argument("--status", type=str.lower,
                         help="complete or partial (the report), or a run status (success, failure, ...)")
    listing.add_argument("--limit", type=_positive, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON array")

    compare = commands.add_parser("compare", help="two runs side by side: job latencies and elapsed times, metrics")
    compare.add_argument("uuid_a", help="the baseline run (uuid or unique prefix)")
    compare.add_argument("uuid_b", help="the run compared with it")
    compare.add_argument("--json", action="store_true", help="every compared value, with deltas, as JSON")


def since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` ago, or an ISO 8601 time (UTC unless it says otherwise)."""
    match = _RELATIVE.match(text.strip())
    if match:
        return (now or datetime.now(timezone.utc)) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO 8601 time nor a span such as 7d or 12h") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


class NotFound(Exception):
    """No report for the run asked for (or a prefix naming several); ``str(err)`` is one line."""


async def show(settings: Settings, args: argparse.Namespace, signals: object = None) -> int:
    async with _client(settings) as es:
        report = await find_report(es, settings.report_index, args.uuid)
    _print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render_show(report))
    return 0


async def list_reports(settings: Settings, args: argparse.Namespace, signals: object = None) -> int:
    async with _client(settings) as es:
        reports = await search_reports(es, settings.report_index, cluster=args.cluster, benchmark=args.benchmark,
                                       since=args.since, status=args.status, limit=args.limit)
    _print(json.dumps([summary(r) for r in reports], indent=2, ensure_ascii=False) if args.json else render_list(reports))
    return 0


async def compare(settings: Settings, args: argparse.Namespace, signals: object = None) -> int:
    async with _client(settings) as es:
        a = await find_report(es, settings.report_index, args.uuid_a)
        b = await find_report(es, settings.report_index, args.uuid_b)
    compared = compare_reports(a, b)
    _print(json.dumps(compared, indent=2, ensure_ascii=False) if args.json else render_compare(compared))
    return 0


VIEW_COMMANDS = {"show": show, "list": list_reports, "compare": compare}


def _print(text: str) -> None:
    """Print, and let ``| head`` close the pipe early without a traceback."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit


# -- reading the index ----------------------------------------------------------------------------


def _client(settings: Settings) -> AsyncElasticsearch:
    from consumer.elastic import connect

    return connect(settings.es)


async def find_report(es: AsyncElasticsearch, index: str, uuid: str) -> dict[str, Any]:
    """The stored report of ``uuid``, or of the only run whose uuid starts with it; :class:`NotFound`
    (one line, saying what to do) otherwise."""
    found = (await es.options(ignore_status=404).get(index=index, id=uuid)).body
    error = found.get("error")
    if isinstance(error, Mapping) and error.get("type") == "index_not_found_exception":
        raise NotFound(f"no report index {index}: check REPORT_INDEX, or run `report-consumer init`")
    if found.get("found"):
        return found["_source"]
    if len(uuid) >= _MIN_PREFIX:
        hits = (await es.search(index=index, query={"prefix": {"uuid": uuid}}, size=5, sort=[{"uuid": "asc"}]))["hits"]["hits"]
        if len(hits) == 1:
            return hits[0]["_source"]
        if hits:
            more = ", ".join(hit["_id"] for hit in hits)
            raise NotFound(f"{uuid!r} starts several runs' uuids ({more}{', ...' if len(hits) == 5 else ''}): give more of it")
    hint = f"; a prefix needs at least {_MIN_PREFIX} characters" if len(uuid) < _MIN_PREFIX else ""
    raise NotFound(f"no report for {uuid!r} in index {index} (see `report-consumer list`{hint})")


def list_query(*, cluster: str | None = None, benchmark: str | None = None, since: datetime | None = None,
               status: str | None = None) -> dict[str, Any]:
    """The search behind ``list``; ``status`` is the report's (complete, partial) or the run's."""
    filters: list[dict[str, Any]] = []
    if cluster:
        filters.append({"term": {"openshift_cluster_name": cluster}})
    if benchmark:
        filters.append({"term": {"benchmark": benchmark}})
    if since:
        filters.append({"range": {"start_date": {"gte": since.astimezone(timezone.utc).isoformat()}}})
    if status:
        field = "report.status" if status in REPORT_STATUSES else "job_status"
        filters.append({"term": {field: {"failed": "failure"}.get(status, status)}})
    return {"bool": {"filter": filters}}


async def search_reports(es: AsyncElasticsearch, index: str, *, limit: int = 50, **filters: Any) -> list[dict[str, Any]]:
    response = await es.search(index=index, query=list_query(**filters), size=limit, source_includes=list(LIST_FIELDS),
                               sort=[{"start_date": {"order": "desc", "missing": "_last"}}, {"uuid": "asc"}],
                               ignore_unavailable=True)
    return [hit["_source"] for hit in response["hits"]["hits"]]


# -- formatting numbers ---------------------------------------------------------------------------


def significant(value: float) -> str:
    """Three significant digits, thousands separated, never in exponent notation."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    digits = max(0, 2 - int(f"{abs(value):e}".split("e")[1]))
    return f"{value:.{digits}f}"


def duration(seconds: float | None) -> str:
    """``42s``, ``30m 46s``, ``2h 05m``."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    total = round(abs(seconds))
    if total < 60:
        return f"{sign}{total}s"
    if total < 3600:
        return f"{sign}{total // 60}m {total % 60:02d}s"
    return f"{sign}{total // 3600}h {total % 3600 // 60:02d}m"


def milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def with_unit(value: float | None, unit: str | None) -> str:
    """A metric value in its profile's unit: bytes in binary prefixes, seconds down to µs."""
    if value is None:
        return "-"
    if unit == "bytes":
        scaled, prefix = float(value), ""
        for prefix in ("", "Ki", "Mi", "Gi", "Ti", "Pi"):
            if abs(scaled) < 1024 or prefix == "Pi":
                break
            scaled /= 1024
        return f"{significant(scaled)} {prefix}B"
    if unit in ("seconds", "s"):
        for factor, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if abs(value) >= factor or name == "µs":
                return f"{significant(value / factor)} {name}"
    return f"{significant(value)} {unit}" if unit else significant(value)


def relative(delta: float | None, base: float | None) -> float | None:
    return None if delta is None or not base else delta / base


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _signed(text: str) -> str:
    return text if text.startswith("-") or text == "-" else f"+{text}"


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending with … when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _moment(value: Any) -> datetime | None:
    """A stored date (the report's own ISO 8601, milliseconds and ``Z``)."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def when(value: str | None) -> str:
    """A stored date as ``2024-05-02 10:00:03 UTC``."""
    moment = _moment(value) if value else None
    if moment is None:
        return value or "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def labels_text(labels: Mapping[str, Any] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "(no labels)"


def job_title(job: Mapping[str, Any]) -> str:
    name = job.get("name", "(no job name)")
    if job.get("phase") == "step":
        return f"{name} step {job.get('step')}"
    if job.get("phase") in ("before", "after", "gc"):
        return f"{name} ({job['phase']})"
    return name


# -- show -----------------------------------------------------------------------------------------


def _entries(report: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """A report's ``jobs`` or ``metrics`` list (empty for a report of an older format)."""
    value = report.get(key)
    return [entry for entry in value if isinstance(entry, Mapping)] if isinstance(value, list) else []


def render_show(report: Mapping[str, Any]) -> str:
    block = report.get("report", {})
    lines = [fit(f"{report.get('benchmark')} on {report.get('openshift_cluster_name')}", WIDTH)]
    start, end = _moment(report.get("start_date")), _moment(report.get("end_date"))
    window = f"{when(report.get('start_date'))} to {when(report.get('end_date'))}"
    if start and end:
        window += f" ({duration((end - start).total_seconds())})"
    nodes = ", ".join(f"{report[f'{role}_count']} {label}" for role, label in
                      (("master", "masters"), ("worker", "workers"), ("infra", "infra"), ("workload", "workload"))
                      if report.get(f"{role}_count") is not None)
    version = report.get("openshift_cluster_version")
    parts = (report.get("openshift_platform"), version and f"OpenShift {version}", report.get("openshift_network_type"), nodes)
    cluster = ", ".join(str(part) for part in parts if part)
    rows = [("uuid", report.get("uuid")), ("run", f"{report.get('job_status')}, {window}"), ("cluster", cluster),
            ("report", f"{block.get('status')}, built {when(block.get('built_at'))}, format {block.get('format_version')}")]
    for reason in block.get("reasons", []):
        rows.append(("reason", reason))
    for key, value in rows:
        lines += textwrap.wrap(str(value), WIDTH, initial_indent=f"{key:<9} ", subsequent_indent=" " * 10) or [key]

    if block.get("format_version") != REPORT_FORMAT_VERSION:
        lines += textwrap.wrap(f"(report format {block.get('format_version')}: rebuild it with `report-consumer "
                               "backfill` or `replay --stale-only` to see its jobs and metrics here)", WIDTH)
    jobs = _entries(report, "jobs")
    if jobs:
        lines += ["", f"{'jobs':<30} {'elapsed':>9} {'iterations':>10} {'Ready P99':>13} {'Ready P50':>13}"]
        for job in jobs:
            ready = job.get("latency_ms", {}).get("Ready", {})
            iterations = job.get("iterations")
            lines.append(f"  {fit(job_title(job), 28):<28} {duration(job.get('elapsed_s')):>9} "
                         f"{'-' if iterations is None else f'{iterations:,}':>10} "
                         f"{milliseconds(ready.get('P99')):>13} {milliseconds(ready.get('P50')):>13}")
        latencies = [job for job in jobs if job.get("latency_ms")]
        if latencies:
            lines += ["", f"{'pod latency':<30} {'P99':>11} {'P95':>11} {'P50':>11} {'max':>11}"]
            for job in latencies:
                lines.append(f"  {fit(job_title(job), 76)}")
                for condition, stats in job["latency_ms"].items():
                    lines.append(f"    {fit(condition, 26):<26} " + " ".join(
                        f"{milliseconds(stats.get(stat)):>11}" for stat in ("P99", "P95", "P50", "max")))
    else:
        lines += ["", "jobs: none"]

    current = None
    empty = []
    for entry in _entries(report, "metrics"):
        if entry.get("status") == "no data":
            empty.append(str(entry.get("name")))
            continue
        key = (entry.get("profile"), entry.get("name"))
        if key != current:
            current = key
            unit = f"{entry['unit']}, " if entry.get("unit") else ""
            lines += ["", fit(f"{entry.get('name')} ({unit}{entry.get('profile')})", WIDTH)]
        status = entry.get("status")
        if status == "ok":
            lines.append(f"  {fit(labels_text(entry.get('labels')), 38):<38} avg {with_unit(entry.get('avg'), entry.get('unit')):>14}"
                         f"  max {with_unit(entry.get('max'), entry.get('unit')):>14}")
        else:
            lines += textwrap.wrap(f"{status}: {entry.get('error')}", WIDTH, initial_indent="  ", subsequent_indent="    ")
    if empty:
        lines += [""] + textwrap.wrap(f"no data: {', '.join(empty)}", WIDTH, subsequent_indent="  ")
    links = report.get("links") or {}
    if links:
        lines += ["", "links"] + [f"  {key}: {url}" for key, url in links.items()]
    return "\n".join(lines)


# -- list -----------------------------------------------------------------------------------------


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """A report as one ``list`` row (and one ``--json`` object)."""
    block = report.get("report", {})
    return {"uuid": report.get("uuid"), "benchmark": report.get("benchmark"),
            "cluster": report.get("openshift_cluster_name"), "version": report.get("openshift_cluster_version"),
            "platform": report.get("openshift_platform"), "start_date": report.get("start_date"),
            "end_date": report.get("end_date"), "job_status": report.get("job_status"),
            "report_status": block.get("status"), "reasons": block.get("reasons", [])}


def render_list(reports: Sequence[Mapping[str, Any]]) -> str:
    if not reports:
        return "no reports match"
    lines = [f"{'uuid':<8} {'started (UTC)':<16} {'benchmark':<18} {'cluster':<14} {'version':<7} {'status'}"]
    partial = False
    for row in map(summary, reports):
        started = when(row["start_date"])[:16]
        status = str(row["job_status"])
        if row["report_status"] == "partial":
            status, partial = status + "*", True
        lines.append(f"{fit(str(row['uuid']), 8):<8} {started:<16} {fit(str(row['benchmark']), 18):<18} "
                     f"{fit(str(row['cluster']), 14):<14} {fit(_short_version(row['version']), 7):<7} {fit(status, 10)}")
    if partial:
        lines.append("* partial report: `report-consumer show UUID` says what is missing")
    return "\n".join(lines)


def _short_version(version: str | None) -> str:
    """``4.16.0-0.nightly-2024-05-01-000000`` -> ``4.16.0``: what fits a column."""
    return re.split(r"[-+]", version, maxsplit=1)[0] if version else "-"


# -- compare --------------------------------------------------------------------------------------


def _delta(a: float | None, b: float | None) -> dict[str, Any]:
    delta = None if a is None or b is None else b - a
    return {"a": a, "b": b, "delta": delta, "relative": relative(delta, a)}


def _job_key(job: Mapping[str, Any]) -> tuple[Any, ...]:
    return (job.get("name"), job.get("phase"), job.get("step"))


def _series_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return (entry.get("profile"), entry.get("name"), labels_text(entry.get("labels")))


def _paired(a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]], key: Any) -> list[tuple[Any, Any]]:
    """Entries of ``a`` and ``b`` matched by ``key``, in ``a``'s order, then those only in ``b``."""
    left = {key(x): x for x in a}
    right = {key(x): x for x in b}
    return [(left.get(k), right.get(k)) for k in dict.fromkeys([*left, *right])]


def compare_reports(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``b`` against ``a``: per job its elapsed time and latency quantiles, per metric series its
    avg and max, each with ``delta`` (b - a) and ``relative`` (delta / a)."""
    jobs = []
    for left, right in _paired(_entries(a, "jobs"), _entries(b, "jobs"), _job_key):
        some = left or right
        values = {"elapsed_s": _delta((left or {}).get("elapsed_s"), (right or {}).get("elapsed_s"))}
        conditions = dict.fromkeys([*(left or {}).get("latency_ms", {}), *(right or {}).get("latency_ms", {})])
        for condition in conditions:
            for stat in ("P99", "P95", "P50", "max", "avg", "min"):
                pair = _delta((left or {}).get("latency_ms", {}).get(condition, {}).get(stat),
                              (right or {}).get("latency_ms", {}).get(condition, {}).get(stat))
                if pair["a"] is not None or pair["b"] is not None:
                    values[f"latency_ms.{condition}.{stat}"] = pair
        jobs.append({"name": some.get("name"), "phase": some.get("phase"), "step": some.get("step"),
                     "in": "both" if left and right else "a" if left else "b", "values": values})
    metrics = []
    ok = [[m for m in _entries(r, "metrics") if m.get("status") == "ok"] for r in (a, b)]
    for left, right in _paired(ok[0], ok[1], _series_key):
        some = left or right
        metrics.append({"name": some.get("name"), "profile": some.get("profile"), "unit": some.get("unit"),
                        "labels": some.get("labels", {}), "in": "both" if left and right else "a" if left else "b",
                        "avg": _delta((left or {}).get("avg"), (right or {}).get("avg")),
                        "max": _delta((left or {}).get("max"), (right or {}).get("max"))})
    return {"a": summary(a), "b": summary(b), "jobs": jobs, "metrics": metrics}


def _cell(value: float | None, unit: str | None) -> str:
    """A compared metric value: bytes and seconds scaled with their unit, others bare (the unit is
    in the metric's title)."""
    return with_unit(value, unit) if unit in ("bytes", "seconds", "s") else "-" if value is None else significant(value)


def _compare_row(label: str, pair: Mapping[str, Any], show: Any, indent: int = 2) -> str:
    delta = pair["delta"]
    change = "-" if delta is None else "0" if delta == 0 else _signed(show(delta))
    width = 32 - indent
    return (f"{' ' * indent}{fit(label, width):<{width}} {show(pair['a']):>11} {show(pair['b']):>11} "
            f"{change:>11} {percent(pair['relative']):>8}")


def render_compare(compared: Mapping[str, Any]) -> str:
    lines = []
    for side in ("a", "b"):
        run = compared[side]
        lines.append(fit(f"{side.upper()}  {run['uuid']}  {run['job_status']}, report {run['report_status']}", WIDTH))
        lines.append(fit(f"   {run['benchmark']} on {run['cluster']}, {_short_version(run['version'])}, "
                         f"{when(run['start_date'])}", WIDTH))
    lines += ["", f"{'':<32} {'A':>11} {'B':>11} {'B - A':>11} {'B / A':>8}"]
    for job in compared["jobs"]:
        only = "" if job["in"] == "both" else f" (only in {job['in'].upper()})"
        lines.append(fit(f"job {job_title(job)}{only}", WIDTH))
        for key, pair in job["values"].items():
            if key == "elapsed_s":
                lines.append(_compare_row("elapsed", pair, duration))
            elif key.rsplit(".", 1)[1] in LATENCY_STATS:
                _, condition, stat = key.split(".")
                lines.append(_compare_row(f"{condition} {stat}", pair, milliseconds))
    current = None
    for series in compared["metrics"]:
        key = (series["profile"], series["name"])
        if key != current:
            current = key
            unit = f" ({series['unit']})" if series.get("unit") else ""
            lines.append(fit(f"metric {series['name']}{unit}", WIDTH))
        only = "" if series["in"] == "both" else f" (only in {series['in'].upper()})"
        lines.append(fit(f"  {labels_text(series['labels'])}{only}", WIDTH))
        for stat in ("avg", "max"):
            lines.append(_compare_row(stat, series[stat], lambda v, u=series.get("unit"): _cell(v, u), indent=4))
    if not compared["jobs"] and not compared["metrics"]:
        lines += ["", "nothing to compare: neither report has jobs or metric series"]
    return "\n".join(lines)


__all__ = [
    "VIEW_COMMANDS",
    "NotFound",
    "add_view_commands",
    "compare_reports",
    "find_report",
    "list_query",
    "render_compare",
    "render_list",
    "render_show",
    "search_reports",
    "since",
]
