"""The shipped Grafana dashboard (dashboards/perf-reports.json) against the real Elasticsearch.

Every panel's query is sent the way Grafana's Elasticsearch data source sends it (see
tests/support/grafana.py): variables substituted, the `_msearch` header and body its server builds,
over the dashboard's time range. The reports are the demo's sample runs (scripts/demo.py) plus a
few more (another release, a failed run, a partial report with an incremental-load job, one run
outside the range), built by the product: kube-burner documents read back by the results reader,
metric series shaped by the metrics module, the report by build_report and stored by write_report.
Each panel must find data, and the numbers it draws must be the ones computed here from the input.

A panel added to the dashboard is run by these tests without more code. To check its numbers, add
a function to CHECKS under the panel's title.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from consumer.kubeburner import epoch_ns
from consumer.links import grafana_links
from consumer.metrics import PlannedQuery, entries
from consumer.profiles import Query
from consumer.report import build_report
from consumer.results import gather_results
from consumer.sink import REPORT_MAPPING, write_report
from consumer.thanos import QueryResult, SeriesSummary
from producer_hooks.events import make_event
from scripts.demo import sample_runs
from tests.support import grafana
from tests.support.es import index_docs
from tests.support.grafana import ALL, Answer, Datasource, TimeRange, Variable
from tests.support.kubeburner import KubeBurnerRun, kube_burner_run

DASHBOARD_PATH = Path(__file__).resolve().parent.parent / "dashboards" / "perf-reports.json"
TIME_FIELD = "end_date"  # what the README tells users to set as the data source's time field
NOW = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc)
RANGE = TimeRange(int((NOW - timedelta(days=7)).timestamp() * 1000), int(NOW.timestamp() * 1000))
NAMESPACES = ("openshift-etcd", "openshift-kube-apiserver", "openshift-ovn-kubernetes")
QUERY_VARIABLES = ("platform", "cluster", "benchmark", "version")


def dashboard() -> dict:
    return json.loads(DASHBOARD_PATH.read_text())


# -- the reports ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One run of the fixture: its metadata document, what kube-burner recorded, its metric series."""

    doc: dict
    status: str
    kube_burner: KubeBurnerRun | None
    series: dict[str, list[SeriesSummary]]
    failing_query: str | None = None

    @property
    def uuid(self) -> str:
        return self.doc["uuid"]


def fixture_runs() -> list[Run]:
    """The demo's four runs and four more."""
    rng = random.Random(7)
    now = int(NOW.timestamp())
    demo = sample_runs(now)
    runs = []
    for n, sample in enumerate(demo):
        doc = {**sample["doc"], sample["status_key"]: "success"}
        start = datetime.fromtimestamp(sample["start"], timezone.utc)
        burner = kube_burner_run(doc["uuid"], start, sample["jobs"], cluster=sample["cluster"], seed=n)
        runs.append(Run(doc, "success", burner, series_for(rng)))

    def another(sample: dict, uuid: str, ended_ago: int, status: str, jobs: dict | None, failing: str | None = None,
                incremental: dict | None = None, **changes: str) -> Run:
        """A demo run's document for another run, ended ``ended_ago`` seconds before NOW."""
        start = now - ended_ago - 1800
        window = ("start_date", "end_date") if sample["status_key"] == "job_status" else ("startDate", "endDate")
        doc = {**sample["doc"], **changes, "uuid": uuid, sample["status_key"]: status,
               window[0]: _iso(start), window[1]: _iso(start + 1800)}
        burner = kube_burner_run(uuid, datetime.fromtimestamp(start, timezone.utc), jobs, cluster=sample["cluster"],
                                 seed=len(runs), incremental=incremental) if jobs else None
        return Run(doc, status, burner, series_for(rng), failing)

    runs += [
        # An older release on the demo's AWS cluster, a day earlier.
        another(demo[0], "dash-older-release", 86_400, "success", {"cluster-density-v2": 100}, cluster_version="4.17.9"),
        # A failed run: kube-burner indexed nothing.
        another(demo[2], "dash-failed", 9_000, "failure", None, benchmark="node-density"),
        # A partial report (a metric query refused), with an incremental-load job of three steps.
        another(demo[1], "dash-partial", 12_000, "success", {"node-density": 300}, failing="podMemory",
                incremental={"node-density": 3}, build_tag="node-density"),
        # Outside the dashboard's time range.
        another(demo[0], "dash-long-ago", 40 * 86_400, "success", {"cluster-density-v2": 50}),
    ]
    return runs


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def series_for(rng: random.Random) -> dict[str, list[SeriesSummary]]:
    """What Thanos would summarise for a run: CPU and memory per namespace, CPU per master."""
    def one(labels: dict, low: float, high: float, top: float) -> SeriesSummary:
        return SeriesSummary(labels, round(rng.uniform(low, high), 4), round(rng.uniform(high, top), 4), 181)

    return {
        "podCPU": [one({"namespace": ns}, 0.1, 2, 4) for ns in NAMESPACES],
        "podMemory": [one({"namespace": ns}, 3e8, 2e9, 4e9) for ns in NAMESPACES],
        "masterCPU": [one({"instance": f"master-{m}"}, 1, 3, 6) for m in range(3)],  # not a namespace series
    }


