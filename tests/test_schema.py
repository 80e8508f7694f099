"""Report schema 2 on the real Elasticsearch, with the product's mapping: bounded whatever the names,
and answering the questions dashboards ask in one query each."""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from consumer.kubeburner import capped, shape_kube_burner
from consumer.metrics import PlannedQuery, entries, label_values
from consumer.profiles import Query
from consumer.report import build_report
from consumer.sink import REPORT_MAPPING, WriteOutcome, ensure_report_index, write_report
from consumer.thanos import QueryResult, SeriesSummary
from producer_hooks.events import make_event
from tests.support.es import mapping_fields
from tests.support.kubeburner import LAYOUTS, kube_burner_run
from tests.support.metadata import run_doc

REPORTS = 20
JOBS_PER_REPORT = 50  # 1,000 distinct job names in all
METRICS_PER_REPORT = 10  # 200 distinct metric names in all, plus one every report has
VERSIONS = ("4.9.0", "4.14.3", "4.18.1", "4.10.0-0.nightly-2024-05-01-000000")
BENCHMARKS = ("cluster-density-v2", "node-density")
NAMESPACES = ("openshift-etcd", "openshift-kube-apiserver", "openshift-ovn-kubernetes")
ODD_NAMES = (".", ".hidden", "x", "x.jobSummary.elapsedTime", "j" * 40_000, "latency_ms.Ready.P99", "jobs")
START = datetime(2024, 5, 2, 10, tzinfo=timezone.utc)
BUILT = datetime(2024, 5, 3, tzinfo=timezone.utc)


def job_names(n: int) -> dict[str, int]:
    names = [f"job-{n:02d}-{k:02d}" for k in range(JOBS_PER_REPORT)]
    if n == 0:
        names[: len(ODD_NAMES)] = ODD_NAMES
    if n == 1:
        names[-1] = "node-density"  # the job the README's queries name
    return {name: 10 + k for k, name in enumerate(names)}


def series_of(rng: random.Random, name: str, n: int) -> list[SeriesSummary]:
    # Every series also carries a label whose *name* is new, as label sets do across metrics.
    return [SeriesSummary({"namespace": namespace, f"label_{name}_{n}": "v"}, round(rng.uniform(0, 4), 6),
                          round(rng.uniform(4, 8), 6), rng.randint(1, 400)) for namespace in NAMESPACES]


def make_reports() -> tuple[list[dict], list[dict]]:
    """The reports, built by the product from kube-burner documents and metric summaries, and
    what went into each (for the expected values)."""
    reports, inputs = [], []
    rng = random.Random(9)
    for n in range(REPORTS):
        uuid = f"schema-{n:02d}"
        start = START + timedelta(hours=n)
        benchmark = BENCHMARKS[n % 2]
        doc = run_doc(uuid, cluster=f"perf-{n % 3}", benchmark=benchmark, status="success",
                      start=int(start.timestamp()), end=int(start.timestamp()) + 3600)
        doc["cluster_version"] = VERSIONS[n % len(VERSIONS)]
        run = kube_burner_run(uuid, start, job_names(n), layout=LAYOUTS[n % len(LAYOUTS)], seed=n)
        shaped = shape_kube_burner(run.docs)
        assert shaped.reasons == []
        results: dict[str, list[SeriesSummary]] = {"podCPU": series_of(rng, "podCPU", n)}
        results.update({f"metric-{n:02d}-{m}": series_of(rng, f"m{m}", n) for m in range(METRICS_PER_REPORT)})
        metrics = [row for name, series in results.items()
                   for row in entries(PlannedQuery("control-plane", Query(name, "sum(x{$cluster})", "cores"),
                                                   "sum(x)"), QueryResult(series, []))]
        report = build_report(make_event(doc), results={"jobs": shaped.jobs}, metrics=metrics, links={},
                              profiles=[("control-plane", 1)], reasons=["apiLatency: bad_data"] if n == 2 else [],
                              built_at=BUILT)
        reports.append(report)
        inputs.append({"run": run, "benchmark": benchmark, "version": doc["cluster_version"], "series": results})
    return reports, inputs


