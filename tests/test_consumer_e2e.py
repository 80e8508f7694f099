"""End to end: events on the real broker, results in the real Elasticsearch, series in the real
Prometheus, and `report-consumer run` in its own process writing one report per run."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import defaultdict
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from consumer.settings import Settings
from producer_hooks.events import make_event
from producer_hooks.publisher import publish
from tests.support.consumer import running_consumer, wait_for_reports
from tests.support.es import index_docs
from tests.support.kafka import read_topic
from tests.support.kubeburner import compared, expected_jobs, kube_burner_run, run_documents
from tests.support.metadata import camel_doc, run_doc, snake_doc
from tests.support.prometheus import Series, load_series

STEP = 10
E2E_PROFILE = """\
name: e2e
version: 1
queries:
  - name: nsCPU
    unit: cores
    query: sum(e2e_cpu{$cluster}) by (namespace)
  - name: peakMemory
    unit: bytes
    query: max(e2e_mem{$cluster})
"""


@dataclasses.dataclass
class Scenario:
    """Two clusters' worth of series, on a 10 s grid, over the last two hours up to now."""

    t0: int
    clusters: dict[str, dict[tuple[str, str], dict[int, float]]]  # cluster -> (metric, pod/ns) -> t -> v

    @classmethod
    def make(cls, names: list[str]) -> Scenario:
        t0 = int(time.time()) // STEP * STEP - 7200
        rng = random.Random(t0)
        clusters: dict[str, dict] = {}
        for cluster in names:
            series: dict = {}
            for namespace in ("openshift-etcd", "openshift-kube-apiserver"):
                for pod in ("a", "b"):
                    series[("e2e_cpu", f"{namespace}/{pod}")] = {
                        t: rng.uniform(0, 4) for t in range(t0 - 600, t0 + 7210, STEP)
                    }
            series[("e2e_mem", "node")] = {t: rng.uniform(1e9, 8e9) for t in range(t0 - 600, t0 + 7210, STEP)}
            clusters[cluster] = series
        return cls(t0, clusters)

    def series(self) -> list[Series]:
        out = []
        for cluster, series in self.clusters.items():
            for (metric, key), samples in series.items():
                labels = {"openshift_cluster_name": cluster}
                if metric == "e2e_cpu":
                    labels["namespace"], labels["pod"] = key.split("/")
                out.append(Series(metric, labels, sorted(samples.items())))
        return out

    def expected(self, cluster: str, start: int, end: int) -> dict[str, dict]:
        """nsCPU per namespace and peakMemory, computed here from the samples loaded."""
        points = range(start, end + 1, STEP)
        per_namespace: dict[str, list[float]] = defaultdict(list)
        for t in points:
            sums: dict[str, float] = defaultdict(float)
            for (metric, key), samples in self.clusters[cluster].items():
                if metric == "e2e_cpu":
                    sums[key.split("/")[0]] += samples[t]
            for namespace, value in sums.items():
                per_namespace[namespace].append(value)
        memory = [self.clusters[cluster][("e2e_mem", "node")][t] for t in points]
        return {
            "nsCPU": {ns: (sum(v) / len(v), max(v), len(v)) for ns, v in per_namespace.items()},
            "peakMemory": (sum(memory) / len(memory), max(memory), len(memory)),
        }


@pytest.fixture
def e2e_settings(settings: Settings, tmp_path) -> Settings:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "e2e.yaml").write_text(E2E_PROFILE)
    return dataclasses.replace(settings, profile_dir=profiles, benchmark_profiles=(("*", ("control-plane", "e2e")),),
                               results_deadline_s=90.0)


def assert_metrics(report: dict, expected: dict) -> None:
    cpu = {s["labels"]["namespace"]: s for s in report["metrics"] if s["name"] == "nsCPU"}
    assert set(cpu) == set(expected["nsCPU"])
    for namespace, (avg, peak, count) in expected["nsCPU"].items():
        assert cpu[namespace]["avg"] == pytest.approx(avg, rel=1e-9)
        assert cpu[namespace]["max"] == pytest.approx(peak, rel=1e-9)
        assert cpu[namespace]["samples"] == count
    [memory] = [s for s in report["metrics"] if s["name"] == "peakMemory"]
    avg, peak, count = expected["peakMemory"]
    assert (memory["avg"], memory["max"], memory["samples"]) == (pytest.approx(avg, rel=1e-9), pytest.approx(peak, rel=1e-9), count)