UNITS = {"podCPU": "cores", "podMemory": "bytes", "masterCPU": "cores"}


async def store_reports(es, settings, runs: list[Run]) -> dict[str, dict]:
    """Each run's report, built and written by the product, as stored."""
    docs = [doc for run in runs if run.kube_burner for doc in run.kube_burner.docs]
    await index_docs(es, settings.results_index, docs)
    reports = {}
    for run in runs:
        event = make_event(run.doc)
        results = await gather_results(es, settings.results_index, event.run, 0, settings.retry)
        metrics = []
        for name, series in run.series.items():
            planned = PlannedQuery("control-plane", Query(name, f"{name}{{$cluster}}", UNITS[name]), f"{name}(...)")
            if name == run.failing_query:
                metrics += entries(planned, error="bad_data: parse error")
            else:
                metrics += entries(planned, QueryResult(series, []))
        reasons = [*results.reasons, *(f"{m['name']}: {m['error']}" for m in metrics if m["status"] == "error")]
        links = grafana_links(settings.grafana_url, settings.dashboards, event.run.cluster_name or "", event.run.start,
                              event.run.end)
        report = build_report(event, results=results.data, metrics=metrics, links=links,
                              profiles=[("control-plane", 1)], reasons=reasons, built_at=NOW)
        await write_report(es, settings.report_index, report, settings.retry)
        reports[run.uuid] = report
    await es.indices.refresh(index=settings.report_index)
    return reports


# -- what the panels should draw, from the input ----------------------------------------------------


def ms(text: str) -> int:
    ns = epoch_ns(text)
    assert ns is not None, text
    return ns // 1_000_000


def bucket(at_ms: int, interval: int) -> int:
    return at_ms // interval * interval


@dataclass
class Expected:
    """The fixture as a user of the dashboard sees it: each run in the time range and its facts."""

    runs: list[Run]
    reports: dict[str, dict]

    def in_range(self, selection: Callable[[Run], bool] = lambda run: True) -> list[Run]:
        return [run for run in self.runs if RANGE.start_ms <= self.end_ms(run) <= RANGE.end_ms and selection(run)]

    def end_ms(self, run: Run) -> int:
        return ms(self.reports[run.uuid]["end_date"])

    def report(self, run: Run) -> dict:
        return self.reports[run.uuid]

    def field(self, run: Run, name: str) -> str | None:
        value = self.report(run)
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def failed(self, run: Run) -> bool:
        return run.status != "success"

    def partial(self, run: Run) -> bool:
        return bool(self.report(run)["report"]["reasons"])


# Panel checks: (Expected, what the panel got, its interval in ms, the runs selected) -> None.
Check = Callable[[Expected, Answer, int, list[Run]], None]