async def test_a_thousand_job_names_and_two_hundred_metric_names_add_no_field_and_stay_searchable(es, settings):
    index = settings.report_index
    await ensure_report_index(es, index)
    empty = (await es.indices.get_mapping(index=index))[index]["mappings"]
    reports, inputs = make_reports()
    assert len({job["name"] for r in reports for job in r["jobs"]}) == REPORTS * JOBS_PER_REPORT
    assert len({m["name"] for r in reports for m in r["metrics"]}) == REPORTS * METRICS_PER_REPORT + 1

    for report in reports:
        assert await write_report(es, index, report, settings.retry) is WriteOutcome.CREATED
    await es.indices.refresh(index=index)

    mapping = (await es.indices.get_mapping(index=index))[index]["mappings"]
    assert mapping == empty  # not one field added by 1,000 job names, 200 metric names, 4,000 label names
    fields = mapping_fields(mapping["properties"])
    assert fields == mapping_fields(REPORT_MAPPING["properties"]) and fields < 250  # fixed, and far from 1,000
    assert (await es.count(index=index))["count"] == REPORTS

    # The last report's numbers, found by value under the names they came with.
    last, last_input = reports[-1], inputs[-1]
    job = last_input["run"].jobs[-1]
    found = await es.search(index=index, query={"nested": {"path": "jobs", "query": {"bool": {"filter": [
        {"term": {"jobs.name": job.name}},
        {"term": {"jobs.latency_ms.Ready.P99": job.latency["Ready"]["P99"]}},
        {"term": {"jobs.elapsed_s": job.elapsed}},
    ]}}}})
    assert [hit["_id"] for hit in found["hits"]["hits"]] == [last["uuid"]]
    name, series = f"metric-{REPORTS - 1:02d}-{METRICS_PER_REPORT - 1}", inputs[-1]["series"][f"metric-{REPORTS - 1:02d}-{METRICS_PER_REPORT - 1}"]
    found = await es.search(index=index, query={"nested": {"path": "metrics", "query": {"bool": {"filter": [
        {"term": {"metrics.name": name}}, {"term": {"metrics.label_values": label_values(series[0].labels)}},
        {"term": {"metrics.avg": series[0].avg}}, {"term": {"metrics.samples": series[0].samples}},
    ]}}}})
    assert [hit["_id"] for hit in found["hits"]["hits"]] == [last["uuid"]]

    # The odd names of the first report are values like any other.
    for odd in ODD_NAMES:
        hits = await es.search(index=index, query={"nested": {"path": "jobs", "query": {"term": {"jobs.name": capped(odd)}}}})
        assert [hit["_id"] for hit in hits["hits"]["hits"]] == [reports[0]["uuid"]], odd


async def test_version_ranges_order_numerically(es, settings):
    index = settings.report_index
    reports, inputs = make_reports()
    for report in reports:
        await write_report(es, index, report, settings.retry)
    await es.indices.refresh(index=index)

    async def uuids(query: dict) -> set[str]:
        found = await es.search(index=index, query=query, size=100, source=False)
        return {hit["_id"] for hit in found["hits"]["hits"]}

    def expected(low: tuple[int, int], high: tuple[int, int] | None = None) -> set[str]:
        def minor(version: str) -> tuple[int, int]:
            major, minor_, *_ = version.split("-")[0].split(".")
            return int(major), int(minor_)
        return {r["uuid"] for r, i in zip(reports, inputs, strict=False)
                if minor(i["version"]) >= low and (high is None or minor(i["version"]) < high)}

    at_least_4_9 = await uuids({"range": {"openshift_cluster_version_parts.number": {"gte": 4_009_000}}})
    assert at_least_4_9 == expected((4, 9)) == {r["uuid"] for r in reports}  # 4.14 and 4.18 included
    assert await uuids({"range": {"openshift_cluster_version_parts.number": {"gte": 4_010_000, "lt": 4_015_000}}}) \
        == expected((4, 10), (4, 15))  # 4.10 and 4.14, not 4.9 nor 4.18
    assert await uuids({"bool": {"filter": [{"term": {"openshift_cluster_version_parts.major": 4}},
                                            {"range": {"openshift_cluster_version_parts.minor": {"gt": 9}}}]}}) \
        == expected((4, 10))
    # The control: as a string, "4.14" sorts before "4.9", so the keyword range misses it.
    assert await uuids({"range": {"openshift_cluster_version": {"gte": "4.9"}}}) == expected((4, 9), (4, 10))


