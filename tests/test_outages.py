"""A server's outage delays reports; it loses none, doubles none and dead-letters none.

Runs stream in before, during and after Elasticsearch, Prometheus (Thanos) or Kafka is stopped;
every run gets exactly one report once the server is back, without anyone running `replay`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter

import pytest

from consumer.settings import Settings
from producer_hooks.events import make_event
from producer_hooks.publisher import Publisher
from tests.support.consumer import run_cli, running_consumer, wait_for_reports
from tests.support.kafka import read_topic
from tests.support.metadata import run_doc
from tests.support.services import services

pytestmark = pytest.mark.slow

RUNS = 200


@pytest.mark.parametrize(("server", "outage_s"), [("elasticsearch", 120), ("prometheus", 60), ("kafka", 60)])
async def test_runs_streamed_through_an_outage_all_get_one_report_and_none_is_dead_lettered(
    server: str, outage_s: int, settings: Settings, hook_settings, es, unique: str, tmp_path
):
    settings = dataclasses.replace(settings, retry_attempts=2, retry_max_wait_s=3.0)
    start = int(time.time()) - 3600
    uuids = [f"{unique}-{i:03d}" for i in range(RUNS)]
    # A benchmark without a results reader, on a cluster with no series: every run still asks
    # Elasticsearch, every profile query and Prometheus, and writes its report.
    docs = [run_doc(uuid, cluster=f"c-{unique}", benchmark="mystery-bench", status="success", start=start,
                    end=start + 900, camel=i % 2 == 1) for i, uuid in enumerate(uuids)]
    before, during, after = docs[:50], docs[50:150], docs[150:]

    async with running_consumer(settings, tmp_path / "consumer.log") as consumer, Publisher(hook_settings) as publisher:
        for doc in before:
            await publisher.publish(make_event(doc))
        await wait_for_reports(es, settings.report_index, {doc["uuid"] for doc in before[:5]}, timeout=60,
                               consumer=consumer)
        await asyncio.to_thread(services, "down", server)
        stopped = time.monotonic()
        try:
            pause = outage_s / len(during) / 2
            for doc in during:  # published over the first half of the outage (spooled if Kafka is down)
                await publisher.publish(make_event(doc))
                await asyncio.sleep(pause)
            await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - stopped)))
            assert consumer.process.returncode is None, f"the consumer must ride out {server} being away"
        finally:
            await asyncio.to_thread(services, "up", server)
        if server == "kafka":
            assert (await publisher.flush()).pending == 0
        for doc in after:
            await publisher.publish(make_event(doc))
        reports = await wait_for_reports(es, settings.report_index, set(uuids), timeout=240, consumer=consumer)
        await asyncio.sleep(3 * settings.commit_interval_s)
        assert await consumer.stop() == 0

    assert len(reports) == RUNS
    # Written once each; only an event the hook had to send twice (the broker wrote it, but the
    # acknowledgement was lost with the broker) may have moved its report to the later copy.
    sent = Counter(record.key.decode() for record in await read_topic(settings.kafka, settings.kafka.topic, RUNS))
    assert {uuid: report["_version"] for uuid, report in reports.items() if report["_version"] > sent[uuid]} == {}
    assert {uuid: report["metadata"] for uuid, report in reports.items()} == {doc["uuid"]: doc for doc in docs}
    assert await read_topic(settings.kafka, settings.dead_letter_topic, 0, timeout=2) == []
    found = await es.search(index=settings.report_index, size=0, track_total_hits=True)
    assert found["hits"]["total"]["value"] == RUNS

    # The outage was said once and then once per interval, not once per attempt or per run.
    logs = consumer.logs()
    said = [line for line in logs.splitlines() if "unavailable" in line and "consumer.outage" in line]
    if server != "kafka":
        assert said, logs[-3000:]
        assert len(said) <= outage_s / 30 + 3, said
        assert any("available again" in line for line in logs.splitlines())

    # Nothing was left for a rebuild to do.
    code, out = await run_cli(settings, "replay")
    replayed = await wait_for_reports(es, settings.report_index, set(uuids), timeout=10)
    changed = {key for uuid in uuids for key in reports[uuid] if reports[uuid][key] != replayed[uuid][key]}
    assert code == 0 and "reports written: 0" in out, (out, changed, replayed[uuids[0]])