def check_outcomes(expected: Expected, answer: Answer, interval: int, runs: list[Run]) -> None:
    counts = {s.labels["filter"]: sum(v or 0 for _, v in s.points) for s in answer.series}
    assert counts == {
        "complete": sum(1 for r in runs if not expected.failed(r) and not expected.partial(r)),
        "partial": sum(1 for r in runs if not expected.failed(r) and expected.partial(r)),
        "failed": sum(1 for r in runs if expected.failed(r)),
    }


def check_runs(expected: Expected, answer: Answer, interval: int, runs: list[Run]) -> None:
    assert {hit["_id"] for hit in answer.hits} == {r.uuid for r in runs}
    assert all(hit["fields"][TIME_FIELD] for hit in answer.hits)  # the time column Grafana asks for


def check_partial_and_failed(expected: Expected, answer: Answer, interval: int, runs: list[Run]) -> None:
    wanted = {r.uuid for r in runs if expected.partial(r) or expected.failed(r)}
    assert {hit["_id"] for hit in answer.hits} == wanted


def check_reasons(expected: Expected, answer: Answer, interval: int, runs: list[Run]) -> None:
    reasons = Counter(reason for r in runs for reason in expected.report(r)["report"]["reasons"])
    assert {row["report.reasons"]: row["count"] for row in answer.rows} == reasons
    assert [row["count"] for row in answer.rows] == sorted(reasons.values(), reverse=True)  # most frequent first


def worst_ready_p99(run: Run) -> float | None:
    values = [job.latency["Ready"]["P99"] for job in (run.kube_burner.jobs if run.kube_burner else []) if job.latency]
    return max(values) if values else None


def points(answer: Answer, metric: str = "max") -> dict[tuple, dict[int, float]]:
    """Each series' non-empty points, by its labels (filter first, then the terms' keys)."""
    found: dict[tuple, dict[int, float]] = {}
    for one in answer.series:
        if one.metric == metric:
            found[tuple(one.labels.values())] = {t: v for t, v in one.points if v is not None}
    return {key: value for key, value in found.items() if value}


def check_p99_by_benchmark(expected: Expected, answer: Answer, interval: int, runs: list[Run]) -> None:
    wanted: dict[tuple, dict[int, float]] = defaultdict(dict)
    for run in runs:
        worst = worst_ready_p99(run)
        if worst is not None:
            key = (expected.field(run, "benchmark"), expected.field(run, "openshift_cluster_version_parts.release"))
            at = bucket(expected.end_ms(run), interval)
            wanted[key][at] = max(wanted[key].get(at, worst), worst)
    assert points(answer) == wanted


def check_p99_across_runs(expected: Expected, answer: Answer, interval: int, runs: list[Run]) -> None:
    per_benchmark: dict[str, list[float]] = defaultdict(list)
    counts = Counter(expected.field(run, "benchmark") for run in runs)
    for run in runs:
        if (worst := worst_ready_p99(run)) is not None:
            per_benchmark[expected.field(run, "benchmark")].append(worst)
    rows = {row["benchmark"]: row for row in answer.rows}
    assert {b: row["count"] for b, row in rows.items()} == counts
    for benchmark, values in per_benchmark.items():
        row = rows[benchmark]
        assert row["max"] == max(values)
        # Elasticsearch's percentiles are estimates (t-digest): inside the values, in order; exact for one run.
        assert min(values) <= row["p50.0"] <= row["p95.0"] <= max(values)
        if len(values) == 1:
            assert row["p50.0"] == row["p95.0"] == values[0]
    assert all(row["max"] is None for b, row in rows.items() if b not in per_benchmark)


def check_p99_by_job(expected: Expected, answer: Answer, interval: int, runs: list[Run]) -> None:
    wanted: dict[tuple, dict[int, float]] = defaultdict(dict)
    for run in runs:
        for job in run.kube_burner.jobs if run.kube_burner else []:
            if job.latency:
                key, at, value = ("measured", job.name), bucket(ms(job.end), interval), job.latency["Ready"]["P99"]
                wanted[key][at] = max(wanted[key].get(at, value), value)
    assert points(answer) == wanted


