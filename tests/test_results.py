"""Reading a run's kube-burner results: shaping (pure) and polling a real Elasticsearch."""

from __future__ import annotations

import asyncio
import random
import time
import uuid as uuidlib
from datetime import datetime, timezone

import pytest
from elastic_transport import ApiResponseMeta, ConnectionError as TransportConnectionError, ConnectionTimeout, HttpHeaders, NodeConfig
from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError

from consumer.elastic import connect, is_transient
from consumer.results import (
    DEFAULT_READERS,
    Readers,
    Results,
    gather_results,
    kube_burner_reader,
    read_kube_burner,
    shape_kube_burner,
)
from consumer.retry import RetryPolicy
from consumer.settings import ElasticsearchSettings
from producer_hooks.events import Run
from tests.support.es import index_docs
from tests.support.kubeburner import run_documents

START = datetime(2024, 5, 2, 10, 0, 3, tzinfo=timezone.utc)
STATS = ("P99", "P95", "P50", "max", "avg", "min")


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def run_of(uuid: str, benchmark: str = "node-density-heavy") -> Run:
    return Run(uuid=uuid, benchmark=benchmark, status="success", cluster_name="perf-cluster", start=START)


def expected_results(docs: list[dict], uuid: str) -> dict:
    """What the report must hold for ``uuid``, straight from the documents that were indexed."""
    out: dict = {}
    for doc in docs:
        if doc["uuid"] != uuid:
            continue
        job = doc.get("jobName") or doc["jobConfig"]["name"]
        if doc["metricName"] == "jobSummary":
            out.setdefault(job, {})["jobSummary"] = {k: v for k, v in doc.items() if k not in ("uuid", "metricName")}
        elif doc["metricName"] == "podLatencyQuantilesMeasurement":
            stats = {k: doc[k] for k in STATS}
            out.setdefault(job, {}).setdefault("podLatencyQuantiles", {})[doc["quantileName"]] = stats
    return out


# -- shaping, without a server --------------------------------------------------------------------


def test_shape_keeps_jobs_apart_and_ignores_other_documents():
    uuid = new_uuid()
    docs = run_documents(uuid, START, {"node-density-heavy": 120, "garbage-collection": 120})
    shaped = shape_kube_burner(docs)

    assert shaped == expected_results(docs, uuid)
    assert set(shaped) == {"node-density-heavy", "garbage-collection"}
    for job, entry in shaped.items():
        assert entry["jobSummary"]["jobConfig"]["name"] == job
        quantile_docs = [d for d in docs if d["metricName"] == "podLatencyQuantilesMeasurement" and d["jobName"] == job]
        assert {d["quantileName"]: d["P99"] for d in quantile_docs} == {
            q: stats["P99"] for q, stats in entry["podLatencyQuantiles"].items()
        }
        assert "uuid" not in entry["jobSummary"] and "metricName" not in entry["jobSummary"]


def test_shape_is_independent_of_document_order():
    docs = run_documents(new_uuid(), START, {"a": 1, "b": 2, "c": 3})
    shuffled = docs[:]
    random.Random(7).shuffle(shuffled)
    assert shape_kube_burner(shuffled) == shape_kube_burner(docs)
    assert list(shape_kube_burner(shuffled)) == ["a", "b", "c"]


def test_shape_of_legacy_documents_names_jobs_from_job_config():
    uuid = new_uuid()
    docs = run_documents(uuid, START, {"cluster-density": 500}, legacy=True)
    assert all("jobName" not in d for d in docs if d["metricName"] in ("jobSummary", "podLatencyQuantilesMeasurement"))
    shaped = shape_kube_burner(docs)
    assert shaped == expected_results(docs, uuid)
    assert list(shaped) == ["cluster-density"]


def test_shape_without_any_job_name_uses_default_and_latest_duplicate_wins():
    older = {"uuid": "u", "metricName": "jobSummary", "timestamp": "2024-05-02T10:00:00Z", "elapsedTime": 1.0}
    newer = {**older, "timestamp": "2024-05-02T10:05:00Z", "elapsedTime": 2.0}
    quantile = {"uuid": "u", "metricName": "podLatencyQuantilesMeasurement", "quantileName": "Ready",
                "P99": 9, "P95": 8, "P50": 5, "max": 12, "avg": 6}  # before v1.12: no min
    for docs in ([older, newer, quantile], [newer, quantile, older]):
        assert shape_kube_burner(docs) == {
            "default": {
                "jobSummary": {"timestamp": "2024-05-02T10:05:00Z", "elapsedTime": 2.0},
                "podLatencyQuantiles": {"Ready": {"P99": 9, "P95": 8, "P50": 5, "max": 12, "avg": 6}},
            }
        }


