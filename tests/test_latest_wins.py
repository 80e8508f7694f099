"""Two finished events of one run: whatever the order they are built and written in, the report of
the later event stands, and replaying them changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime, timedelta, timezone

from consumer.origin import Origin
from consumer.report import build_report, fingerprint
from consumer.settings import Settings
from consumer.sink import WriteOutcome, decide
from producer_hooks.events import make_event
from producer_hooks.publisher import Publisher
from tests.support.consumer import run_cli, running_consumer, wait_for_reports
from tests.support.es import index_docs
from tests.support.kafka import committed_offsets, end_offsets
from tests.support.kubeburner import run_documents
from tests.support.metadata import run_doc

T0 = datetime(2024, 5, 2, 10, tzinfo=timezone.utc)


def report_of(doc: dict, origin: Origin | None) -> dict:
    return build_report(make_event(doc), results={}, metrics=[], links={}, profiles=[], reasons=[],
                        built_at=T0, origin=origin.to_dict() if origin else None)


def at(offset: int, partition: int = 0, seconds: int = 0) -> Origin:
    return Origin(T0 + timedelta(seconds=seconds), "runs", partition, offset)


def doc(status: str, **changes: object) -> dict:
    return {**run_doc("u-1", cluster="c", benchmark="node-density", status=status, start=1714644000, end=1714645000),
            **changes}


def test_a_report_from_an_earlier_event_never_replaces_a_later_one():
    later = report_of(doc("failure"), at(7))
    earlier = report_of(doc("success"), at(5))
    assert decide(earlier, later["report"])[0] is WriteOutcome.SUPERSEDED
    assert decide(later, earlier["report"])[0] is WriteOutcome.UPDATED
    assert decide(later, later["report"])[0] is WriteOutcome.UNCHANGED


def test_offsets_order_events_of_one_partition_and_publication_time_orders_the_rest():
    # Same partition: the offset decides, even against the clock of another producer.
    assert decide(report_of(doc("success"), at(3, seconds=100)), report_of(doc("failure"), at(9, seconds=0))["report"])[0] \
        is WriteOutcome.SUPERSEDED
    # Another partition (a bare document sent without a key): publication time decides.
    assert decide(report_of(doc("success"), at(3, partition=1, seconds=100)),
                  report_of(doc("failure"), at(9, partition=0, seconds=0))["report"])[0] is WriteOutcome.UPDATED


def test_a_rebuild_of_the_same_event_from_an_older_origin_keeps_the_later_origin():
    # A backfill (origin: the run's end) of the document a live event carried: the same information,
    # so its rebuild may stand, under the live event's origin; a different document may not.
    live = report_of(doc("success"), at(4, seconds=3600))
    outcome, written = decide(report_of(doc("success"), Origin(T0)), live["report"])
    assert outcome is WriteOutcome.UNCHANGED and written["report"]["origin"] == live["report"]["origin"]

    rebuilt = report_of(doc("success"), Origin(T0))
    rebuilt["links"] = {"cluster": "https://grafana.example.com/d/new"}  # e.g. built by a newer format
    rebuilt["report"]["fingerprint"] = fingerprint(rebuilt)
    outcome, written = decide(rebuilt, live["report"])
    assert outcome is WriteOutcome.UPDATED and written["report"]["origin"] == live["report"]["origin"]
    assert written["report"]["fingerprint"] == fingerprint(written)

    assert decide(report_of(doc("failure"), Origin(T0)), live["report"])[0] is WriteOutcome.SUPERSEDED


async def test_the_later_of_two_finished_events_stands_whatever_order_their_builds_end_in(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    # Successes wait for their results (up to 20 s), failures do not: a build of the earlier event
    # would end last, and was the one that stood.
    settings = dataclasses.replace(settings, max_in_flight=8)
    start = int(time.time()) - 1800
    when = datetime.fromtimestamp(start, timezone.utc)
    cases = {
        "success-then-failure": ("success", "failure", 0.5),
        "failure-then-success": ("failure", "success", 0.5),
        "success-then-corrected-success": ("success", "success", 0.0),
        "failure-then-failure-later": ("failure", "failure", 2.0),
    }
    pairs: dict[str, tuple[dict, dict]] = {}
    for case, (first, second, _) in cases.items():
        for i in range(5):
            uuid = f"{unique}-{case}-{i}"
            base = run_doc(uuid, cluster=f"c-{unique}", benchmark="node-density", status=first, start=start,
                           end=start + 900)
            pairs[uuid] = (base, {**base, "job_status": second, "worker_count": "48",
                                  "build_url": f"https://ci.example.com/{uuid}/retry"})

    async with running_consumer(settings, tmp_path / "consumer.log") as consumer, Publisher(hook_settings) as publisher:
        for first_doc, _ in pairs.values():
            await publisher.publish(make_event(first_doc))
        await asyncio.sleep(1)
        for case, (_, _, pause) in cases.items():
            await asyncio.sleep(pause)
            for uuid, (_, second_doc) in pairs.items():
                if f"-{case}-" in uuid:
                    await publisher.publish(make_event(second_doc))
        # The successes' results arrive last of all, while the failures' reports are written.
        await asyncio.sleep(3)
        await index_docs(es, settings.results_index,
                         [d for uuid in pairs for d in run_documents(uuid, when, {"node-density": 5})])
        await wait_for_reports(es, settings.report_index, set(pairs), timeout=120, consumer=consumer)
        await asyncio.sleep(25)  # past the results deadline: any stale build still running has ended
        reports = await wait_for_reports(es, settings.report_index, set(pairs), timeout=10)
        assert await consumer.stop() == 0

    stood = {uuid: report["metadata"] for uuid, report in reports.items()}
    assert stood == {uuid: second for uuid, (_, second) in pairs.items()}, "an earlier event's report stands"
    for report in reports.values():
        if report["job_status"] == "success":
            assert report["report"]["status"] == "complete", report["report"]

    # A replay rebuilds from both events of every run: the later event still wins. A run whose
    # later event is a failure was built at once, before the test indexed its results; the replay
    # finds them, and only those reports may change. A second replay changes nothing.
    code, out = await run_cli(settings, "replay")
    assert code == 0, out
    replayed = await wait_for_reports(es, settings.report_index, set(pairs), timeout=10)
    assert {uuid: report["metadata"] for uuid, report in replayed.items()} == stood
    changed = {uuid for uuid in pairs if replayed[uuid]["_version"] != reports[uuid]["_version"]}
    assert changed <= {uuid for uuid, (_, second) in pairs.items() if second["job_status"] != "success"}
    code, out = await run_cli(settings, "replay")
    assert code == 0 and "reports written: 0" in out, out
    again = await wait_for_reports(es, settings.report_index, set(pairs), timeout=10)
    assert {uuid: report["_version"] for uuid, report in again.items()} == {
        uuid: report["_version"] for uuid, report in replayed.items()}


async def test_a_build_superseded_before_it_started_leaves_no_offset_uncommitted(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    # Both events of each run are waiting when the consumer starts, so they arrive in one batch and
    # the first one's build is cancelled before it ever ran: its offset must still count as done.
    start = int(time.time()) - 1800
    pairs = {}
    for i in range(5):
        base = run_doc(f"{unique}-{i}", cluster=f"c-{unique}", benchmark="mystery-bench", status="success",
                       start=start, end=start + 900)
        pairs[base["uuid"]] = (base, {**base, "job_status": "failure"})
    async with Publisher(hook_settings) as publisher:
        for first, second in pairs.values():
            await publisher.publish(make_event(first))
            await publisher.publish(make_event(second))

    async with running_consumer(settings, tmp_path / "consumer.log") as consumer:
        reports = await wait_for_reports(es, settings.report_index, set(pairs), timeout=60, consumer=consumer)
        await asyncio.sleep(4 * settings.commit_interval_s)
        committed = await committed_offsets(settings.kafka, settings.group)
        assert await consumer.stop() == 0

    assert {uuid: report["metadata"] for uuid, report in reports.items()} == {u: p[1] for u, p in pairs.items()}
    ends = await end_offsets(settings.kafka, settings.kafka.topic)
    assert {tp: committed.get(tp, 0) for tp in ends} == ends
