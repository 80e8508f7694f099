"""Several `report-consumer run` processes in one group share a topic's partitions, Kafka's own way:
members come and go (one killed, one stopped) while runs stream in, and every run still gets exactly
one report, built from its last event."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from consumer.settings import Settings
from consumer.topics import delete_topics
from producer_hooks.events import make_event
from producer_hooks.publisher import Publisher
from tests.support.consumer import ConsumerProcess, run_cli, running_consumer, wait_for_reports
from tests.support.health import scrape, wait_for_status
from tests.support.kafka import committed_offsets, end_offsets, read_topic
from tests.support.metadata import run_doc
from tests.support.services import closed_port

pytestmark = pytest.mark.slow

RUNS = 300
PARTITIONS = 6
MEMBERS = 3
# One cheap query per run: the work here is the sharing, not the report.
PROFILE = """\
name: tiny
version: 1
queries:
  - name: up
    unit: targets
    query: sum(up{$cluster})
"""


async def written(port: int) -> float:
    """Reports a member created or updated, by its /metrics."""
    samples = await scrape(port)
    return sum(value for (name, labels), value in samples.items() if name == "report_consumer_reports_total"
               and dict(labels)["outcome"] in ("created", "updated"))


async def until_written(port: int, member: ConsumerProcess, at_least: int, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while (count := await written(port)) < at_least:
        assert member.process.returncode is None, member.logs()[-3000:]
        assert time.monotonic() < deadline, f"member on port {port} wrote {count} reports in {timeout} s"
        await asyncio.sleep(0.5)
    return count


@pytest.mark.timeout(900)
async def test_three_members_share_six_partitions_and_every_run_gets_one_report_from_its_last_event(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    topic = f"test-runs-{unique}-scale"
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tiny.yaml").write_text(PROFILE)
    settings = dataclasses.replace(
        settings, kafka=dataclasses.replace(settings.kafka, topic=topic), dead_letter_topic=f"{topic}.dead-letter",
        profile_dir=profiles, benchmark_profiles=(("*", ("tiny",)),),
    )
    hook_settings = dataclasses.replace(hook_settings, kafka=settings.kafka)
    code, out = await run_cli(settings, "init", "--partitions", str(PARTITIONS))  # as an operator sets it up
    assert code == 0, out
    try:
        await _scenario(settings, hook_settings, es, unique, tmp_path)
    finally:
        await delete_topics(settings.kafka, [topic, settings.dead_letter_topic])


async def _scenario(settings: Settings, hook_settings, es, unique: str, tmp_path) -> None:
    start = int(time.time()) - 7200
    uuids = [f"{unique}-{i:03d}" for i in range(RUNS)]

    def doc(i: int, status: str, **extra: object) -> dict:
        end = None if status == "running" else start + 600 + i
        return {**run_doc(uuids[i], cluster=f"c-{unique}", benchmark="mystery-bench", status=status,
                          start=start + i, end=end, camel=i % 2 == 1), **extra}

    last: dict[str, dict] = {}  # uuid -> the document of its last event
    ports = [closed_port() for _ in range(MEMBERS)]
    async with running_consumer(settings, tmp_path / "a.log", run_args=("--http-port", str(ports[0]))) as a, \
            running_consumer(settings, tmp_path / "b.log", run_args=("--http-port", str(ports[1]))) as b, \
            running_consumer(settings, tmp_path / "c.log", run_args=("--http-port", str(ports[2]))) as c, \
            Publisher(hook_settings) as publisher:
        members = [a, b, c]
        # Kafka spreads the partitions over the members: two each.
        for port, member in zip(ports, members, strict=True):
            deadline = time.monotonic() + 90
            while (body := await wait_for_status(port, "/readyz", 200, 90, member))["checks"]["kafka"]["detail"] \
                    != f"{PARTITIONS // MEMBERS} partitions assigned":
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.5)

        built_by_a = built_by_b = 0.0
        for i in range(RUNS):
            for event in (doc(i, "running"), doc(i, "success")):
                await publisher.publish(make_event(event))
            last[uuids[i]] = doc(i, "success")
            if i >= 25 and i % 10 == 5:  # a corrected status for a run finished a while ago
                corrected = doc(i - 25, "failure", note="status corrected after the run")
                await publisher.publish(make_event(corrected))
                last[uuids[i - 25]] = corrected
            if i == RUNS // 3:
                built_by_a = await until_written(ports[0], a, 3)
                await a.kill()  # SIGKILL: what it had not committed is built again by the others
            if i == 2 * RUNS // 3:
                built_by_b = await until_written(ports[1], b, 3)
                b.process.terminate()  # SIGTERM: it drains and commits while runs keep coming
            await asyncio.sleep(0.02)

        assert await asyncio.wait_for(b.process.wait(), 60) == 0  # (a second SIGTERM would not drain)
        reports = await wait_for_reports(es, settings.report_index, set(uuids), timeout=300, consumer=c)
        # Once every report is there, the reports must be the last events' (a late rebuild would show).
        deadline = time.monotonic() + 120
        while {uuid: reports[uuid]["metadata"] for uuid in uuids} != last and time.monotonic() < deadline:
            await asyncio.sleep(1)
            reports = await wait_for_reports(es, settings.report_index, set(uuids), timeout=10, consumer=c)
        built_by_c = await written(ports[2])
        await asyncio.sleep(3 * settings.commit_interval_s)
        assert await c.stop() == 0

    assert a.process.returncode == -9
    assert min(built_by_a, built_by_b, built_by_c) >= 1, (built_by_a, built_by_b, built_by_c)
    # One document per run, each built from the run's last event, nothing dead-lettered.
    await es.indices.refresh(index=settings.report_index)
    assert (await es.count(index=settings.report_index))["count"] == RUNS
    assert {uuid: report["metadata"] for uuid, report in reports.items()} == last
    assert await read_topic(settings.kafka, settings.dead_letter_topic, 0, timeout=2) == []
    # The group has committed every record: a new member would find nothing left to do.
    assert await committed_offsets(settings.kafka, settings.group) == await end_offsets(settings.kafka, settings.kafka.topic)