async def test_every_finished_run_gets_exactly_one_report_with_its_results_metrics_and_links(
    e2e_settings: Settings, hook_settings, es, unique: str, tmp_path
):
    settings = e2e_settings
    cluster_a, cluster_b = f"perf-a-{unique}", f"perf-b-{unique}"
    scenario = Scenario.make([cluster_a, cluster_b])
    await asyncio.to_thread(load_series, scenario.series())
    t0 = scenario.t0
    runs = {
        # name: (uuid, cluster, benchmark, status, start, end, camelCase, jobs)
        "two-jobs": (f"{unique}-r1", cluster_b, "node-density-heavy", "success", t0 + 600, t0 + 2400, True,
                     {"node-density-heavy": 50, "garbage-collection": 1}),
        "density": (f"{unique}-r2", cluster_a, "cluster-density-v2", "success", t0, t0 + 1200, False,
                    {"cluster-density-v2": 100}),
        # Ends now: its results may still be on their way, so the consumer waits for them.
        "late": (f"{unique}-r3", cluster_a, "node-density", "SUCCESS", t0 + 6000, t0 + 7200, False,
                 {"node-density": 200}),
        "unknown": (f"{unique}-r4", cluster_b, "mystery-bench", "success", t0 + 3600, t0 + 4200, True, {}),
        "failed": (f"{unique}-r5", cluster_a, "cluster-density-v2", "failed", t0 + 4800, t0 + 5400, False, {}),
    }
    kube_burner = {name: kube_burner_run(r[0], datetime.fromtimestamp(r[4], timezone.utc), r[7], cluster=r[1])
                   for name, r in runs.items()}
    await index_docs(es, settings.results_index, [d for name in ("two-jobs", "density") for d in kube_burner[name].docs])

    async with running_consumer(settings, tmp_path / "consumer.log") as consumer:
        for uuid, cluster, benchmark, status, start, end, camel, _ in runs.values():
            run = {"cluster": cluster, "benchmark": benchmark, "start": start, "camel": camel}
            for event in (run_doc(uuid, status="running", end=None, **run), run_doc(uuid, status=status, end=end, **run)):
                assert not (await publish(make_event(event), hook_settings)).spooled
        await asyncio.sleep(4)  # the late run's results are indexed after its finished event
        await index_docs(es, settings.results_index, kube_burner["late"].docs)

        uuids = {r[0] for r in runs.values()}
        reports = await wait_for_reports(es, settings.report_index, uuids, timeout=120, consumer=consumer)
        await asyncio.sleep(2 * settings.commit_interval_s)  # let a duplicate write show, if one were coming
        assert await consumer.stop() == 0
    logs = consumer.logs()

    for name, (uuid, cluster, benchmark, status, start, end, *_rest) in runs.items():
        report = reports[uuid]
        assert report["_version"] == 1, f"{name}: written more than once"
        assert report["uuid"] == uuid and report["benchmark"] == benchmark
        assert report["openshift_cluster_name"] == cluster
        assert report["job_status"] == status.lower().replace("failed", "failure")
        assert report["start_date"] == datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert report["metadata"]["uuid"] == uuid
        assert_metrics(report, scenario.expected(cluster, start, end))
        assert report["metrics"][0]["profile"] == "control-plane"
        assert report["report"]["profiles"][0]["name"] == "control-plane"
        assert isinstance(report["report"]["built_in_ms"], int) and report["report"]["built_in_ms"] >= 0
        for key, link in report["links"].items():
            query = parse_qs(urlsplit(link).query)
            assert query["from"] == [str(start * 1000)] and query["to"] == [str(end * 1000)], key
            assert query["var-cluster_name"] == [cluster]

    for name in ("two-jobs", "density", "late"):
        assert compared(reports[runs[name][0]]["jobs"]) == expected_jobs(kube_burner[name]), name
    assert [job["name"] for job in reports[runs["two-jobs"][0]]["jobs"]] == ["node-density-heavy", "garbage-collection"]
    for name in ("two-jobs", "density", "late"):
        assert reports[runs[name][0]]["report"]["status"] == "complete", reports[runs[name][0]]["report"]
    assert reports[runs["two-jobs"][0]]["openshift_platform"] == camel_doc()["platform"]
    assert reports[runs["density"][0]]["openshift_cluster_version"] == snake_doc()["cluster_version"]

    unknown = reports[runs["unknown"][0]]
    assert unknown["jobs"] == [] and unknown["report"]["status"] == "partial"
    assert any("mystery-bench" in reason for reason in unknown["report"]["reasons"])
    failed = reports[runs["failed"][0]]
    assert failed["job_status"] == "failure" and failed["jobs"] == []
    assert failed["report"]["status"] == "partial"
    assert "stopped" in logs

    # Offsets were committed: a new member of the group finds nothing left to do.
    async with running_consumer(settings, tmp_path / "again.log") as again:
        await asyncio.sleep(6)
        assert await again.stop() == 0
    after = await wait_for_reports(es, settings.report_index, set(reports), timeout=5)
    assert {uuid: doc["_version"] for uuid, doc in after.items()} == {uuid: 1 for uuid in reports}


