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
from consumer.kubeburner import ATTRIBUTION_SLACK_NS, MAX_NAME_CHARS, epoch_ns, shape_kube_burner
from consumer.results import (
    DEFAULT_READERS,
    Readers,
    Results,
    gather_results,
    kube_burner_reader,
    read_kube_burner,
)
from consumer.retry import RetryPolicy
from consumer.settings import ElasticsearchSettings
from producer_hooks.events import Run
from tests.support.es import index_docs
from tests.support.kubeburner import LAYOUTS, compared, expected_jobs, kube_burner_run, rfc3339_nano

START = datetime(2024, 5, 2, 10, 0, 3, tzinfo=timezone.utc)
STATS = ("P99", "P95", "P50", "max", "avg", "min")


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def run_of(uuid: str, benchmark: str = "node-density-heavy") -> Run:
    return Run(uuid=uuid, benchmark=benchmark, status="success", cluster_name="perf-cluster", start=START)


def quantile_docs(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["metricName"] == "podLatencyQuantilesMeasurement"]


# -- shaping, without a server --------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_each_job_its_summary_and_its_latencies(layout):
    run = kube_burner_run(new_uuid(), START, {"node-density-heavy": 120, "cluster-density": 60,
                                             "garbage-collection": 1}, layout=layout)
    if layout == "v1.10":
        assert not any("jobName" in d or "jobConfig" in d for d in quantile_docs(run.docs))  # named by time only
    assert not any("jobName" in d for d in run.docs if d["metricName"] == "jobSummary")

    shaped = shape_kube_burner(run.docs)

    assert compared(shaped.jobs) == expected_jobs(run)
    assert shaped.summaries == 3 and shaped.reasons == []
    by_name = {job["name"]: job for job in shaped.jobs}
    assert by_name["garbage-collection"]["phase"] == "gc" and "latency_ms" not in by_name["garbage-collection"]
    assert by_name["cluster-density"]["config"]["jobIterations"] == 60
    conditions = 6 if layout == "v2" else 4
    assert all(len(by_name[name]["latency_ms"]) == conditions for name in ("node-density-heavy", "cluster-density"))
    assert ("min" in by_name["cluster-density"]["latency_ms"]["Ready"]) is (layout == "v2")
    # Cluster metadata, nested (v1.9-v1.10) or at the top level (v1.11+), ends up in the same place.
    assert by_name["cluster-density"]["metadata"]["ocpVersion"] == "4.17.3"


def test_incremental_load_keeps_every_step_in_order_with_its_own_latencies():
    run = kube_burner_run(new_uuid(), START, {"node-density": 300, "garbage-collection": 1}, incremental={"node-density": 3})
    steps = [d for d in run.docs if d["metricName"] == "jobSummary" and "incrementalLoadUUID" in d]
    assert len(steps) == 3

    shaped = shape_kube_burner(run.docs)

    assert compared(shaped.jobs) == expected_jobs(run)
    assert [(j["phase"], j.get("step")) for j in shaped.jobs] == [
        ("before", None), ("step", 1), ("step", 2), ("step", 3), ("after", None), ("gc", None)]
    assert [j["iterations"] for j in shaped.jobs if j["phase"] == "step"] == [100, 200, 300]
    assert [j["step_id"] for j in shaped.jobs if j["phase"] == "step"] == [d["incrementalLoadUUID"] for d in steps]
    ready = [j["latency_ms"]["Ready"]["P99"] for j in shaped.jobs if j["phase"] == "step"]
    assert ready == [t.latency["Ready"]["P99"] for t in run.jobs if t.phase == "step"]


def test_shape_is_independent_of_document_order():
    docs = kube_burner_run(new_uuid(), START, {"a": 1, "b": 2, "c": 3}, layout="v1.10").docs
    shuffled = docs[:]
    random.Random(7).shuffle(shuffled)
    assert shape_kube_burner(shuffled) == shape_kube_burner(docs)
    assert [job["name"] for job in shape_kube_burner(shuffled).jobs] == ["a", "b", "c"]


