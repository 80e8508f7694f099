"""A dashboard's queries as Grafana's Elasticsearch data source sends them, and its answers as
Grafana reads them, so tests can run a shipped dashboard against the real Elasticsearch.

What Grafana 10.2 and later (11) do with a panel's query; the request is built in Grafana's server
(10.0 and 10.1 built it in the browser with the same aggregations, the raw-data sort as a list):

1. **Template variables** (in the browser): the Lucene query string and each ``filters`` bucket's
   query get the ``lucene`` format: one value is escaped (``perf\\-1``), several are quoted and
   joined (``("a" OR "b")``), All is the variable's custom all value as it is (``*``), or, without
   one, every option in the multi-value form; an empty ``filters`` query becomes ``*``. The rest of
   the query is interpolated with the default format (``{a,b}`` for several values).
2. **The search** (in the server): ``size`` 0; a bool filter holding the range on the data
   source's time field (``gte``/``lte`` epoch milliseconds, ``format: epoch_millis``) and, when the
   query string is not blank, a ``query_string`` with ``analyze_wildcard``; one filter is written as
   an object, two as a list. Bucket aggregations nest in the order given, keyed by their ids, the
   metrics (``count`` adds none) in the innermost. ``date_histogram``: ``fixed_interval`` (``auto``
   is the panel's interval in ms, written ``<n>ms``), ``calendar_interval`` for 1w, 1M, 1q and 1y,
   ``min_doc_count`` (default 0), ``extended_bounds`` = the time range, ``format: epoch_millis``,
   ``time_zone`` unless utc. ``terms``: ``size`` (0 or missing means 500), ``order`` (``_term`` is
   sent as ``_key``; a metric id orders by that metric, added inside the terms; the count metric
   orders by ``_count``), ``min_doc_count``. ``nested``: its field is the path. ``filters``:
   each a ``query_string`` keyed by its label (or its query). Raw data and raw document queries
   fetch ``size`` hits (default 500) sorted by ``{"_doc": desc, <time field>: desc}`` (Grafana
   writes the sort as a Go map, whose keys are marshalled in sorted order), with ``docvalue_fields``
   and, for raw data, ``fields`` with the time field in ``strict_date_optional_time_nanos``.
3. **The request**: ``POST /_msearch?max_concurrent_shard_requests=5``, ``application/x-ndjson``,
   per query a header ``{"ignore_unavailable": true, "index": ..., "search_type": "query_then_fetch"}``
   and the body, as Go's ``encoding/json`` writes them (compact, keys sorted, ``<>&`` escaped);
   ``$__interval_ms`` in the body is replaced by the interval in milliseconds.
4. **The interval** (in the browser): ``(to - from) / max data points`` (the panel's, else its
   width in pixels), rounded to Grafana's ladder of intervals, and no less than the panel's min
   interval.
5. **Query variables** ``{"find": "terms", "field": F, "query": Q}`` (in the browser): a terms
   aggregation ``"1"`` on F (size 500, ``_key`` ascending) under the time range (as strings) and
   Q (Lucene-interpolated), sent to the same ``_msearch``.
6. **Answers**: bucket aggregations are walked in order; a nested aggregation is a level without
   buckets; at the last level a date histogram gives one time series per metric (``count`` reads
   ``doc_count``, ``percentiles`` one series per percent), any other bucket gives table rows. Keys
   of the enclosing buckets become the series' labels (``filters`` buckets under ``filter``).

Only what dashboards here use is reproduced; anything else raises :class:`Unsupported`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALL = "$__all"
DEFAULT_SIZE = 500
CALENDAR_INTERVALS = ("1w", "1M", "1q", "1y")
MAX_CONCURRENT_SHARD_REQUESTS = 5
DOCUMENT_QUERIES = ("raw_data", "raw_document")


class Unsupported(Exception):
    """A query that Grafana would send but this reproduction does not build (yet)."""


@dataclass(frozen=True)
class Datasource:
    """The Elasticsearch data source's settings that shape requests."""

    index: str
    time_field: str


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Variable:
    """A template variable's current state: ``selected`` is a value, a list of values, or ALL."""

    name: str
    selected: str | tuple[str, ...]
    options: tuple[str, ...] = ()  # what All stands for when there is no custom all value
    all_value: str | None = None

    @property
    def is_all(self) -> bool:
        return self.selected == ALL or (isinstance(self.selected, tuple) and self.selected[:1] == (ALL,))