def check_elapsed(expected: Expected, answer: Answer, interval: int, runs: list[Run]) -> None:
    values: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for job in run.kube_burner.jobs if run.kube_burner else []:
            kind = {"job": "job", "gc": "job", "step": "step"}.get(job.phase)
            if kind:
                values[(kind, job.name)][bucket(ms(job.end), interval)].append(job.elapsed)
    wanted = {key: {at: statistics.mean(v) for at, v in by_time.items()} for key, by_time in values.items()}
    got = points(answer, "avg")
    assert got.keys() == wanted.keys()
    for key, by_time in wanted.items():
        assert got[key] == pytest.approx(by_time), key


def metric_check(name: str) -> Check:
    def check(expected: Expected, answer: Answer, interval: int, runs: list[Run]) -> None:
        avg: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        peak: dict[tuple, dict[int, float]] = defaultdict(dict)
        for run in runs:
            if run.failing_query == name:
                continue
            at = bucket(expected.end_ms(run), interval)
            for series in run.series[name]:
                key = (name, series.labels["namespace"])
                avg[key][at].append(series.avg)
                peak[key][at] = max(peak[key].get(at, series.max), series.max)
        got_avg = points(answer, "avg")
        assert got_avg.keys() == avg.keys()
        for key, by_time in avg.items():
            assert got_avg[key] == pytest.approx({at: statistics.mean(v) for at, v in by_time.items()}), key
        assert points(answer, "max") == peak
    return check


CHECKS: dict[str, Check] = {
    "Run outcomes": check_outcomes,
    "Run outcomes per day": check_outcomes,
    "Runs": check_runs,
    "Partial and failed runs": check_partial_and_failed,
    "Why reports are partial": check_reasons,
    "P99 pod Ready latency by benchmark and version": check_p99_by_benchmark,
    "P99 pod Ready latency across runs": check_p99_across_runs,
    "P99 pod Ready latency by job": check_p99_by_job,
    "Job elapsed time": check_elapsed,
    "Control-plane CPU per namespace": metric_check("podCPU"),
    "Control-plane memory per namespace": metric_check("podMemory"),
}


# -- running it -------------------------------------------------------------------------------------


async def msearch(es, payload: bytes) -> dict:
    """``payload`` posted as Grafana posts it: ndjson to /_msearch with its query parameter."""
    response = await es.perform_request("POST", grafana.MSEARCH_PATH, body=payload,
                                        headers={"content-type": "application/x-ndjson", "accept": "application/json"})
    return response.body


def all_selected() -> dict[str, Variable]:
    """The four filters on All, as the dashboard opens."""
    board = {v["name"]: v for v in dashboard()["templating"]["list"]}
    return {name: Variable(name, ALL, all_value=board[name]["allValue"]) for name in QUERY_VARIABLES}


async def run_panels(es, datasource: Datasource, variables: dict[str, Variable], expected: Expected,
                     runs: list[Run], *, all_find_data: bool = False) -> dict[str, Answer]:
    """Every panel's queries, sent as Grafana sends them; each checked against ``runs`` (the runs
    the selection and time range leave)."""
    answers = {}
    for panel in grafana.panels(dashboard()):
        request = grafana.panel_request(panel, datasource, RANGE, variables)
        response = await msearch(es, request.payload)
        [query] = request.queries
        answer = grafana.read_answer(query, response["responses"][0])
        assert answer.has_data or not all_find_data, f"panel {panel['title']!r} found nothing"
        if panel["title"] in CHECKS:
            CHECKS[panel["title"]](expected, answer, request.interval_ms, runs)
        answers[panel["title"]] = answer
    return answers


