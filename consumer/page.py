"""One report as a self-contained HTML page (``report-consumer show UUID --html FILE``).

No script, font, stylesheet or image is fetched: the style is inline and each judged number's
chart is an SVG drawn here from the verdict's stored series (the comparable runs, oldest first,
then this run), with the baseline median and spread, this run, and the change points marked. The
page reads the same opened from a mail attachment, a CI artifact or a laptop without network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from consumer.views import duration, job_title, milliseconds, percent, when, with_unit

_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d232a;max-width:1100px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;margin:4px 0} td,th{padding:3px 8px;text-align:left;border-bottom:1px solid #e3e6ea}
th{background:#f5f6f8;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.status{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:#fff}
.regression{background:#c62828}.improvement{background:#2e7d32}.pass{background:#546e7a}
.acked{background:#8d6e63}.insufficient-history,.not-judged{background:#9e9e9e}
.charts{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0;border:1px solid #e3e6ea;border-radius:6px;padding:8px}
figcaption{font-size:12px;max-width:340px;word-break:break-all} .muted{color:#69737d}
"""
_WIDTH, _HEIGHT, _PAD = 340, 150, 28
_COLOURS = {"regression": "#c62828", "improvement": "#2e7d32", "acked": "#8d6e63"}


def _fmt(value: Any, unit: str | None) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if unit == "ms":
        return milliseconds(value)
    if unit == "s":
        return duration(value)
    return with_unit(value, unit)


def chart(entry: Mapping[str, Any], history: Sequence[Mapping[str, Any]], uuid: str) -> str:
    """The SVG of one judged number: its comparable runs, this run last, change points dashed."""
    series = list(entry.get("series") or [])
    runs = [str(run.get("uuid")) for run in history][: len(series)]
    points = [(i, value, runs[i] if i < len(runs) else "") for i, value in enumerate(series)
              if isinstance(value, (int, float))]
    this = (len(series), float(entry["value"]), uuid)
    points.append(this)
    values = [value for _, value, _ in points]
    median, spread = entry.get("baseline_median"), entry.get("baseline_spread") or 0.0
    if isinstance(median, (int, float)):
        values += [median - spread, median + spread]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 1, high + 1
    margin = (high - low) * 0.08
    low, high = low - margin, high + margin
    slots = max(len(series), 1)

    def x(i: float) -> float:
        return _PAD + (_WIDTH - 2 * _PAD) * i / slots

    def y(value: float) -> float:
        return _HEIGHT - _PAD + (value - low) / (high - low) * (2 * _PAD - _HEIGHT)

    unit = entry.get("unit")
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
             f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" data-number="{escape(str(entry["name"]))}">',
             f'<title>{escape(str(entry["name"]))}</title>',
             f'<rect x="0" y="0" width="{_WIDTH}" height="{_HEIGHT}" fill="#fff"/>']
    if isinstance(median, (int, float)):
        top, bottom = y(median + spread), y(median - spread)
        parts.append(f'<rect class="spread" x="{_PAD}" y="{top:.1f}" width="{_WIDTH - 2 * _PAD}" '
                     f'height="{max(bottom - top, 0.5):.1f}" fill="#90a4ae" fill-opacity="0.25"/>')
        parts.append(f'<line class="median" x1="{_PAD}" x2="{_WIDTH - _PAD}" y1="{y(median):.1f}" y2="{y(median):.1f}" '
                     'stroke="#546e7a" stroke-dasharray="2 2"/>')
    order = {run: i for i, run in enumerate(runs)} | {uuid: len(series)}
    for run in entry.get("change_points") or ():
        if run in order:
            at = x(order[run] - 0.5)
            parts.append(f'<line class="change-point" x1="{at:.1f}" x2="{at:.1f}" y1="{_PAD / 2}" y2="{_HEIGHT - _PAD}" '
                         'stroke="#ef6c00" stroke-width="1.5" stroke-dasharray="5 3"><title>change point</title></line>')
    line = " ".join(f"{x(i):.1f},{y(value):.1f}" for i, value, _ in points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1565c0" stroke-width="1.2"/>')
    for i, value, run in points[:-1]:
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="2.2" fill="#1565c0">'
                     f'<title>{escape(run)}: {escape(_fmt(value, unit))}</title></circle>')
    colour = _COLOURS.get(str(entry.get("status")), "#263238")
    parts.append(f'<circle class="this-run" cx="{x(this[0]):.1f}" cy="{y(this[1]):.1f}" r="4.5" fill="{colour}">'
                 f'<title>this run: {escape(_fmt(this[1], unit))}</title></circle>')
    parts.append(f'<text x="{_PAD}" y="{_HEIGHT - 8}" font-size="10" fill="#69737d">{escape(_fmt(low + margin, unit))}'
                 f' - {escape(_fmt(high - margin, unit))}, {len(points) - 1} runs</text>')
    parts.append("</svg>")
    return "".join(parts)