async def test_malformed_events_go_to_the_dead_letter_topic_and_the_rest_are_reported(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    from aiokafka import AIOKafkaProducer

    start = (int(time.time()) // 60 - 120) * 60
    good = make_event(run_doc(f"{unique}-ok", cluster=f"c-{unique}", benchmark="mystery-bench", status="success",
                              start=start, end=start + 600))
    producer = AIOKafkaProducer(**settings.kafka.client_options())
    await producer.start()
    try:
        await producer.send_and_wait(settings.kafka.topic, key=b"x", value=b"{not json")
        await producer.send_and_wait(settings.kafka.topic, key=b"y", value=b'{"schema_version": 1, "kind": "finished", "metadata": {"job_status": "success"}}')
        await producer.send_and_wait(settings.kafka.topic, key=b"z", value=b"[1, 2]")
    finally:
        await producer.stop()
    await publish(good, hook_settings)

    async with running_consumer(settings, tmp_path / "consumer.log") as consumer:
        reports = await wait_for_reports(es, settings.report_index, {good.run.uuid}, timeout=60, consumer=consumer)
        parked = await read_topic(settings.kafka, settings.dead_letter_topic, 3, timeout=30)
        assert await consumer.stop() == 0
    assert reports[good.run.uuid]["uuid"] == good.run.uuid
    assert sorted(record.value for record in parked) == sorted([b"{not json", b"[1, 2]",
        b'{"schema_version": 1, "kind": "finished", "metadata": {"job_status": "success"}}'])
    for record in parked:
        headers = dict(record.headers)
        assert headers["dead-letter-reason"].startswith(b"invalid event: ")
        assert headers["dead-letter-topic"] == settings.kafka.topic.encode()
    reasons = {dict(r.headers)["dead-letter-reason"].decode() for r in parked}
    assert any("uuid" in reason for reason in reasons), reasons


async def test_a_late_event_still_waits_for_its_results(settings: Settings, hook_settings, es, unique: str, tmp_path):
    # The run ended an hour ago, far past RESULTS_DEADLINE, but its event arrives only now (sent
    # from a hook's spool, say): its results, indexed a few seconds later, are in its report.
    end = int(time.time()) - 3600
    uuid = f"{unique}-late"
    doc = run_doc(uuid, cluster=f"c-{unique}", benchmark="node-density", status="success", start=end - 900, end=end)
    results = run_documents(uuid, datetime.fromtimestamp(end - 900, timezone.utc), {"node-density": 7})
    async with running_consumer(settings, tmp_path / "consumer.log") as consumer:
        await publish(make_event(doc), hook_settings)
        await asyncio.sleep(5)
        await index_docs(es, settings.results_index, results)
        reports = await wait_for_reports(es, settings.report_index, {uuid}, timeout=60, consumer=consumer)
        assert await consumer.stop() == 0
    report = reports[uuid]
    assert report["report"]["status"] == "complete", report["report"]
    elapsed = {d["elapsedTime"] for d in results if d["metricName"] == "jobSummary"}
    assert {job["elapsed_s"] for job in report["jobs"]} == elapsed
