"""Runs that never finish get an `incomplete` report at their deadline, even across a restart; a
finished event that comes later replaces it; a run that finished in time is never incomplete."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.settings import Settings
from producer_hooks.events import make_event
from producer_hooks.publisher import Publisher
from tests.support.consumer import running_consumer, wait_for_reports
from tests.support.metadata import iso, run_doc

DEADLINE = {"INCOMPLETE_AFTER": "6", "INCOMPLETE_SWEEP": "0.5"}


async def committed(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(group_id=settings.group, enable_auto_commit=False, **settings.kafka.client_options())
    await consumer.start()
    try:
        return sum([(await consumer.committed(TopicPartition(settings.kafka.topic, p))) or 0 for p in range(3)])
    finally:
        await consumer.stop()


async def test_a_run_that_never_finishes_is_reported_incomplete_across_a_restart_until_it_finishes(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    settings = dataclasses.replace(settings, results_deadline_s=0.0)
    now = int(time.time())
    never = run_doc(f"{unique}-never", cluster=f"c-{unique}", benchmark="mystery-bench", status="running",
                    start=now, end=None)
    in_time = run_doc(f"{unique}-in-time", cluster=f"c-{unique}", benchmark="mystery-bench", status="running",
                      start=now, end=None)
    async with Publisher(hook_settings) as publisher:
        for doc in (never, in_time):
            await publisher.publish(make_event(doc, "started"))

        # The first consumer stores both started runs and commits past them, then dies.
        async with running_consumer(settings, tmp_path / "first.log", **DEADLINE) as first:
            for _ in range(60):
                if await committed(settings) >= 2:
                    break
                await asyncio.sleep(0.5)
            assert await committed(settings) >= 2
            await first.kill()
        assert not await es.exists(index=settings.report_index, id=never["uuid"])

        # One of them finishes before its deadline.
        await publisher.publish(make_event({**in_time, "job_status": "success", "end_date": iso(now + 3)}))

        async with running_consumer(settings, tmp_path / "second.log", **DEADLINE) as second:
            reports = await wait_for_reports(es, settings.report_index, {never["uuid"], in_time["uuid"]}, timeout=60,
                                             consumer=second)
            await asyncio.sleep(8)  # past both deadlines, several sweeps
            reports = await wait_for_reports(es, settings.report_index, {never["uuid"], in_time["uuid"]}, timeout=5)
            incomplete = reports[never["uuid"]]
            assert incomplete["report"]["status"] == "incomplete"
            assert incomplete["job_status"] == "running" and incomplete["metadata"] == never
            assert incomplete["metrics"] == [] and incomplete["end_date"] is None
            assert incomplete["report"]["reasons"] == ["no finished event within 6 s of the run's start (INCOMPLETE_AFTER)"]
            finished_in_time = reports[in_time["uuid"]]
            assert finished_in_time["job_status"] == "success" and finished_in_time["_version"] == 1

            # The finished event, late, replaces the incomplete report.
            late = {**never, "job_status": "success", "end_date": iso(now + 5)}
            await publisher.publish(make_event(late))
            for _ in range(60):
                report = (await es.get(index=settings.report_index, id=never["uuid"]))["_source"]
                if report["job_status"] == "success":
                    break
                await asyncio.sleep(0.5)
            assert report["job_status"] == "success" and report["report"]["status"] != "incomplete"
            assert report["metadata"] == late
            await asyncio.sleep(2)  # later sweeps do not bring the incomplete report back
            assert (await es.get(index=settings.report_index, id=never["uuid"]))["_source"]["job_status"] == "success"
            assert await second.stop() == 0