def test_quantiles_naming_no_job_and_outside_every_window_are_kept_without_a_name():
    run = kube_burner_run(new_uuid(), START, {"a": 5, "b": 5}, layout="v1.10")
    summaries = [d for d in run.docs if d["metricName"] == "jobSummary"]
    late = epoch_ns(summaries[-1]["endTimestamp"]) + ATTRIBUTION_SLACK_NS + 10**9
    stray = [{**d, "timestamp": rfc3339_nano(late)} for d in quantile_docs(run.docs)[:4]]  # one more set, long after

    shaped = shape_kube_burner(run.docs + stray)

    assert compared(shaped.jobs[:2]) == expected_jobs(run)  # the jobs keep their own
    [unnamed] = shaped.jobs[2:]
    assert "name" not in unnamed and unnamed["attribution"] == ["none"]
    assert {c: s["P99"] for c, s in unnamed["latency_ms"].items()} == {d["quantileName"]: d["P99"] for d in stray}
    assert shaped.reasons == ["4 pod latency quantile documents name no job and no single job's time window "
                              "holds them: kept in job entries without a name"]


def test_quantiles_without_any_summary_are_not_given_an_invented_job():
    run = kube_burner_run(new_uuid(), START, {"a": 5}, layout="v1.10")
    shaped = shape_kube_burner(quantile_docs(run.docs))
    [unnamed] = shaped.jobs
    assert "name" not in unnamed and shaped.summaries == 0
    assert unnamed["latency_ms"] == run.jobs[0].latency
    assert "no jobSummary to match them with" in shaped.reasons[0]


def test_a_re_indexed_document_counts_once_and_the_later_wins():
    older = {"uuid": "u", "metricName": "jobSummary", "timestamp": "2024-05-02T10:00:00Z",
             "endTimestamp": "2024-05-02T10:01:00Z", "elapsedTime": 1.0, "jobConfig": {"name": "j"}}
    newer = {**older, "timestamp": "2024-05-02T10:05:00.5Z", "endTimestamp": "2024-05-02T10:06:00Z", "elapsedTime": 2.0}
    quantile = {"uuid": "u", "metricName": "podLatencyQuantilesMeasurement", "quantileName": "Ready", "jobName": "j",
                "timestamp": "2024-05-02T10:06:00.000000001Z", "P99": 9, "P95": 8, "P50": 5, "max": 12, "avg": 6}
    again = {**quantile, "timestamp": "2024-05-02T10:06:00.000000002Z", "P99": 10}
    for docs in ([older, newer, quantile, again], [again, newer, quantile, older, older]):
        shaped = shape_kube_burner(docs)
        assert compared(shaped.jobs) == [{
            "name": "j", "phase": "job", "start_date": "2024-05-02T10:05:00.5Z", "end_date": "2024-05-02T10:06:00Z",
            "elapsed_s": 2.0, "latency_ms": {"Ready": {"P99": 10, "P95": 8, "P50": 5, "max": 12, "avg": 6}}}]


def test_odd_job_and_condition_names_are_values_and_long_ones_are_capped():
    names = [".", ".hidden", "x", "x.jobSummary.elapsedTime", "n" * 40_000, "n" * 40_001]
    docs = []
    for n, name in enumerate(names):
        docs.append({"uuid": "u", "metricName": "jobSummary", "timestamp": f"2024-05-02T10:0{n}:00Z",
                     "endTimestamp": f"2024-05-02T10:0{n}:30Z", "elapsedTime": 30 + n, "jobConfig": {"name": name}})
        for condition in ("Ready", "VMIReady"):
            docs.append({"uuid": "u", "metricName": "podLatencyQuantilesMeasurement", "quantileName": condition,
                         "jobName": name, "timestamp": f"2024-05-02T10:0{n}:31Z", "P99": n, "P50": n})
    jobs = shape_kube_burner(docs).jobs
    assert [job["elapsed_s"] for job in jobs] == [30 + n for n in range(len(names))]
    assert [job["name"] for job in jobs[:4]] == names[:4]
    long_a, long_b = jobs[4]["name"], jobs[5]["name"]
    assert len(long_a) == len(long_b) == MAX_NAME_CHARS and long_a != long_b
    assert long_a.startswith("nnn") and "40000 chars" in long_a and "40001 chars" in long_b
    assert all(job["latency_ms"] == {"Ready": {"P99": n, "P50": n}} for n, job in enumerate(jobs))
    assert all(job["latency_other_ms"] == [{"condition": "VMIReady", "P99": n, "P50": n}] for n, job in enumerate(jobs))