async def test_nested_aggregations_across_jobs_and_across_metrics_return_the_input_numbers(es, settings):
    index = settings.report_index
    reports, inputs = make_reports()
    for report in reports:
        await write_report(es, index, report, settings.retry)
    await es.indices.refresh(index=index)

    # Max P99 Ready over all jobs of each benchmark; mean elapsed of all jobs.
    max_p99: dict[str, int] = defaultdict(int)
    elapsed: list[float] = []
    for i in inputs:
        for job in i["run"].jobs:
            max_p99[i["benchmark"]] = max(max_p99[i["benchmark"]], job.latency["Ready"]["P99"])
            elapsed.append(job.elapsed)
    # Mean of podCPU's per-series average, per series (its label values), over all runs: the
    # keyword every store groups by (a label inside the free-form labels is Elasticsearch's only).
    cpu: dict[str, list[float]] = defaultdict(list)
    for i in inputs:
        for series in i["series"]["podCPU"]:
            cpu[label_values(series.labels)].append(series.avg)

    response = await es.search(index=index, size=0, aggs={
        "benchmarks": {"terms": {"field": "benchmark"}, "aggs": {
            "jobs": {"nested": {"path": "jobs"}, "aggs": {"p99": {"max": {"field": "jobs.latency_ms.Ready.P99"}}}}}},
        "jobs": {"nested": {"path": "jobs"}, "aggs": {"elapsed": {"avg": {"field": "jobs.elapsed_s"}}}},
        "metrics": {"nested": {"path": "metrics"}, "aggs": {"podCPU": {
            "filter": {"term": {"metrics.name": "podCPU"}},
            "aggs": {"namespaces": {"terms": {"field": "metrics.label_values"},
                                    "aggs": {"cpu": {"avg": {"field": "metrics.avg"}}}}}}}},
    })
    aggs = response["aggregations"]
    assert {b["key"]: b["jobs"]["p99"]["value"] for b in aggs["benchmarks"]["buckets"]} == max_p99
    assert aggs["jobs"]["doc_count"] == REPORTS * JOBS_PER_REPORT
    assert abs(aggs["jobs"]["elapsed"]["value"] - statistics.mean(elapsed)) < 1e-6
    buckets = aggs["metrics"]["podCPU"]["namespaces"]["buckets"]
    assert {b["key"]: b["doc_count"] for b in buckets} == {ns: len(values) for ns, values in cpu.items()}
    for bucket in buckets:
        assert abs(bucket["cpu"]["value"] - statistics.mean(cpu[bucket["key"]])) < 1e-9


def readme_panel_queries() -> list[tuple[str, dict]]:
    """The README's "queries for common panels": (comment, search body) pairs."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split("Queries for common panels", 1)[1].split("```jsonc", 1)[1].split("```", 1)[0]
    queries = []
    for chunk in re.split(r"\n(?=// )", block.strip()):
        comment, _, body = chunk.partition("\n")
        queries.append((comment.lstrip("/ "), json.loads(body)))
    return queries


def metric_values(aggregations: dict) -> list:
    """Every metric aggregation's ``value`` in a response's aggregation tree."""
    found = []
    for key, value in aggregations.items():
        if key == "value":
            found.append(value)
        elif isinstance(value, dict):
            found += metric_values(value)
        elif isinstance(value, list):
            for item in value:
                found += metric_values(item) if isinstance(item, dict) else []
    return found


async def test_the_readme_panel_queries_run_and_find_data(es, settings):
    index = settings.report_index
    reports, _ = make_reports()
    for report in reports:
        await write_report(es, index, report, settings.retry)
    await es.indices.refresh(index=index)
    queries = readme_panel_queries()
    assert len(queries) >= 7

    for comment, body in queries:
        # The README's placeholders, made to fit the reports above.
        text = json.dumps(body).replace("now-30d", "2024-01-01").replace("0b8a4e70-...", reports[1]["uuid"])
        response = await es.search(index=index, **json.loads(text), size=10)
        assert response["hits"]["total"]["value"] > 0, comment
        if "aggregations" in body:
            assert [v for v in metric_values(response["aggregations"]) if v is not None], comment
    inner = response["hits"]["hits"][0]["inner_hits"]["jobs"]["hits"]["hits"]
    assert [hit["_source"]["latency_ms"]["Ready"]["P99"] for hit in inner] == [
        next(j for j in reports[1]["jobs"] if j["name"] == "node-density")["latency_ms"]["Ready"]["P99"]]