def _row(cells: Sequence[str], numeric: Sequence[int] = ()) -> str:
    return "<tr>" + "".join(f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
                            for i, cell in enumerate(cells)) + "</tr>"


def render_page(report: Mapping[str, Any]) -> str:
    """The whole page of ``report``, as one HTML document."""
    uuid = str(report.get("uuid"))
    block = report.get("report") or {}
    verdict = report.get("verdict") or {}
    status = str(verdict.get("status", "not-judged"))
    title = f"{report.get('benchmark')} on {report.get('openshift_cluster_name')}"
    summary = [
        ("uuid", uuid), ("run", f"{report.get('job_status')}, {when(report.get('start_date'))} to {when(report.get('end_date'))}"),
        ("cluster", ", ".join(str(part) for part in (report.get("openshift_platform"), report.get("openshift_cluster_version"),
                                                     report.get("openshift_network_type"),
                                                     report.get("worker_count") is not None and f"{report.get('worker_count')} workers")
                              if part)),
        ("report", f"{block.get('status')}, built {when(block.get('built_at'))}"),
        *[("reason", reason) for reason in block.get("reasons", ())],
    ]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{escape(title)} {escape(uuid)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{escape(title)}</h1>",
           f'<p><span class="status {escape(status)}" id="verdict">{escape(status)}</span> '
           f'<span class="muted">against {escape(str(verdict.get("history_runs", 0)))} comparable runs'
           f'{" (" + escape(str(verdict["rule"])) + ")" if verdict.get("rule") else ""}'
           f'{": " + escape(str(verdict["reason"])) if verdict.get("reason") else ""}</span></p>',
           "<h2>Run</h2><table>"]
    out += [_row([escape(key), escape(str(value))]) for key, value in summary]
    links = report.get("links") or {}
    for key, url in links.items():
        out.append(_row([escape(str(key)), f'<a href="{escape(str(url))}">{escape(str(url))}</a>']))
    out.append("</table>")

    numbers = [entry for entry in verdict.get("numbers") or () if isinstance(entry, Mapping)]
    if numbers:
        out += ['<h2>Verdict</h2><table id="verdict-table"><tr><th>number</th><th>this run</th><th>baseline median</th>'
                '<th>spread</th><th>change</th><th></th><th>change point</th><th>p-value</th><th>status</th></tr>']
        for entry in numbers:
            unit = entry.get("unit")
            p_value = entry.get("p_value")
            out.append(_row([
                escape(str(entry["name"])), escape(_fmt(entry.get("value"), unit)),
                escape(_fmt(entry.get("baseline_median"), unit)), escape(_fmt(entry.get("baseline_spread"), unit)),
                escape(_fmt(entry.get("delta"), unit)), escape(percent(entry["delta_pct"] / 100) if isinstance(entry.get("delta_pct"), (int, float)) else "-"),
                "yes" if entry.get("change_point") else "no",
                escape(f"{p_value:.2g}" if isinstance(p_value, (int, float)) else "-"),
                f'<span class="status {escape(str(entry.get("status")))}">{escape(str(entry.get("status")))}</span>'
                + (' <span class="muted">(threshold rule)</span>' if entry.get("method") == "threshold" else ""),
            ], numeric=(1, 2, 3, 4, 5, 7)))
        out.append("</table>")
        history = [run for run in verdict.get("history") or () if isinstance(run, Mapping)]
        out.append('<h2>History</h2><p class="muted">Comparable runs, oldest first, then this run (large dot); '
                   'the band is the baseline median and spread, dashed orange lines mark change points.</p>'
                   '<div class="charts">')
        for entry in numbers:
            out.append(f"<figure>{chart(entry, history, uuid)}<figcaption>{escape(str(entry['name']))}</figcaption></figure>")
        out.append("</div>")

    jobs = [job for job in report.get("jobs") or () if isinstance(job, Mapping)]
    if jobs:
        out.append("<h2>Jobs</h2><table><tr><th>job</th><th>elapsed</th><th>iterations</th><th>Ready P99</th><th>Ready P50</th></tr>")
        for job in jobs:
            ready = (job.get("latency_ms") or {}).get("Ready") or {}
            out.append(_row([escape(job_title(job)), escape(duration(job.get("elapsed_s"))), escape(str(job.get("iterations", "-"))),
                             escape(milliseconds(ready.get("P99"))), escape(milliseconds(ready.get("P50")))], numeric=(1, 2, 3, 4)))
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


__all__ = ["chart", "render_page"]