def test_timestamps_keep_nanoseconds_and_go_zero_time_means_unset():
    assert epoch_ns("2024-05-02T10:00:03.123456789Z") - epoch_ns("2024-05-02T10:00:03.123456788Z") == 1
    assert epoch_ns("2024-05-02T12:00:03+02:00") == epoch_ns("2024-05-02T10:00:03Z")
    assert epoch_ns("0001-01-01T00:00:00Z") is None and epoch_ns("yesterday") is None and epoch_ns(5) is None
    run = kube_burner_run(new_uuid(), START, {"a": 1}, layout="v1.10")
    [job] = shape_kube_burner(run.docs).jobs
    assert "churn_start_date" not in job and "churn_end_date" not in job


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
    run = kube_burner_run(uuid, START, {"node-density-heavy": 150, "garbage-collection": 1})
    # Another run of the same workload in the same index, and one whose uuid extends ours.
    noise = kube_burner_run(other, START, {"node-density-heavy": 9}, seed=1).docs + kube_burner_run(
        f"{uuid}-rerun", START, {"node-density-heavy": 9}, seed=2
    ).docs
    await index_docs(es, settings.results_index, run.docs + noise)

    results = await gather_results(es, settings.results_index, run_of(uuid), 10, settings.retry)

    assert results.complete and results.reasons == ()
    assert compared(results.data["jobs"]) == expected_jobs(run)
    assert [job["name"] for job in results.data["jobs"]] == ["node-density-heavy", "garbage-collection"]


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_every_layout_read_back_from_elasticsearch_gives_each_job_its_numbers(es, settings, layout):
    uuid = new_uuid()
    incremental = {"node-density-cni": 3} if layout == "v2" else None
    run = kube_burner_run(uuid, START, {"node-density": 40, "node-density-cni": 90, "garbage-collection": 1},
                          layout=layout, incremental=incremental)
    await index_docs(es, settings.results_index, run.docs)  # kube-burner's indexer: no mapping

    results = await gather_results(es, settings.results_index, run_of(uuid, "node-density"), 10, settings.retry)

    assert results.complete and results.reasons == ()
    jobs = results.data["jobs"]
    assert compared(jobs) == expected_jobs(run)
    for job, truth in zip(jobs, run.jobs):
        assert (job["name"], job.get("step"), job["elapsed_s"]) == (truth.name, truth.step, truth.elapsed)
        for condition, stats in truth.latency.items():
            assert job["latency_ms"][condition] == stats
    if incremental:
        assert [(j["phase"], j.get("step")) for j in jobs if j["name"] == "node-density-cni"] == [
            ("before", None), ("step", 1), ("step", 2), ("step", 3), ("after", None)]


async def test_results_span_many_pages(es, settings):
    uuid = new_uuid()
    # 250 jobs: 1,250 jobSummary and quantile documents, more than one default page (1,000),
    # among 1,000 other documents of the run that the query leaves out.
    run = kube_burner_run(uuid, START, {f"job-{n:03d}": n + 1 for n in range(250)}, layout="v1.11")
    await index_docs(es, settings.results_index, run.docs)
    expected = expected_jobs(run)
    benchmark = run_of(uuid, "cluster-density-v2")

    results = await gather_results(es, settings.results_index, benchmark, 10, settings.retry)
    assert results.complete
    assert len(results.data["jobs"]) == 250
    assert compared(results.data["jobs"]) == expected

    # The same through a registry whose kube-burner reader pages by 7: 179 pages.
    small_pages = DEFAULT_READERS.add("cluster-density-v2", kube_burner_reader(7))
    paged = await gather_results(es, settings.results_index, benchmark, 10, settings.retry, readers=small_pages)
    assert paged.data == results.data


