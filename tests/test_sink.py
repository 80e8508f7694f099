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

from consumer.results import shape_kube_burner
from consumer.sink import (
    REPORT_MAPPING,
    WriteOutcome,
    ensure_report_index,
    stored_versions,
    write_report,
)
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

    results = shape_kube_burner(run_documents(uuid, START, JOBS, seed=seed))
    for job in results.values():
        job["jobSummary"]["jobConfig"].update(extra("cfg"))
        job["jobSummary"]["metadata"] = {"clusterName": "perf-cluster", **extra("md")}
    metrics = {
        name: {
            "profile": "control-plane",
            "query": f"sum(irate(x[2m])) by ({label})",
            "unit": "cores",
            "error": "partial response" if seed % 2 else "",
            "warnings": [f"store {seed} unavailable"],
            "series": [
                {
                    "labels": {label: f"{label}-{rng.randrange(5)}", **extra("label_")},
                    "avg": round(rng.uniform(0, 10), 3),
                    "max": round(rng.uniform(10, 20), 3),
                    "samples": rng.randint(1, 500),
                }
                for _ in range(series)
            ],
        }
        for name, label in METRICS.items()
    }
    report = {
        "uuid": uuid,
        "benchmark": "node-density-heavy",
        "job_status": "success",
        "start_date": "2024-05-02T10:00:03.123456+00:00",
        "end_date": "2024-05-02T11:00:03Z",
        "openshift_cluster_name": "perf-cluster",
        "openshift_cluster_version": "4.17.3",
        "openshift_network_type": "OVNKubernetes",
        "openshift_platform": "AWS",
        "metadata": {"uuid": uuid, "ciSystem": "PROW", "workerNodesCount": "24", **extra("meta_")},
        "results": results,
        "metrics": metrics,
        "links": {"kube_burner": f"https://grafana.example.com/d/kb?var-uuid={uuid}", "cluster": "https://g/d/c"},
        "report": {
            "status": "complete",
            "reasons": [],
            "profiles": [{"name": "control-plane", "version": 3}],
            "format_version": 1,
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


def count_fields(properties: dict) -> int:
    total = 0
    for spec in properties.values():
        total += 1 + len(spec.get("fields", {}))
        total += count_fields(spec.get("properties", {}))
    return total


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
    assert properties["metadata"]["type"] == "flattened"
    report = properties["report"]["properties"]
    assert report["built_at"]["type"] == "date" and report["fingerprint"]["type"] == "keyword"
    assert report["profiles"]["properties"]["version"]["type"] == "integer"
    assert [next(iter(t)) for t in mapping["dynamic_templates"]] == [next(iter(t)) for t in REPORT_MAPPING["dynamic_templates"]]


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
    odd["results"]["node-density-heavy"]["podLatencyQuantiles"]["Ready"]["P99"] = "n/a"
    odd["metrics"]["podCPU"]["series"][0]["avg"] = "NaN?"
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

    assert count_fields(after["properties"]) == count_fields(before["properties"])
    assert after == before

    # The same reports under a guessed (dynamic) mapping grow it with every new key: the control.
    control = f"{index}-control"
    try:
        await es.index(index=control, document=make_report(str(uuidlib.uuid4())), refresh=True)
        base = count_fields((await es.indices.get_mapping(index=control))[control]["mappings"]["properties"])
        await es.index(index=control, document=make_report(str(uuidlib.uuid4()), seed=3, free_form=3), refresh=True)
        grown = count_fields((await es.indices.get_mapping(index=control))[control]["mappings"]["properties"])
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

    # P99 pod-ready latency per job, across runs.
    p99 = "results.node-density-heavy.podLatencyQuantiles.Ready.P99"
    expected_p99 = statistics.mean(r["results"]["node-density-heavy"]["podLatencyQuantiles"]["Ready"]["P99"] for r in reports)
    # Mean of per-series averages by namespace label, through the nested series.
    by_namespace: dict[str, list[float]] = defaultdict(list)
    for report in reports:
        for series in report["metrics"]["podCPU"]["series"]:
            by_namespace[series["labels"]["namespace"]].append(series["avg"])

    response = await es.search(
        index=index,
        size=0,
        query={"range": {"start_date": {"gte": "2024-05-02T10:00:00Z", "lt": "2024-05-02T10:00:04Z"}}},
        aggs={
            "p99": {"avg": {"field": p99}},
            "elapsed": {"max": {"field": "results.garbage-collection.jobSummary.elapsedTime"}},
            "series": {
                "nested": {"path": "metrics.podCPU.series"},
                "aggs": {
                    "namespaces": {
                        "terms": {"field": "metrics.podCPU.series.labels.namespace", "size": 100},
                        "aggs": {"cpu": {"avg": {"field": "metrics.podCPU.series.avg"}}},
                    }
                },
            },
        },
    )
    aggs = response["aggregations"]
    assert response["hits"]["total"]["value"] == len(reports)
    assert aggs["p99"]["value"] == expected_p99
    assert aggs["elapsed"]["value"] == max(r["results"]["garbage-collection"]["jobSummary"]["elapsedTime"] for r in reports)
    assert aggs["series"]["doc_count"] == sum(len(r["metrics"]["podCPU"]["series"]) for r in reports)
    buckets = {b["key"]: (b["doc_count"], b["cpu"]["value"]) for b in aggs["series"]["namespaces"]["buckets"]}
    assert buckets.keys() == by_namespace.keys()
    for namespace, values in by_namespace.items():
        count, mean = buckets[namespace]
        assert count == len(values)
        assert abs(mean - statistics.mean(values)) < 1e-9
