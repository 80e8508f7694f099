"""Rebuilding reports: `replay` of the runs topic, `backfill` from the metadata index."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import datetime, timedelta, timezone

import pytest

from consumer.settings import Settings
from producer_hooks.events import make_event
from producer_hooks.publisher import Publisher
from tests.support.consumer import run_cli as cli
from tests.support.consumer import running_consumer, wait_for_reports
from tests.support.es import index_docs
from tests.support.kubeburner import run_documents
from tests.support.metadata import run_doc


@pytest.fixture
def settings(settings: Settings, tmp_path) -> Settings:
    """These tests pin how reports are written, whoever writes them: the verdict is held to one
    conclusion (never enough history), since runs built at once see each other's reports appear and
    a verdict whose conclusion changes is rightly written again (see tests/test_verdicts.py)."""
    rules = tmp_path / "comparisons"
    rules.mkdir()
    (rules / "default.yaml").write_text(
        "rules: [{benchmarks: '*', min_history: 1000, numbers: [{job: '*', value: elapsed_s}]}]\n")
    return dataclasses.replace(settings, comparison_dir=rules)


def summary(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.splitlines() if ": " in line and not line.startswith(" "))


def metadata(uuid: str, cluster: str, benchmark: str, start: datetime, status: str = "success", camel: bool = False) -> dict:
    """A run of 20 minutes from ``start`` (no end while it is still running)."""
    begin = int(start.timestamp())
    end = None if status == "running" else begin + 1200
    return run_doc(uuid, cluster=cluster, benchmark=benchmark, status=status, start=begin, end=end, camel=camel)


def without_build_time(report: dict) -> dict:
    """What a rebuild reproduces: all but the build time and the verdict's details (which runs it
    compared with depends on which reports existed at that moment; its conclusion does not)."""
    block = {k: v for k, v in report["report"].items() if k not in ("built_at", "built_in_ms")}
    rest = {k: v for k, v in report.items() if k not in ("report", "_version", "verdict")}
    return {**rest, "report": block, "verdict": report["verdict"]["fingerprint"]}


async def publish_runs(hook_settings, docs: list[dict]) -> None:
    async with Publisher(hook_settings) as publisher:
        for doc in docs:
            assert not (await publisher.publish(make_event(doc))).spooled


async def load_results(es, settings: Settings, docs: list[dict]) -> None:
    kube_burner = [d for doc in docs for d in run_documents(doc["uuid"], datetime.fromisoformat(doc["start_date"]),
                                                             {doc["build_tag"]: 10}, cluster=doc["cluster_name"])]
    await index_docs(es, settings.results_index, kube_burner)


async def delete_reports(es, settings: Settings, uuids: set[str]) -> None:
    for uuid in uuids:
        await es.delete(index=settings.report_index, id=uuid, refresh=True)


async def test_replay_rebuilds_deleted_reports_exactly_as_run_built_them_and_twice_changes_nothing(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=5)
    docs = [metadata(f"{unique}-{i}", f"c-{unique}", "node-density", start + timedelta(minutes=30 * i)) for i in range(5)]
    await load_results(es, settings, docs)
    await publish_runs(hook_settings, docs)
    uuids = {doc["uuid"] for doc in docs}
    async with running_consumer(settings, tmp_path / "run.log") as live:
        built = await wait_for_reports(es, settings.report_index, uuids, timeout=90, consumer=live)
        assert await live.stop() == 0

    await delete_reports(es, settings, uuids)
    code, out = await cli(settings, "replay")
    assert code == 0
    assert summary(out)["finished runs"] == "5" and summary(out)["reports written"].startswith("5 ")
    replayed = await wait_for_reports(es, settings.report_index, uuids, timeout=10)
    assert {u: without_build_time(r) for u, r in replayed.items()} == {u: without_build_time(r) for u, r in built.items()}

    code, out = await cli(settings, "replay")
    assert code == 0 and summary(out)["unchanged"] == "5" and summary(out)["reports written"].startswith("0 ")
    again = await wait_for_reports(es, settings.report_index, uuids, timeout=10)
    assert {u: r["_version"] for u, r in again.items()} == {u: r["_version"] for u, r in replayed.items()}


async def test_replay_since_picks_exactly_the_runs_published_after_that_time(
    settings: Settings, hook_settings, es, unique: str
):
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=5)
    early = [metadata(f"{unique}-early-{i}", f"c-{unique}", "mystery-bench", start) for i in range(3)]
    late = [metadata(f"{unique}-late-{i}", f"c-{unique}", "mystery-bench", start) for i in range(3)]
    await publish_runs(hook_settings, early)
    await asyncio.sleep(1.5)
    since = datetime.now(timezone.utc)
    await asyncio.sleep(1.5)
    await publish_runs(hook_settings, late)

    code, out = await cli(settings, "replay", "--since", since.isoformat())
    assert code == 0, out
    assert summary(out)["finished runs"] == "3"
    await es.indices.refresh(index=settings.report_index)
    found = await es.search(index=settings.report_index, size=100, query={"match_all": {}})
    assert {hit["_id"] for hit in found["hits"]["hits"]} == {doc["uuid"] for doc in late}

    code, out = await cli(settings, "replay", "--uuid", early[0]["uuid"], "--dry-run")
    assert code == 0 and out.splitlines()[0].split("\t")[0] == early[0]["uuid"]
    assert summary(out)["finished runs"] == "1"


async def test_replay_beside_a_live_consumer_writes_each_report_once(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=5)
    docs = [metadata(f"{unique}-{i}", f"c-{unique}", "node-density", start + timedelta(minutes=20 * i)) for i in range(6)]
    await load_results(es, settings, docs)
    uuids = {doc["uuid"] for doc in docs}
    async with running_consumer(settings, tmp_path / "run.log") as live:
        await publish_runs(hook_settings, docs)
        replays = await asyncio.gather(cli(settings, "replay"), cli(settings, "replay"))
        reports = await wait_for_reports(es, settings.report_index, uuids, timeout=90, consumer=live)
        await asyncio.sleep(2)
        assert await live.stop() == 0
    assert [code for code, _ in replays] == [0, 0]
    final = await wait_for_reports(es, settings.report_index, uuids, timeout=5)
    assert {u: r["_version"] for u, r in final.items()} == {u: 1 for u in uuids}
    assert reports.keys() == final.keys()


@pytest.mark.slow
async def test_backfill_reads_past_ten_thousand_documents_and_builds_each_finished_run_once(
    settings: Settings, es, unique: str
):
    # No metric profile for this benchmark: the test is about reading the index, not Thanos.
    settings = dataclasses.replace(settings, benchmark_profiles=(("cluster-density*", ("control-plane",)),), max_in_flight=16)
    rng = random.Random(unique)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    finished, running = 10_050, 150
    docs = [metadata(f"{unique}-{i:05d}", f"c-{i % 7}", "tiny-bench", now - timedelta(hours=rng.randint(2, 40)),
                     camel=i % 2 == 1) for i in range(finished)]
    docs += [metadata(f"{unique}-run-{i}", "c-0", "tiny-bench", now - timedelta(hours=1), status="running")
             for i in range(running)]
    docs.append(metadata(f"{unique}-old", "c-0", "tiny-bench", now - timedelta(days=30)))  # outside --days 3
    await index_docs(es, settings.metadata_index, docs)

    code, out = await cli(settings, "backfill", "--days", "3", timeout=900)
    assert code == 0, out
    result = summary(out)
    assert result["read"] == str(finished + running)
    assert result["finished runs"] == str(finished)
    assert result["skipped (status not terminal)"] == str(running)
    assert result["reports written"].startswith(f"{finished} ") and result["failed"] == "0"
    await es.indices.refresh(index=settings.report_index)
    count = (await es.count(index=settings.report_index))["count"]
    assert count == finished
    found = await es.count(index=settings.report_index, query={"term": {"uuid": f"{unique}-old"}})
    assert found["count"] == 0


async def test_stale_only_rebuilds_exactly_the_reports_of_a_changed_profile(
    settings: Settings, es, unique: str, tmp_path
):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    profile = "name: extra\nversion: {version}\nqueries:\n  - name: extraGauge\n    query: max(extra_gauge{{$cluster}})\n"
    (profiles / "extra.yaml").write_text(profile.format(version=1))
    settings = dataclasses.replace(settings, profile_dir=profiles,
                                   benchmark_profiles=(("cluster-density*", ("extra",)), ("*", ("control-plane",))))
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)
    affected = [metadata(f"{unique}-cd-{i}", "c", "cluster-density-v2", start) for i in range(2)]
    others = [metadata(f"{unique}-nd-{i}", "c", "mystery-bench", start) for i in range(2)]
    await index_docs(es, settings.metadata_index, affected + others)

    code, out = await cli(settings, "backfill", "--days", "1", "--stale-only")
    assert code == 0 and summary(out)["reports written"].startswith("4 ")
    code, out = await cli(settings, "backfill", "--days", "1", "--stale-only")
    assert code == 0 and summary(out)["skipped (report up to date)"] == "4" and summary(out)["built"] == "0"

    (profiles / "extra.yaml").write_text(profile.format(version=2))
    code, out = await cli(settings, "backfill", "--days", "1", "--stale-only", "--dry-run")
    assert code == 0 and {line.split("\t")[0] for line in out.splitlines() if "\t" in line} == {d["uuid"] for d in affected}
    code, out = await cli(settings, "backfill", "--days", "1", "--stale-only")
    assert code == 0
    assert summary(out)["skipped (report up to date)"] == "2" and summary(out)["built"] == "2"
    reports = await wait_for_reports(es, settings.report_index, {d["uuid"] for d in affected + others}, timeout=5)
    for doc in affected:
        assert reports[doc["uuid"]]["report"]["profiles"] == [{"name": "extra", "version": 2}]
        assert reports[doc["uuid"]]["_version"] == 2
    for doc in others:
        assert reports[doc["uuid"]]["_version"] == 1


async def test_partial_reports_rebuilt_from_the_same_inputs_get_no_new_version(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    # Results that never came: the live consumer waited for them, the replays do not; the reports
    # say the same either way, so nothing is rewritten.
    settings = dataclasses.replace(settings, results_deadline_s=3.0)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=21)
    docs = [metadata(f"{unique}-{i}", f"c-{unique}", "node-density", start) for i in range(3)]
    await publish_runs(hook_settings, docs)
    uuids = {doc["uuid"] for doc in docs}
    async with running_consumer(settings, tmp_path / "run.log") as live:
        built = await wait_for_reports(es, settings.report_index, uuids, timeout=90, consumer=live)
        assert await live.stop() == 0
    assert all(report["report"]["status"] == "partial" for report in built.values())
    for _ in range(2):
        code, out = await cli(settings, "replay")
        assert code == 0 and summary(out)["unchanged"] == "3", out
    again = await wait_for_reports(es, settings.report_index, uuids, timeout=10)
    assert {u: r["_version"] for u, r in again.items()} == {u: 1 for u in uuids}