# -- 1. template variables ------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
_LUCENE_SPECIAL = re.compile(r'([!*+\-=<>\s&|()\[\]{}^~?:\\/"])')


def lucene_escape(value: str) -> str:
    """Grafana's escape for Lucene: numbers as they are, special characters backslashed."""
    try:
        float(value)
        return value
    except ValueError:
        return _LUCENE_SPECIAL.sub(r"\\\1", value)


def _format(value: str | list[str], fmt: str | None) -> str:
    if fmt == "lucene":
        if isinstance(value, str):
            return lucene_escape(value)
        if not value:
            return "__empty__"
        return "(" + " OR ".join(f'"{lucene_escape(v)}"' for v in value) + ")"
    if fmt in (None, "glob"):
        return value if isinstance(value, str) else ("{" + ",".join(value) + "}" if len(value) > 1 else "".join(value))
    if fmt == "raw":
        return value if isinstance(value, str) else ",".join(value)
    raise Unsupported(f"variable format {fmt!r}")


def interpolate(text: str, variables: Mapping[str, Variable], fmt: str | None = None) -> str:
    """``text`` with ``$name``, ``${name}``, ``${name:format}`` and ``[[name]]`` replaced as
    Grafana's template service does; names that are not variables stay as they are."""

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        variable = variables.get(name)
        if variable is None:
            return match.group(0)
        explicit = match.group(3) or match.group(5)
        chosen = explicit or fmt
        if variable.is_all:
            if variable.all_value is not None:
                return interpolate(variable.all_value, variables)  # a custom all value is not formatted
            return _format(list(variable.options), chosen)
        selected = variable.selected
        return _format(list(selected) if isinstance(selected, tuple) else selected, chosen)

    return _VARIABLE.sub(replace, text)


def apply_variables(target: Mapping[str, Any], variables: Mapping[str, Variable]) -> dict[str, Any]:
    """A panel's query with its variables substituted, as the data source hands it to the server."""
    query = dict(target)
    query["query"] = interpolate(target.get("query") or "", variables, "lucene")
    buckets = []
    for bucket in target.get("bucketAggs") or []:
        if bucket.get("type") == "filters":
            settings = dict(bucket.get("settings") or {})
            settings["filters"] = [{**f, "query": interpolate(f.get("query") or "", variables, "lucene") or "*"}
                                   for f in settings.get("filters") or []]
            bucket = {**bucket, "settings": settings}
        buckets.append(bucket)
    query["bucketAggs"] = buckets
    return json.loads(interpolate(json.dumps(query), variables))


# -- 4. the interval --------------------------------------------------------------------------------

# Grafana's ladder: below each bound (ms), the interval it rounds to.
_LADDER = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000), (3_500, 2_000),
    (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000), (45_000, 30_000), (90_000, 60_000),
    (210_000, 120_000), (450_000, 300_000), (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000),
    (2_700_000, 1_800_000), (5_400_000, 3_600_000), (9_000_000, 7_200_000), (16_200_000, 10_800_000),
    (32_400_000, 21_600_000), (86_400_000, 43_200_000), (604_800_000, 86_400_000), (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}


def round_interval(ms: float) -> int:
    for bound, rounded in _LADDER:
        if ms < bound:
            return rounded
    return 31_536_000_000


def interval_ms(text: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text.strip())
    if not match:
        raise Unsupported(f"interval {text!r}")
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def panel_interval_ms(panel: Mapping[str, Any], time_range: TimeRange, width_px: int) -> int:
    """``$__interval_ms`` for ``panel``: the range over its max data points (or width), rounded,
    and no less than its min interval."""
    points = int(panel.get("maxDataPoints") or width_px)
    rounded = round_interval((time_range.end_ms - time_range.start_ms) / points)
    low = interval_ms(panel["interval"]) if panel.get("interval") else 1
    return max(rounded, low)


# -- 2. the search ----------------------------------------------------------------------------------