@pytest.fixture
async def fixture(es, settings):
    runs = fixture_runs()
    reports = await store_reports(es, settings, runs)
    return Expected(runs, reports), Datasource(settings.report_index, TIME_FIELD)


async def test_every_panel_finds_the_numbers_of_the_runs_in_the_time_range(es, fixture):
    expected, datasource = fixture
    runs = expected.in_range()
    assert 0 < len(runs) < len(expected.runs)  # one run is older than the range
    answers = await run_panels(es, datasource, all_selected(), expected, runs, all_find_data=True)
    assert set(answers) >= set(CHECKS)  # every checked panel is still on the dashboard
    steps = points(answers["Job elapsed time"], "avg")[("step", "node-density")]
    assert len(steps) >= 1  # the incremental-load job's steps have a line of their own


async def test_panels_follow_a_multi_value_selection(es, fixture):
    expected, datasource = fixture
    variables = all_selected() | {
        "cluster": Variable("cluster", ("perf-aws-418",)),
        "benchmark": Variable("benchmark", ("cluster-density-v2", "node-density")),
    }
    runs = expected.in_range(lambda run: expected.field(run, "openshift_cluster_name") == "perf-aws-418"
                             and expected.field(run, "benchmark") in ("cluster-density-v2", "node-density"))
    assert {r.uuid for r in runs} >= {"dash-older-release", "dash-partial"} and len(runs) == 3
    runs_panel = next(p for p in grafana.panels(dashboard()) if p["title"] == "Runs")
    request = grafana.panel_request(runs_panel, datasource, RANGE, variables)
    assert request.queries[0]["query"] == (
        'openshift_platform:* AND openshift_cluster_name:("perf\\-aws\\-418") AND '
        'benchmark:("cluster\\-density\\-v2" OR "node\\-density") AND openshift_cluster_version_parts.release:*')
    await run_panels(es, datasource, variables, expected, runs)

    # One release picked: the runs on 4.17 only.
    variables["version"] = Variable("version", ("4.17",))
    runs = [r for r in runs if expected.field(r, "openshift_cluster_version_parts.release") == "4.17"]
    assert [r.uuid for r in runs] == ["dash-older-release"]
    await run_panels(es, datasource, variables, expected, runs)


def test_variables_are_substituted_in_the_lucene_format():
    variables = {
        "one": Variable("one", "perf-1:a b"),
        "several": Variable("several", ("cluster-density-v2", "4.18", 'say "hi"')),
        "custom_all": Variable("custom_all", ALL, ("x", "y"), all_value="*"),
        "all": Variable("all", ALL, ("AWS", "GCP")),
        "none": Variable("none", ()),
    }
    assert grafana.interpolate("f:$one AND g:${several} AND h:[[custom_all]] AND i:$all AND j:$none AND $other",
                               variables, "lucene") == (
        'f:perf\\-1\\:a\\ b AND g:("cluster\\-density\\-v2" OR "4.18" OR "say\\ \\"hi\\"") AND h:* AND '
        'i:("AWS" OR "GCP") AND j:__empty__ AND $other')
    assert grafana.interpolate("${several:raw} $several", variables) == 'cluster-density-v2,4.18,say "hi" ' \
        '{cluster-density-v2,4.18,say "hi"}'
    target = {"query": "benchmark:$several", "bucketAggs": [
        {"id": "2", "type": "filters", "settings": {"filters": [{"query": "f:$one", "label": ""}, {"query": ""}]}}]}
    applied = grafana.apply_variables(target, variables)
    assert applied["query"] == 'benchmark:("cluster\\-density\\-v2" OR "4.18" OR "say\\ \\"hi\\"")'
    assert [f["query"] for f in applied["bucketAggs"][0]["settings"]["filters"]] == ["f:perf\\-1\\:a\\ b", "*"]


