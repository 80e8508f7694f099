"""Faults for real: the consumer killed mid-batch, the broker stopped mid-run, Thanos away."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime, timezone

import pytest

from consumer.settings import Settings
from producer_hooks.events import make_event
from producer_hooks.publisher import flush, publish
from tests.support.consumer import running_consumer, wait_for_reports
from tests.support.es import index_docs
from tests.support.kafka import read_topic
from tests.support.kubeburner import run_documents
from tests.support.metadata import run_doc
from tests.support.services import services

pytestmark = pytest.mark.slow


def finished_doc(uuid: str, cluster: str, start: int, benchmark: str = "node-density") -> dict:
    return run_doc(uuid, cluster=cluster, benchmark=benchmark, status="success", start=start, end=start + 900)


def quantiles(report: dict) -> dict:
    return {job["name"]: job.get("latency_ms") for job in report["jobs"]}


async def test_killing_the_consumer_mid_batch_loses_nothing_and_reports_nothing_twice(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    # Half the runs have their results already; the other half wait for theirs, holding offsets.
    settings = dataclasses.replace(settings, max_in_flight=8, results_deadline_s=180.0)
    start = int(time.time()) - 900  # the runs end now: their results may still come
    uuids = [f"{unique}-{i:02d}" for i in range(12)]
    docs = {uuid: run_documents(uuid, datetime.fromtimestamp(start, timezone.utc), {"node-density": 10 + i})
            for i, uuid in enumerate(uuids)}
    ready, late = uuids[::2], uuids[1::2]
    await index_docs(es, settings.results_index, [d for uuid in ready for d in docs[uuid]])
    for uuid in uuids:
        await publish(make_event(finished_doc(uuid, f"c-{unique}", start)), hook_settings)

    async with running_consumer(settings, tmp_path / "first.log") as first:
        done = await wait_for_reports(es, settings.report_index, set(uuids), timeout=90, consumer=first, at_least=4)
        await first.kill()  # SIGKILL: no drain, no final commit
    assert set(done) <= set(ready), "a late run was reported before its results existed"
    assert len(done) < len(uuids)

    await index_docs(es, settings.results_index, [d for uuid in late for d in docs[uuid]])
    async with running_consumer(settings, tmp_path / "second.log") as second:
        reports = await wait_for_reports(es, settings.report_index, set(uuids), timeout=120, consumer=second)
        await asyncio.sleep(2)
        assert await second.stop() == 0

    assert {uuid: report["_version"] for uuid, report in reports.items()} == {uuid: 1 for uuid in uuids}
    for uuid in uuids:
        report = reports[uuid]
        assert report["report"]["status"] == "complete", report["report"]
        expected = {doc["quantileName"]: {k: doc[k] for k in ("P99", "P95", "P50", "max", "avg", "min")}
                    for doc in docs[uuid] if doc["metricName"] == "podLatencyQuantilesMeasurement"}
        assert quantiles(report) == {"node-density": expected}
    found = await es.search(index=settings.report_index, size=0, track_total_hits=True)
    assert found["hits"]["total"]["value"] == len(uuids)


@pytest.mark.parametrize("server", ["kafka", "elasticsearch"])
async def test_a_server_restarted_mid_run_delays_reports_but_loses_and_doubles_none(
    server: str, settings: Settings, hook_settings, es, unique: str, tmp_path
):
    # A retry budget that outlasts a restart (about 10 s here), as production's defaults do.
    settings = dataclasses.replace(settings, retry_attempts=10, retry_max_wait_s=5.0)
    start = int(time.time()) - 3600
    runs = {when: [f"{unique}-{when}-{i}" for i in range(2)] for when in ("before", "during", "after")}

    async def publish_runs(when: str) -> list[bool]:
        return [(await publish(make_event(finished_doc(uuid, f"c-{unique}", start, "mystery-bench")), hook_settings)).spooled
                for uuid in runs[when]]

    await publish_runs("before")
    async with running_consumer(settings, tmp_path / "consumer.log") as consumer:
        await wait_for_reports(es, settings.report_index, set(runs["before"]), timeout=60, consumer=consumer)
        try:
            await asyncio.to_thread(services, "down", server)
            spooled = await publish_runs("during")  # with the broker away, the hooks keep them in the spool
            assert spooled == [server == "kafka"] * len(runs["during"])
            await asyncio.sleep(3)
            assert consumer.process.returncode is None, f"the consumer must ride out {server} going away"
        finally:
            await asyncio.to_thread(services, "up", server)
        if server == "kafka":
            assert (await flush(hook_settings)).pending == 0
        assert await publish_runs("after") == [False] * len(runs["after"])
        everything = {uuid for batch in runs.values() for uuid in batch}
        reports = await wait_for_reports(es, settings.report_index, everything, timeout=120, consumer=consumer)
        await asyncio.sleep(2 * settings.commit_interval_s)
        assert await consumer.stop() == 0
    assert {uuid: report["_version"] for uuid, report in reports.items()} == {uuid: 1 for uuid in everything}
    assert await read_topic(settings.kafka, settings.dead_letter_topic, 0, timeout=2) == []


async def test_sigterm_drains_runs_in_flight_commits_and_exits_0(settings: Settings, hook_settings, es, unique: str, tmp_path):
    # Two runs whose results come only after SIGTERM: the consumer finishes them while draining.
    settings = dataclasses.replace(settings, max_in_flight=1, results_deadline_s=120.0, drain_timeout_s=60.0)
    start = int(time.time()) - 900
    uuids = [f"{unique}-a", f"{unique}-b"]
    docs = [d for uuid in uuids for d in run_documents(uuid, datetime.fromtimestamp(start, timezone.utc), {"node-density": 5})]
    for uuid in uuids:
        await publish(make_event(finished_doc(uuid, f"c-{unique}", start)), hook_settings)

    async with running_consumer(settings, tmp_path / "consumer.log", "--log-level", "DEBUG") as consumer:
        for _ in range(60):  # until the first run is being built and fetching is paused behind it
            if "fetching paused" in consumer.logs():
                break
            await asyncio.sleep(0.5)
        assert "runs in flight (MAX_IN_FLIGHT=1)" in consumer.logs()
        consumer.process.terminate()
        await asyncio.sleep(2)
        await index_docs(es, settings.results_index, docs)
        assert await consumer.stop(timeout=90) == 0
    logs = consumer.logs()
    assert "stopping: waiting up to 60 s" in logs
    drained = await wait_for_reports(es, settings.report_index, set(uuids), timeout=5, at_least=1)
    assert all(report["report"]["status"] == "complete" for report in drained.values())

    # What was drained was committed; what was not is built by the next start, once.
    async with running_consumer(settings, tmp_path / "again.log") as again:
        reports = await wait_for_reports(es, settings.report_index, set(uuids), timeout=60, consumer=again)
        await asyncio.sleep(2)
        assert await again.stop() == 0
    assert {uuid: report["_version"] for uuid, report in reports.items()} == {uuid: 1 for uuid in uuids}
    rebuilt = [line for line in again.logs().splitlines() if "consumer.pipeline: report" in line]
    assert len(rebuilt) == len(uuids) - len(drained)


async def test_a_run_that_outlasts_the_drain_budget_is_built_again_on_the_next_start(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    settings = dataclasses.replace(settings, results_deadline_s=120.0, drain_timeout_s=2.0)
    start = int(time.time()) - 900
    uuid = f"{unique}-slow"
    await publish(make_event(finished_doc(uuid, f"c-{unique}", start)), hook_settings)
    async with running_consumer(settings, tmp_path / "first.log") as first:
        await asyncio.sleep(5)  # long enough to be fetched and waiting for its results
        assert await first.stop() == 0
    assert "did not finish in time" in first.logs()
    assert not await es.options(ignore_status=404).exists(index=settings.report_index, id=uuid)

    await index_docs(es, settings.results_index, run_documents(uuid, datetime.fromtimestamp(start, timezone.utc), {"node-density": 5}))
    async with running_consumer(settings, tmp_path / "second.log") as second:
        reports = await wait_for_reports(es, settings.report_index, {uuid}, timeout=60, consumer=second)
        assert await second.stop() == 0
    assert reports[uuid]["report"]["status"] == "complete" and reports[uuid]["_version"] == 1