def _int(value: Any, default: int) -> int:
    """Grafana's string-to-int with a default: unparsable or 0 gives the default."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number or default


def search_body(query: Mapping[str, Any], datasource: Datasource, time_range: TimeRange) -> dict[str, Any]:
    """The body Grafana's server builds for one (interpolated) query."""
    metrics = query.get("metrics") or [{"id": "1", "type": "count"}]
    buckets = query.get("bucketAggs") or []
    time_field = datasource.time_field
    filters: list[dict[str, Any]] = [{"range": {time_field: {"gte": time_range.start_ms, "lte": time_range.end_ms,
                                                             "format": "epoch_millis"}}}]
    if (query.get("query") or "").strip():
        filters.append({"query_string": {"query": query["query"], "analyze_wildcard": True}})
    body: dict[str, Any] = {"size": 0, "query": {"bool": {"filter": filters[0] if len(filters) == 1 else filters}}}

    first = metrics[0]
    if first["type"] in DOCUMENT_QUERIES:
        body["size"] = _int((first.get("settings") or {}).get("size"), DEFAULT_SIZE)
        body["sort"] = {time_field: {"order": "desc", "unmapped_type": "boolean"}, "_doc": {"order": "desc"}}
        body["docvalue_fields"] = [time_field]
        body["script_fields"] = {}
        if first["type"] == "raw_data":
            body["fields"] = [{"field": time_field, "format": "strict_date_optional_time_nanos"}]
        return body
    if not buckets:
        raise Unsupported("a metric query without bucket aggregations")

    level = body
    for bucket in buckets:
        aggregation, inner = _bucket(bucket, metrics, time_range, time_field)
        level.setdefault("aggs", {})[bucket["id"]] = aggregation
        level = aggregation if inner is None else inner
    for metric in metrics:
        if metric["type"] == "count":
            continue
        level.setdefault("aggs", {})[metric["id"]] = {metric["type"]: _metric(metric)}
    return body


def _metric(metric: Mapping[str, Any]) -> dict[str, Any]:
    if metric["type"] not in ("avg", "max", "min", "sum", "percentiles", "cardinality", "value_count"):
        raise Unsupported(f"metric {metric['type']!r}")
    settings = {k: v for k, v in (metric.get("settings") or {}).items() if k and v is not None}
    return {"field": metric["field"], **settings}