async def test_uuid_mapped_as_keyword_or_text_across_indices(es, settings):
    """One index pattern, two mappings: keyword ``uuid`` in one index, text + .keyword in the other."""
    uuid = new_uuid()
    keyword_index, text_index = f"{settings.results_index}-keyword", f"{settings.results_index}-text"
    run = kube_burner_run(uuid, START, {"old-job": 10, "new-job": 10})

    def of(docs: list[dict], job: str) -> list[dict]:
        return [d for d in docs if (d.get("jobName") or d.get("jobConfig", {}).get("name")) == job]

    try:
        await es.indices.create(
            index=keyword_index,
            mappings={"properties": {"uuid": {"type": "keyword"}, "metricName": {"type": "keyword"}}},
        )
        await index_docs(es, keyword_index, of(run.docs, "new-job") + kube_burner_run(new_uuid(), START, {"new-job": 3}).docs)
        await index_docs(es, text_index, of(run.docs, "old-job") + kube_burner_run(new_uuid(), START, {"old-job": 3}).docs)
        mapping = await es.indices.get_mapping(index=text_index)
        assert mapping[text_index]["mappings"]["properties"]["uuid"]["type"] == "text"  # kube-burner's dynamic mapping

        results = await gather_results(es, f"{settings.results_index}-*", run_of(uuid), 10, settings.retry)

        assert results.complete
        assert compared(results.data["jobs"]) == expected_jobs(run)
    finally:
        await es.options(ignore_status=404).indices.delete(index=f"{keyword_index},{text_index}")


async def test_results_indexed_after_the_call_started_are_found(es, settings):
    uuid = new_uuid()
    run = kube_burner_run(uuid, START, {"node-density": 200}, layout="v1.10")
    delay = 3.0

    async def index_late():
        await asyncio.sleep(delay)
        await index_docs(es, settings.results_index, run.docs)  # the index does not even exist before

    started = time.monotonic()
    late = asyncio.create_task(index_late())
    results = await gather_results(es, settings.results_index, run_of(uuid, "node-density"), 30, settings.retry)
    elapsed = time.monotonic() - started
    await late

    assert results.complete and results.reasons == ()
    assert compared(results.data["jobs"]) == expected_jobs(run)
    assert delay <= elapsed < 30


async def test_results_that_never_come_are_incomplete_after_the_deadline(es, settings):
    uuid = new_uuid()
    # The measurement was indexed but the run never wrote its jobSummary.
    run = kube_burner_run(uuid, START, {"node-density": 10})
    await index_docs(es, settings.results_index, [d for d in run.docs if d["metricName"] != "jobSummary"])

    started = time.monotonic()
    results = await gather_results(es, settings.results_index, run_of(uuid, "node-density"), 2.5, settings.retry)
    elapsed = time.monotonic() - started

    assert not results.complete
    assert results.reasons == (f"no jobSummary for uuid {uuid} by the results deadline",)
    [job] = results.data["jobs"]  # what exists is kept
    assert job["name"] == "node-density" and job["latency_ms"] == run.jobs[0].latency
    assert "elapsed_s" not in job and "start_date" not in job
    assert 2.5 <= elapsed < 2.5 + 5


async def test_missing_index_and_no_results_give_a_reason(es, settings):
    uuid = new_uuid()
    results = await gather_results(es, settings.results_index, run_of(uuid, "node-density"), 0, settings.retry)
    assert results == Results({"jobs": []}, complete=False,
                              reasons=(f"no jobSummary for uuid {uuid} by the results deadline",))


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