async def test_variables_list_the_values_of_the_runs_in_the_time_range(es, fixture):
    expected, datasource = fixture
    board = {v["name"]: v for v in dashboard()["templating"]["list"]}
    runs = expected.in_range()

    async def options(name: str, variables: dict[str, Variable]) -> list[str]:
        payload = grafana.variable_payload(board[name], datasource, RANGE, variables)
        return grafana.variable_values(await msearch(es, payload))

    everything = all_selected()
    for name, field_ in (("platform", "openshift_platform"), ("cluster", "openshift_cluster_name"),
                         ("benchmark", "benchmark"), ("version", "openshift_cluster_version_parts.release")):
        assert await options(name, everything) == sorted({expected.field(r, field_) for r in runs}), name
    # Chained: the clusters of the chosen platform, the benchmarks and releases of the chosen clusters.
    gcp = everything | {"platform": Variable("platform", ("GCP",))}
    assert await options("cluster", gcp) == ["perf-gcp-417"]
    aws = everything | {"cluster": Variable("cluster", ("perf-aws-418",))}
    assert await options("version", aws) == ["4.17", "4.18"]
    assert await options("benchmark", aws) == ["cluster-density-v2", "node-density", "node-density-heavy"]


async def test_the_request_is_the_one_grafana_builds(es, fixture):
    """One panel's `_msearch` pinned in full: a nested aggregation, filters, terms ordered by a
    metric, a date histogram on the auto interval."""
    expected, datasource = fixture
    panel = next(p for p in grafana.panels(dashboard()) if p["title"] == "Control-plane CPU per namespace")
    request = grafana.panel_request(panel, datasource, RANGE, all_selected())
    header, body, end = request.payload.split(b"\n")
    assert end == b""
    assert json.loads(header) == {"search_type": "query_then_fetch", "ignore_unavailable": True,
                                  "index": datasource.index}
    assert request.interval_ms == 3_600_000  # 7 days over 1,000 points is 10 minutes; the panel's minimum is 1h
    assert json.loads(body) == {
        "size": 0,
        "query": {"bool": {"filter": [
            {"range": {"end_date": {"gte": RANGE.start_ms, "lte": RANGE.end_ms, "format": "epoch_millis"}}},
            {"query_string": {"query": "openshift_platform:* AND openshift_cluster_name:* AND benchmark:* AND "
                                       "openshift_cluster_version_parts.release:*", "analyze_wildcard": True}},
        ]}},
        "aggs": {"2": {"nested": {"path": "metrics"}, "aggs": {
            "3": {"filters": {"filters": {"podCPU": {"query_string": {"query": "metrics.name:podCPU",
                                                                      "analyze_wildcard": True}}}},
                  "aggs": {"4": {"terms": {"field": "metrics.label_values", "size": 10, "order": {"1": "desc"},
                                           "min_doc_count": 1},
                                 "aggs": {"1": {"avg": {"field": "metrics.avg"}},
                                          "6": {"date_histogram": {
                                              "field": "metrics.end_date", "fixed_interval": "3600000ms",
                                              "min_doc_count": 1, "format": "epoch_millis",
                                              "extended_bounds": {"min": RANGE.start_ms, "max": RANGE.end_ms}},
                                              "aggs": {"1": {"avg": {"field": "metrics.avg"}},
                                                       "5": {"max": {"field": "metrics.max"}}}}}}}}}}},
    }
    # Go writes maps with their keys in order: the raw-data sort puts _doc before the time field.
    runs_panel = next(p for p in grafana.panels(dashboard()) if p["title"] == "Runs")
    raw = grafana.panel_request(runs_panel, datasource, RANGE, all_selected()).payload.split(b"\n")[1]
    assert raw.index(b'"_doc"') < raw.index(b'"end_date":{"order"')


# -- the dashboard itself ---------------------------------------------------------------------------


