"""The report index on a real Elasticsearch: mapping, idempotent writes, races, stored versions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import statistics
import uuid as uuidlib
from collections import defaultdict
from datetime import datetime, timezone

import pytest

from consumer.kubeburner import shape_kube_burner
from consumer.report import REPORT_FORMAT_VERSION
from consumer.sink import (
    ReportIndexMismatch,
    WriteOutcome,
    ensure_report_index,
    stored_versions,
    write_report,
)
from tests.support.consumer import run_cli
from tests.support.es import mapping_fields
from tests.support.kubeburner import run_documents

START = datetime(2024, 5, 2, 10, 0, 3, tzinfo=timezone.utc)
JOBS = {"node-density-heavy": 100, "garbage-collection": 100}
METRICS = {"podCPU": "namespace", "masterCPU": "instance", "apiserverRequests": "resource"}


def fingerprint(report: dict) -> str:
    block = {k: v for k, v in report["report"].items() if k not in ("built_at", "fingerprint")}
    return hashlib.sha256(json.dumps({**report, "report": block}, sort_keys=True).encode()).hexdigest()


def make_report(uuid: str, *, seed: int = 0, series: int = 3, free_form: int = 0) -> dict:
    """A report as the builder makes it. ``free_form`` adds that many random keys to every free-form
    part (run metadata, metric labels, job configs, legacy jobSummary metadata), with random values."""
    rng = random.Random(f"{uuid}-{seed}")

    def extra(prefix: str) -> dict:
        return {f"{prefix}{rng.randrange(10**6)}": rng.choice([rng.random(), f"v{rng.randrange(10**6)}", True])
                for _ in range(free_form)}

    jobs = shape_kube_burner(run_documents(uuid, START, JOBS, seed=seed)).jobs
    for job in jobs:
        job.setdefault("config", {}).update(extra("cfg"))
        job.setdefault("metadata", {}).update(extra("md"))
    metrics = [
        {
            "name": name,
            "profile": "control-plane",
            "query": f"sum(irate(x[2m])) by ({label})",
            "unit": "cores",
            "status": "ok",
            "warnings": [f"store {seed} unavailable"],
            "labels": {label: f"{label}-{rng.randrange(5)}", **extra("label_")},
            "avg": round(rng.uniform(0, 10), 3),
            "max": round(rng.uniform(10, 20), 3),
            "samples": rng.randint(1, 500),
        }
        for name, label in METRICS.items()
        for _ in range(series)
    ]
    if seed % 2:
        metrics.append({"name": "failing", "profile": "control-plane", "query": "x", "status": "error",
                        "error": "partial response"})
    report = {
        "uuid": uuid,
        "benchmark": "node-density-heavy",
        "job_status": "success",
        "start_date": "2024-05-02T10:00:03.123456+00:00",
        "end_date": "2024-05-02T11:00:03Z",
        "openshift_cluster_name": "perf-cluster",
        "openshift_cluster_version": "4.17.3",
        "openshift_cluster_version_parts": {"major": 4, "minor": 17, "patch": 3, "number": 4_017_003},
        "openshift_network_type": "OVNKubernetes",
        "openshift_platform": "AWS",
        "worker_count": 24,
        "metadata": {"uuid": uuid, "ciSystem": "PROW", "workerNodesCount": "24", **extra("meta_")},
        "jobs": jobs,
        "metrics": metrics,
        "links": {"kube_burner": f"https://grafana.example.com/d/kb?var-uuid={uuid}", "cluster": "https://g/d/c"},
        "report": {
            "status": "complete",
            "reasons": [],
            "profiles": [{"name": "control-plane", "version": 3}],
            "format_version": REPORT_FORMAT_VERSION,
            "built_at": datetime.now(timezone.utc).isoformat(),
        },
    }
    report["report"]["fingerprint"] = fingerprint(report)
    return report


def rebuilt(report: dict) -> dict:
    """The same report built again later: only the build time differs."""
    again = json.loads(json.dumps(report))
    again["report"]["built_at"] = datetime.now(timezone.utc).isoformat()
    return again


async def stored(es, index: str, uuid: str) -> dict:
    return (await es.get(index=index, id=uuid)).body


# -- the index ------------------------------------------------------------------------------------


async def test_ensure_report_index_is_idempotent_and_tolerates_concurrent_creators(es, settings):
    index = settings.report_index
    created = await asyncio.gather(*(ensure_report_index(es, index) for _ in range(6)))
    assert sorted(created) == [False] * 5 + [True]
    assert await ensure_report_index(es, index) is False

    mapping = (await es.indices.get_mapping(index=index))[index]["mappings"]
    properties = mapping["properties"]
    for name in ("uuid", "benchmark", "job_status", "openshift_cluster_name", "openshift_cluster_version",
                 "openshift_network_type", "openshift_platform"):
        assert properties[name]["type"] == "keyword"
    assert properties["start_date"]["type"] == properties["end_date"]["type"] == "date"
    assert properties["worker_count"]["type"] == "integer"
    assert properties["openshift_cluster_version_parts"]["properties"]["number"]["type"] == "long"
    assert properties["metadata"]["type"] == "flattened"
    assert properties["jobs"]["type"] == properties["metrics"]["type"] == "nested"
    assert properties["jobs"]["properties"]["latency_ms"]["properties"]["Ready"]["properties"]["P99"]["type"] == "double"
    assert properties["metrics"]["properties"]["labels"]["type"] == "flattened"
    assert mapping["dynamic"] == "false" and mapping["_meta"] == {"report_format_version": REPORT_FORMAT_VERSION}
    report = properties["report"]["properties"]
    assert report["built_at"]["type"] == "date" and report["fingerprint"]["type"] == "keyword"
    assert report["reasons"]["type"] == "keyword"
    assert report["profiles"]["properties"]["version"]["type"] == "integer"


async def test_an_index_made_for_another_report_format_is_refused_with_what_to_do(es, settings):
    index = settings.report_index
    # A format-1 index: job and metric names in field paths, no _meta.
    await es.indices.create(index=index, mappings={"properties": {"results": {"type": "object"},
                                                                  "metrics": {"type": "object"}}})
    with pytest.raises(ReportIndexMismatch) as refused:
        await ensure_report_index(es, index)
    message = str(refused.value)
    assert f"index {index} was made for report format 1" in message and "REPORT_INDEX" in message
    assert f"{index}-v{REPORT_FORMAT_VERSION}" in message and "\n" not in message

    code, _ = await run_cli(settings, "init")  # what an operator sees: one line, exit 2, nothing written
    assert code == 2
    assert "_meta" not in (await es.indices.get_mapping(index=index))[index]["mappings"]


async def test_first_write_creates_the_index_with_the_report_mapping(es, settings):
    report = make_report(str(uuidlib.uuid4()))
    assert await write_report(es, settings.report_index, report, settings.retry) is WriteOutcome.CREATED
    mapping = (await es.indices.get_mapping(index=settings.report_index))[settings.report_index]["mappings"]
    assert mapping["properties"]["metadata"]["type"] == "flattened"  # not a guessed dynamic object


# -- writing --------------------------------------------------------------------------------------


async def test_write_created_then_unchanged_then_updated(es, settings):
    index = settings.report_index
    await ensure_report_index(es, index)
    report = make_report(str(uuidlib.uuid4()))

    assert await write_report(es, index, report, settings.retry) is WriteOutcome.CREATED
    first = await stored(es, index, report["uuid"])
    assert first["_version"] == 1 and first["_source"] == report

    again = rebuilt(report)
    assert again["report"]["built_at"] != report["report"]["built_at"]
    assert await write_report(es, index, again, settings.retry) is WriteOutcome.UNCHANGED
    second = await stored(es, index, report["uuid"])
    assert (second["_version"], second["_seq_no"]) == (first["_version"], first["_seq_no"])
    assert second["_source"]["report"]["built_at"] == report["report"]["built_at"]

    changed = make_report(report["uuid"], seed=1)
    assert changed["report"]["fingerprint"] != report["report"]["fingerprint"]
    assert await write_report(es, index, changed, settings.retry) is WriteOutcome.UPDATED
    third = await stored(es, index, report["uuid"])
    assert third["_version"] == 2 and third["_source"] == changed


async def test_concurrent_writers_of_one_report_write_it_once(es, settings):
    index = settings.report_index
    await ensure_report_index(es, index)
    report = make_report(str(uuidlib.uuid4()))

    pair = await asyncio.gather(write_report(es, index, report, settings.retry),
                                write_report(es, index, rebuilt(report), settings.retry))
    assert sorted(o.value for o in pair) == ["created", "unchanged"]

    crowd = await asyncio.gather(*(write_report(es, index, rebuilt(report), settings.retry) for _ in range(8)))
    assert set(crowd) == {WriteOutcome.UNCHANGED}

    doc = await stored(es, index, report["uuid"])
    assert doc["_version"] == 1
    await es.indices.refresh(index=index)
    assert (await es.count(index=index))["count"] == 1


async def test_concurrent_writers_of_different_contents_both_land_in_order(es, settings):
    index = settings.report_index
    await ensure_report_index(es, index)
    uuid = str(uuidlib.uuid4())
    a, b = make_report(uuid, seed=0), make_report(uuid, seed=1)

    outcomes = await asyncio.gather(write_report(es, index, a, settings.retry), write_report(es, index, b, settings.retry))

    assert sorted(o.value for o in outcomes) == ["created", "updated"]
    doc = await stored(es, index, uuid)
    assert doc["_version"] == 2
    # The last writer's content, whole: the one that reported UPDATED.
    assert doc["_source"] == (a if outcomes[0] is WriteOutcome.UPDATED else b)


async def test_a_malformed_number_does_not_reject_the_report(es, settings):
    index = settings.report_index
    await ensure_report_index(es, index)
    await write_report(es, index, make_report(str(uuidlib.uuid4())), settings.retry)
    odd = make_report(str(uuidlib.uuid4()))
    odd["jobs"][0]["latency_ms"]["Ready"]["P99"] = "n/a"
    odd["jobs"][0]["start_date"] = "not a date"
    odd["metrics"][0]["avg"] = "NaN?"
    odd["worker_count"] = "many"
    odd["report"]["fingerprint"] = fingerprint(odd)

    assert await write_report(es, index, odd, settings.retry) is WriteOutcome.CREATED
    assert (await stored(es, index, odd["uuid"]))["_source"] == odd


# -- stored versions ------------------------------------------------------------------------------


async def test_stored_versions_returns_the_report_blocks(es, settings):
    index = settings.report_index
    await ensure_report_index(es, index)
    reports = [make_report(str(uuidlib.uuid4()), seed=n) for n in range(5)]
    for report in reports:
        await write_report(es, index, report, settings.retry)
    missing = str(uuidlib.uuid4())
    wanted = [r["uuid"] for r in reports] + [missing, reports[0]["uuid"]]

    versions = await stored_versions(es, index, wanted, chunk_size=2)

    assert versions == {r["uuid"]: r["report"] for r in reports}
    assert versions[reports[0]["uuid"]]["profiles"] == [{"name": "control-plane", "version": 3}]
    assert await stored_versions(es, f"{index}-absent", wanted) == {}
    assert await stored_versions(es, index, []) == {}


# -- the mapping stays bounded, and aggregatable ---------------------------------------------------


async def test_mapping_stays_bounded_however_free_form_the_reports(es, settings):
    index = settings.report_index
    await ensure_report_index(es, index)
    await write_report(es, index, make_report(str(uuidlib.uuid4())), settings.retry)
    before = (await es.indices.get_mapping(index=index))[index]["mappings"]

    for n in range(1, 21):
        report = make_report(str(uuidlib.uuid4()), seed=n, series=n * 10, free_form=n)
        assert await write_report(es, index, report, settings.retry) is WriteOutcome.CREATED
    after = (await es.indices.get_mapping(index=index))[index]["mappings"]

    assert mapping_fields(after["properties"]) == mapping_fields(before["properties"])
    assert after == before

    # The same reports under a guessed (dynamic) mapping grow it with every new key: the control.
    control = f"{index}-control"
    try:
        await es.index(index=control, document=make_report(str(uuidlib.uuid4())), refresh=True)
        base = mapping_fields((await es.indices.get_mapping(index=control))[control]["mappings"]["properties"])
        await es.index(index=control, document=make_report(str(uuidlib.uuid4()), seed=3, free_form=3), refresh=True)
        grown = mapping_fields((await es.indices.get_mapping(index=control))[control]["mappings"]["properties"])
        assert grown > base
    finally:
        await es.options(ignore_status=404).indices.delete(index=control)


async def test_dashboards_can_aggregate_job_latencies_and_metric_series(es, settings):
    index = settings.report_index
    await ensure_report_index(es, index)
    reports = [make_report(str(uuidlib.uuid4()), seed=n, series=8, free_form=2) for n in range(6)]
    for report in reports:
        await write_report(es, index, report, settings.retry)
    await es.indices.refresh(index=index)

    def job(report: dict, name: str) -> dict:
        return next(j for j in report["jobs"] if j["name"] == name)

    # P99 pod-ready latency of one job, across runs; elapsed time of another.
    expected_p99 = statistics.mean(job(r, "node-density-heavy")["latency_ms"]["Ready"]["P99"] for r in reports)
    # Mean of per-series averages by namespace label, through the nested series.
    by_namespace: dict[str, list[float]] = defaultdict(list)
    for report in reports:
        for series in report["metrics"]:
            if series["name"] == "podCPU":
                by_namespace[series["labels"]["namespace"]].append(series["avg"])

    response = await es.search(
        index=index,
        size=0,
        query={"range": {"start_date": {"gte": "2024-05-02T10:00:00Z", "lt": "2024-05-02T10:00:04Z"}}},
        aggs={
            "jobs": {
                "nested": {"path": "jobs"},
                "aggs": {
                    "heavy": {"filter": {"term": {"jobs.name": "node-density-heavy"}},
                              "aggs": {"p99": {"avg": {"field": "jobs.latency_ms.Ready.P99"}}}},
                    "gc": {"filter": {"term": {"jobs.name": "garbage-collection"}},
                           "aggs": {"elapsed": {"max": {"field": "jobs.elapsed_s"}}}},
                },
            },
            "series": {
                "nested": {"path": "metrics"},
                "aggs": {
                    "podCPU": {
                        "filter": {"term": {"metrics.name": "podCPU"}},
                        "aggs": {
                            "namespaces": {
                                "terms": {"field": "metrics.labels.namespace", "size": 100},
                                "aggs": {"cpu": {"avg": {"field": "metrics.avg"}}},
                            }
                        },
                    }
                },
            },
        },
    )
    aggs = response["aggregations"]
    assert response["hits"]["total"]["value"] == len(reports)
    assert aggs["jobs"]["heavy"]["p99"]["value"] == expected_p99
    assert aggs["jobs"]["gc"]["elapsed"]["value"] == max(job(r, "garbage-collection")["elapsed_s"] for r in reports)
    series = aggs["series"]["podCPU"]
    assert series["doc_count"] == sum(1 for r in reports for m in r["metrics"] if m["name"] == "podCPU")
    buckets = {b["key"]: (b["doc_count"], b["cpu"]["value"]) for b in series["namespaces"]["buckets"]}
    assert buckets.keys() == by_namespace.keys()
    for namespace, values in by_namespace.items():
        count, mean = buckets[namespace]
        assert count == len(values)
        assert abs(mean - statistics.mean(values)) < 1e-9