# -- the registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "benchmark",
    [
        "cluster-density", "cluster-density-v2", "cluster-density-ms", "node-density", "node-density-cni",
        "node-density-heavy", "pod-density", "pod-density-heavy", "pvc-density", "networkpolicy-multitenant",
        "networkpolicy-matchlabels", "crd-scale", "udn-density-pods", "web-burner-node-density",
        "web-burner-init", "virt-density", "max-namespaces", "concurrent-builds", "Cluster-Density-V2",
    ],
)
def test_every_kube_burner_workload_has_the_kube_burner_reader(benchmark):
    assert DEFAULT_READERS.find(benchmark) is read_kube_burner


@pytest.mark.parametrize("benchmark", ["uperf", "ingress-perf", "etcd-perf", "", None])
def test_other_benchmarks_have_no_reader(benchmark):
    assert DEFAULT_READERS.find(benchmark) is None


def test_exact_name_beats_glob_and_first_glob_wins():
    async def a(es, index, run):  # pragma: no cover - never called
        return Results({}, True)

    async def b(es, index, run):  # pragma: no cover
        return Results({}, True)

    readers = Readers().add("node-*", a).add(["node-density", "node-*"], b)
    assert readers.find("node-density") is b
    assert readers.find("node-density-cni") is a
    assert DEFAULT_READERS.add("cluster-density-v2", a).find("cluster-density-v2") is a
    assert DEFAULT_READERS.find("cluster-density-v2") is read_kube_burner  # add() copies


# -- transient errors -----------------------------------------------------------------------------


def api_error(status: int, cls: type[ApiError] = ApiError) -> ApiError:
    meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                           node=NodeConfig("http", "localhost", 9200))
    return cls(message=f"status {status}", meta=meta, body={})


@pytest.mark.parametrize(
    "exc, transient",
    [
        (api_error(429), True), (api_error(500), True), (api_error(503), True), (api_error(408), True),
        (api_error(400), False), (api_error(401), False), (api_error(403), False),
        (api_error(404, NotFoundError), False), (api_error(409), False),
        (TransportConnectionError("refused"), True), (ConnectionTimeout("slow"), True), (ValueError("x"), False),
    ],
)
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


async def test_is_transient_on_real_server_errors(es):
    with pytest.raises(NotFoundError) as missing:
        await es.get(index=f"missing-{uuidlib.uuid4().hex}", id="x")
    assert not is_transient(missing.value)

    dead = connect(ElasticsearchSettings(url="http://127.0.0.1:1", timeout_s=2))
    try:
        with pytest.raises(TransportConnectionError) as refused:
            await dead.search(index="x")
        assert is_transient(refused.value)
    finally:
        await dead.close()


# -- reading from Elasticsearch -------------------------------------------------------------------


async def test_results_equal_the_indexed_documents(es, settings):
    uuid, other = new_uuid(), new_uuid()
    docs = run_documents(uuid, START, {"node-density-heavy": 150, "garbage-collection": 150})
    # Another run of the same workload in the same index, and one whose uuid extends ours.
    noise = run_documents(other, START, {"node-density-heavy": 9}, seed=1) + run_documents(
        f"{uuid}-rerun", START, {"node-density-heavy": 9}, seed=2
    )
    await index_docs(es, settings.results_index, docs + noise)

    results = await gather_results(es, settings.results_index, run_of(uuid), 10, settings.retry)

    assert results.complete and results.reasons == ()
    assert results.data == expected_results(docs, uuid)
    assert set(results.data) == {"node-density-heavy", "garbage-collection"}


async def test_legacy_documents_are_read(es, settings):
    uuid = new_uuid()
    docs = run_documents(uuid, START, {"cluster-density": 500}, legacy=True)
    await index_docs(es, settings.results_index, docs)

    results = await gather_results(es, settings.results_index, run_of(uuid, "cluster-density"), 10, settings.retry)

    assert results.complete
    assert results.data == expected_results(docs, uuid)
    assert list(results.data) == ["cluster-density"]


async def test_results_span_many_pages(es, settings):
    uuid = new_uuid()
    # 250 jobs: 1,250 jobSummary and quantile documents, more than one default page (1,000),
    # among 1,000 other documents of the run that the query leaves out.
    jobs = {f"job-{n:03d}": n + 1 for n in range(250)}
    docs = run_documents(uuid, START, jobs)
    await index_docs(es, settings.results_index, docs)
    expected = expected_results(docs, uuid)
    run = run_of(uuid, "cluster-density-v2")

    results = await gather_results(es, settings.results_index, run, 10, settings.retry)
    assert results.complete
    assert len(results.data) == 250
    assert results.data == expected

    # The same through a registry whose kube-burner reader pages by 7: 179 pages.
    small_pages = DEFAULT_READERS.add("cluster-density-v2", kube_burner_reader(7))
    paged = await gather_results(es, settings.results_index, run, 10, settings.retry, readers=small_pages)
    assert paged.data == expected