def mapping_field(path: str) -> tuple[str, str | None]:
    """The type of ``path`` in the report mapping and the nested path it lives under (a key under a
    flattened field is a keyword)."""
    properties, nested, kind = REPORT_MAPPING["properties"], None, None
    parts = path.split(".")
    for n, part in enumerate(parts):
        spec = properties.get(part)
        assert spec is not None, f"{path}: not in the report mapping"
        kind = spec.get("type", "object")
        if kind == "nested":
            nested = ".".join(parts[: n + 1])
        if kind == "flattened":
            return ("keyword" if n < len(parts) - 1 else "flattened"), nested
        properties = spec.get("properties", {})
    assert kind is not None
    return kind, nested


NUMBERS = ("double", "long", "integer", "float")
_LUCENE_FIELD = re.compile(r"(?<![\w.\\])([A-Za-z_][\w.]*):")


def test_the_dashboard_imports_with_a_datasource_variable_and_the_four_filters():
    board = dashboard()
    assert board["uid"] == "perf-reports" and board["schemaVersion"] >= 38 and board["id"] is None
    assert "__inputs" not in board  # nothing to map at import: the data source is a variable
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "elasticsearch"
    for name in QUERY_VARIABLES:
        variable = variables[name]
        assert variable["type"] == "query" and variable["multi"] and variable["includeAll"], name
        assert variable["datasource"] == {"type": "elasticsearch", "uid": "${datasource}"}, name
        definition = json.loads(variable["query"])
        assert definition["find"] == "terms" and mapping_field(definition["field"])[0] == "keyword", name
    queried = list(grafana.panels(board))
    ids = [p["id"] for p in board["panels"]] + [p["id"] for row in board["panels"] for p in row.get("panels", [])]
    assert len(ids) == len(set(ids)) and len(queried) >= 11
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    for panel in queried:
        assert panel["datasource"] == {"type": "elasticsearch", "uid": "${datasource}"}, panel["title"]
        for name in QUERY_VARIABLES:
            assert f"${name}" in panel["targets"][0]["query"], f"{panel['title']} ignores ${name}"


def test_every_field_a_panel_uses_is_in_the_report_mapping_with_a_type_that_fits():
    for panel in grafana.panels(dashboard()):
        title = panel["title"]
        for target in panel["targets"]:
            assert target["timeField"] == TIME_FIELD
            context: str | None = None  # the nested path the aggregations are in
            for field_ in _LUCENE_FIELD.findall(target["query"]):
                assert mapping_field(field_)[1] is None, f"{title}: {field_} is nested; a query string cannot reach it"
            terms = set()
            for bucket in target["bucketAggs"]:
                kind = bucket["type"]
                if kind == "filters":
                    for one in bucket["settings"]["filters"]:
                        for field_ in _LUCENE_FIELD.findall(one["query"].replace("_exists_:", "")):
                            assert mapping_field(field_)[1] == context, f"{title}: {field_} outside {context}"
                        for field_ in re.findall(r"_exists_:([\w.]+)", one["query"]):
                            assert mapping_field(field_)[1] == context, f"{title}: {field_} outside {context}"
                    continue
                kind_found, nested = mapping_field(bucket["field"])
                if kind == "nested":
                    assert kind_found == "nested" and context is None, title
                    context = bucket["field"]
                    continue
                assert nested == context, f"{title}: {bucket['field']} is not in the nested context {context}"
                if kind == "terms":
                    assert kind_found in ("keyword", *NUMBERS), f"{title}: terms on {bucket['field']} ({kind_found})"
                    terms.add(bucket["field"])
                else:
                    assert kind == "date_histogram" and kind_found == "date", f"{title}: {kind} on {bucket['field']}"
            for metric in target["metrics"]:
                if metric["type"] in ("count", "raw_data", "raw_document"):
                    continue
                kind_found, nested = mapping_field(metric["field"])
                assert kind_found in NUMBERS and nested == context, f"{title}: {metric['type']} of {metric['field']}"
            for term in re.findall(r"\{\{term ([^}]+)\}\}", target.get("alias", "")):
                assert term in terms, f"{title}: the alias names {term}, which no terms aggregation has"
        for transformation in panel.get("transformations", []):
            for name in transformation["options"].get("include", {}).get("names", []):
                mapping_field(name)