def _bucket(bucket: Mapping[str, Any], metrics: Sequence[Mapping[str, Any]], time_range: TimeRange,
            time_field: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One bucket aggregation, and where the next level goes when not inside it (terms ordered by
    a metric get that metric beside the next level)."""
    kind, settings = bucket["type"], dict(bucket.get("settings") or {})
    if kind == "date_histogram":
        interval = settings.get("interval") or "auto"
        spec: dict[str, Any] = {"field": bucket.get("field") or time_field,
                                "min_doc_count": _int(settings.get("min_doc_count"), 0),
                                "extended_bounds": {"min": time_range.start_ms, "max": time_range.end_ms},
                                "format": settings.get("format") or "epoch_millis"}
        if interval in CALENDAR_INTERVALS:
            spec["calendar_interval"] = interval
        else:
            spec["fixed_interval"] = "$__interval_msms" if interval == "auto" else interval
        if settings.get("offset"):
            spec["offset"] = settings["offset"]
        if settings.get("timeZone") and settings["timeZone"] != "utc":
            spec["time_zone"] = settings["timeZone"]
        return {"date_histogram": spec}, None
    if kind == "terms":
        spec = {"field": bucket["field"], "size": _int(settings.get("size"), DEFAULT_SIZE), "order": {}}
        if settings.get("min_doc_count") is not None:
            spec["min_doc_count"] = int(settings["min_doc_count"])
        aggregation: dict[str, Any] = {"terms": spec}
        order_by, order = settings.get("orderBy"), settings.get("order") or "desc"
        if order_by:
            metric_id = re.match(r"^\d+", order_by)
            if metric_id:
                metric = next((m for m in metrics if m["id"] == metric_id.group(0)), None)
                if metric is not None and metric["type"] == "count":
                    spec["order"]["_count"] = order
                elif metric is not None:
                    spec["order"][order_by] = order
                    aggregation["aggs"] = {metric["id"]: {metric["type"]: {"field": metric["field"]}}}
            else:
                spec["order"]["_key" if order_by == "_term" else order_by] = order
        return aggregation, None
    if kind == "nested":
        return {"nested": {"path": bucket["field"]}}, None
    if kind == "filters":
        queries = {f.get("label") or f["query"]: {"query_string": {"query": f["query"], "analyze_wildcard": True}}
                   for f in settings.get("filters") or []}
        if not queries:
            raise Unsupported("a filters aggregation without filters (Grafana leaves it out)")
        return {"filters": {"filters": queries}}, None
    raise Unsupported(f"bucket aggregation {kind!r}")


# -- 3. the request -------------------------------------------------------------------------------


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, map keys sorted, ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def msearch_header(datasource: Datasource) -> dict[str, Any]:
    return {"search_type": "query_then_fetch", "ignore_unavailable": True, "index": datasource.index}


MSEARCH_PATH = f"/_msearch?max_concurrent_shard_requests={MAX_CONCURRENT_SHARD_REQUESTS}"


def msearch_payload(bodies: Sequence[Mapping[str, Any]], datasource: Datasource, interval: int) -> bytes:
    """The ndjson Grafana's server posts to ``MSEARCH_PATH`` for these bodies (one panel's queries
    share the panel's interval)."""
    lines = []
    for body in bodies:
        lines.append(go_json(msearch_header(datasource)))
        text = go_json(body).replace("$__interval_ms", str(interval))
        lines.append(text)
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class PanelRequest:
    """What Grafana sends for one panel: its queries as interpolated, and the ndjson."""

    panel: Mapping[str, Any]
    queries: list[dict[str, Any]]
    payload: bytes
    interval_ms: int


def panel_request(panel: Mapping[str, Any], datasource: Datasource, time_range: TimeRange,
                  variables: Mapping[str, Variable], width_px: int = 1000) -> PanelRequest:
    queries = [apply_variables(t, variables) for t in panel.get("targets") or [] if not t.get("hide")]
    interval = panel_interval_ms(panel, time_range, width_px)
    bodies = [search_body(q, datasource, time_range) for q in queries]
    return PanelRequest(panel, queries, msearch_payload(bodies, datasource, interval), interval)


# -- 5. query variables ---------------------------------------------------------------------------


def variable_payload(variable: Mapping[str, Any], datasource: Datasource, time_range: TimeRange,
                     variables: Mapping[str, Variable]) -> bytes:
    """The ndjson Grafana's browser posts to ``MSEARCH_PATH`` for a ``{"find": "terms"}`` variable."""
    definition = json.loads(variable["query"])
    if definition.get("find") != "terms":
        raise Unsupported(f"variable query {definition!r}")
    field_ = interpolate(definition["field"], variables, "lucene")
    query = interpolate(definition.get("query") or "", variables, "lucene")
    body: dict[str, Any] = {"size": 0, "query": {"bool": {"filter": [
        {"range": {datasource.time_field: {"gte": "$timeFrom", "lte": "$timeTo", "format": "epoch_millis"}}}]}}}
    if query:
        body["query"]["bool"]["filter"].append({"query_string": {"analyze_wildcard": True, "query": query}})
    order_by = definition.get("orderBy", "key")
    order = definition.get("order", "desc" if order_by == "doc_count" else "asc")
    body["aggs"] = {"1": {"terms": {"field": field_, "size": definition.get("size") or DEFAULT_SIZE,
                                    "order": {"_count" if order_by == "doc_count" else "_key": order}}}}
    text = json.dumps(body, separators=(",", ":"))
    text = text.replace("$timeFrom", str(time_range.start_ms)).replace("$timeTo", str(time_range.end_ms))
    header = json.dumps(msearch_header(datasource), separators=(",", ":"))
    return (header + "\n" + text + "\n").encode()


def variable_values(response: Mapping[str, Any]) -> list[str]:
    """The options Grafana lists from a variable's answer."""
    answer = response["responses"][0]
    if "error" in answer:
        raise AssertionError(f"Elasticsearch refused the variable query: {answer['error']}")
    return [str(b.get("key_as_string", b["key"])) for b in answer["aggregations"]["1"]["buckets"]]


# -- 6. answers -----------------------------------------------------------------------------------


@dataclass
class Series:
    """One time series of a panel: the keys of its enclosing buckets, which metric, its points."""

    labels: dict[str, str]
    metric: str  # the metric's type, or p<percent> for a percentile
    field: str | None
    points: list[tuple[int, float | None]] = field(default_factory=list)


@dataclass
class Answer:
    """What a panel's query got back, read the way Grafana reads it."""

    hits: list[dict[str, Any]] = field(default_factory=list)  # raw data / raw document
    series: list[Series] = field(default_factory=list)  # a date histogram last
    rows: list[dict[str, Any]] = field(default_factory=list)  # any other bucket last

    @property
    def has_data(self) -> bool:
        return bool(self.hits) or any(v is not None for s in self.series for _, v in s.points) or bool(self.rows)


def read_answer(query: Mapping[str, Any], response: Mapping[str, Any]) -> Answer:
    if "error" in response:
        raise AssertionError(f"Elasticsearch refused the query: {json.dumps(response['error'])[:2000]}")
    metrics = query.get("metrics") or [{"id": "1", "type": "count"}]
    answer = Answer()
    if metrics[0]["type"] in DOCUMENT_QUERIES:
        answer.hits = list(response["hits"]["hits"])
        return answer
    buckets = query.get("bucketAggs") or []
    _walk(response.get("aggregations") or {}, buckets, metrics, {}, 0, answer)
    return answer


def _walk(aggs: Mapping[str, Any], buckets: Sequence[Mapping[str, Any]], metrics: Sequence[Mapping[str, Any]],
          labels: dict[str, str], depth: int, answer: Answer) -> None:
    definitions = {b["id"]: b for b in buckets}
    for key in sorted(aggs):
        definition = definitions.get(key)
        if definition is None or not isinstance(aggs[key], Mapping):
            continue
        agg = aggs[key]
        if definition["type"] == "nested":
            _walk(agg, buckets, metrics, labels, depth + 1, answer)
            continue
        if depth == len(buckets) - 1:
            if definition["type"] == "date_histogram":
                _series(agg["buckets"], metrics, labels, answer)
            else:
                _rows(agg["buckets"], definition, metrics, labels, answer)
            continue
        found = agg["buckets"]
        if isinstance(found, Mapping):  # filters
            for name in sorted(found):
                _walk(found[name], buckets, metrics, {**labels, "filter": name}, depth + 1, answer)
        else:
            for bucket in found:
                name = str(bucket.get("key_as_string", bucket["key"]))
                _walk(bucket, buckets, metrics, {**labels, definition["field"]: name}, depth + 1, answer)


def _values(bucket: Mapping[str, Any], metric: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    if metric["type"] == "count":
        return [("count", bucket["doc_count"])]
    if metric["type"] == "percentiles":
        return [(f"p{p}", v) for p, v in sorted(bucket[metric["id"]]["values"].items())]
    return [(metric["type"], bucket[metric["id"]]["value"])]


def _series(buckets: Sequence[Mapping[str, Any]], metrics: Sequence[Mapping[str, Any]], labels: dict[str, str],
            answer: Answer) -> None:
    for metric in metrics:
        if metric.get("hide"):
            continue
        per_name: dict[str, Series] = {}
        for bucket in buckets:
            for name, value in _values(bucket, metric):
                one = per_name.setdefault(name, Series(dict(labels), name, metric.get("field")))
                one.points.append((int(bucket["key"]), value))
        answer.series.extend(per_name.values())


def _rows(buckets: Any, definition: Mapping[str, Any], metrics: Sequence[Mapping[str, Any]], labels: dict[str, str],
          answer: Answer) -> None:
    items = sorted(buckets.items()) if isinstance(buckets, Mapping) else [
        (str(b.get("key_as_string", b["key"])), b) for b in buckets]
    column = "filter" if definition["type"] == "filters" else definition["field"]
    for name, bucket in items:
        row: dict[str, Any] = {**labels, column: name}
        for metric in metrics:
            if not metric.get("hide"):
                row.update(_values(bucket, metric))
        answer.rows.append(row)


# -- the dashboard ----------------------------------------------------------------------------------


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that queries, rows' own panels included (rows themselves are not)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from (p for p in panel.get("panels", []) if p.get("type") != "row")
        else:
            yield panel