async def test_uuid_mapped_as_keyword_or_text_across_indices(es, settings):
    """One index pattern, two mappings: keyword ``uuid`` in one index, text + .keyword in the other."""
    uuid = new_uuid()
    keyword_index, text_index = f"{settings.results_index}-keyword", f"{settings.results_index}-text"
    docs = run_documents(uuid, START, {"old-job": 10, "new-job": 10})
    old = [d for d in docs if d.get("jobName") == "old-job"]
    new = [d for d in docs if d.get("jobName") == "new-job"]
    try:
        await es.indices.create(
            index=keyword_index,
            mappings={"properties": {"uuid": {"type": "keyword"}, "metricName": {"type": "keyword"}}},
        )
        await index_docs(es, keyword_index, new + run_documents(new_uuid(), START, {"new-job": 3}))
        await index_docs(es, text_index, old + run_documents(new_uuid(), START, {"old-job": 3}))  # dynamic: text
        mapping = await es.indices.get_mapping(index=text_index)
        assert mapping[text_index]["mappings"]["properties"]["uuid"]["type"] == "text"

        results = await gather_results(es, f"{settings.results_index}-*", run_of(uuid), 10, settings.retry)

        assert results.complete
        assert results.data == expected_results(docs, uuid)
        assert set(results.data) == {"old-job", "new-job"}
    finally:
        await es.options(ignore_status=404).indices.delete(index=f"{keyword_index},{text_index}")


async def test_results_indexed_after_the_call_started_are_found(es, settings):
    uuid = new_uuid()
    docs = run_documents(uuid, START, {"node-density": 200})
    delay = 3.0

    async def index_late():
        await asyncio.sleep(delay)
        await index_docs(es, settings.results_index, docs)  # the index does not even exist before

    started = time.monotonic()
    late = asyncio.create_task(index_late())
    results = await gather_results(es, settings.results_index, run_of(uuid, "node-density"), 30, settings.retry)
    elapsed = time.monotonic() - started
    await late

    assert results.complete and results.reasons == ()
    assert results.data == expected_results(docs, uuid)
    assert delay <= elapsed < 30


async def test_results_that_never_come_are_incomplete_after_the_deadline(es, settings):
    uuid = new_uuid()
    # The measurement was indexed but the run never wrote its jobSummary.
    docs = [d for d in run_documents(uuid, START, {"node-density": 10}) if d["metricName"] != "jobSummary"]
    await index_docs(es, settings.results_index, docs)

    started = time.monotonic()
    results = await gather_results(es, settings.results_index, run_of(uuid, "node-density"), 2.5, settings.retry)
    elapsed = time.monotonic() - started

    assert not results.complete
    assert results.reasons == (f"no jobSummary for uuid {uuid} by the results deadline",)
    assert results.data == expected_results(docs, uuid)  # what exists is kept
    assert "jobSummary" not in results.data["node-density"]
    assert 2.5 <= elapsed < 2.5 + 5


async def test_missing_index_and_no_results_give_a_reason(es, settings):
    uuid = new_uuid()
    results = await gather_results(es, settings.results_index, run_of(uuid, "node-density"), 0, settings.retry)
    assert results == Results({}, complete=False, reasons=(f"no jobSummary for uuid {uuid} by the results deadline",))


async def test_unknown_benchmark_returns_at_once(es, settings):
    started = time.monotonic()
    results = await gather_results(es, settings.results_index, run_of(new_uuid(), "uperf"), 30, settings.retry)
    assert results == Results({}, complete=False, reasons=("no results reader for benchmark 'uperf'",))
    assert time.monotonic() - started < 1


async def test_unreachable_elasticsearch_raises_after_the_retries():
    dead = connect(ElasticsearchSettings(url="http://127.0.0.1:1", timeout_s=2))
    policy = RetryPolicy(attempts=3, max_wait_s=0.2, first_wait_s=0.05)
    calls = 0

    async def counting(es: AsyncElasticsearch, index: str, run: Run) -> Results:
        nonlocal calls
        calls += 1
        return await read_kube_burner(es, index, run)

    readers = Readers().add("*", counting)
    try:
        with pytest.raises(TransportConnectionError):
            await gather_results(dead, "ripsaw-kube-burner*", run_of(new_uuid()), 30, policy, readers=readers)
    finally:
        await dead.close()
    assert calls == 3
