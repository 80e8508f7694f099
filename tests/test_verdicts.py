"""Verdicts against comparable histories stored as reports in the real Elasticsearch: regressions,
improvements, passes, too little history, acknowledged changes, and runs that are not comparable."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

import pytest

from consumer.comparisons import ComparisonError, load_rules, numbers_of, rule_for
from consumer.report import with_verdict
from consumer.settings import Settings
from consumer.verdict import judge, verdict_for
from tests.support.consumer import settings_env
from tests.support.verdicts import CPU, ELAPSED, P50, P99, Levels, history, hours_ago, report_of, store

RULES = load_rules()
RULE = rule_for("node-density", RULES)


async def judged(es, settings: Settings, report: dict) -> dict:
    """``report`` with the verdict the pipeline gives it, against what the index holds now."""
    verdict = await verdict_for(es, settings.report_index, settings.acks_index, RULES, report, settings.retry)
    return with_verdict(report, verdict)


def number(verdict: dict, name: str) -> dict:
    [entry] = [entry for entry in verdict["numbers"] if entry["name"] == name]
    return entry


@pytest.fixture
async def acks_index(es, settings: Settings):
    yield settings.acks_index
    await es.options(ignore_status=404).indices.delete(index=settings.acks_index)


async def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer.cli", *args, env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_run_25_percent_worse_on_one_number_is_a_regression_naming_it(es, settings, unique):
    rng = random.Random(11)
    runs = history(unique, 30, rng)
    await store(es, settings, runs)
    levels = Levels.noisy(rng, p99=1.25)
    report = await judged(es, settings, report_of(f"{unique}-now", hours_ago(1), levels))
    verdict = report["verdict"]

    assert verdict["status"] == "regression" and verdict["history_runs"] == 30
    assert verdict["regressions"] == [P99]
    p99 = number(verdict, P99)
    baseline = sorted(run["jobs"][0]["latency_ms"]["Ready"]["P99"] for run in runs)
    median = (baseline[14] + baseline[15]) / 2
    assert p99["value"] == levels.p99 and p99["baseline_median"] == pytest.approx(median)
    assert p99["delta"] == pytest.approx(levels.p99 - median)
    assert p99["delta_pct"] == pytest.approx((levels.p99 - median) / median * 100)
    assert p99["change_point"] is True and p99["p_value"] < 0.001 and p99["since"] == report["uuid"]
    assert 0 < p99["baseline_spread"] < 0.05 * median and p99["baseline_runs"] == 30
    assert [number(verdict, name)["status"] for name in (P50, ELAPSED, CPU)] == ["pass"] * 3
    assert verdict["history"] == [{"uuid": run["uuid"], "start_date": run["start_date"]} for run in runs]

    # Stored, the verdict is searchable: a dashboard counts regressions per number.
    await store(es, settings, [report])
    found = await es.search(index=settings.report_index, size=0, query={"term": {"verdict.status": "regression"}},
                            aggs={"numbers": {"nested": {"path": "verdict.numbers"}, "aggs": {"moved": {
                                "filter": {"term": {"verdict.numbers.status": "regression"}},
                                "aggs": {"name": {"terms": {"field": "verdict.numbers.name"}}}}}}})
    buckets = found["aggregations"]["numbers"]["moved"]["name"]["buckets"]
    assert found["hits"]["total"]["value"] == 1 and [b["key"] for b in buckets] == [P99]

    code, out, _ = await cli(settings, "show", report["uuid"])
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("verdict  regression against 30 comparable runs") for line in lines)
    [row] = [line for line in lines if line.endswith(P99)]
    assert row.split() == ["regression", f"{p99['delta_pct'] / 100:+.1%}", P99]
    assert f"{levels.p99:,.0f} ms against a median of {median:,.0f} ms" in " ".join(out.split())


async def test_a_normal_run_passes_and_a_better_one_is_an_improvement(es, settings, unique):
    rng = random.Random(12)
    await store(es, settings, history(unique, 30, rng))
    normal = await judged(es, settings, report_of(f"{unique}-normal", hours_ago(2), Levels.noisy(rng)))
    assert normal["verdict"]["status"] == "pass" and normal["verdict"]["regressions"] == []
    assert {entry["status"] for entry in normal["verdict"]["numbers"]} == {"pass"}

    better = await judged(es, settings, report_of(f"{unique}-better", hours_ago(1), Levels.noisy(rng, p50=0.75)))
    assert better["verdict"]["status"] == "improvement" and better["verdict"]["improvements"] == [P50]
    assert number(better["verdict"], P50)["delta_pct"] == pytest.approx(-25, abs=4)
    assert number(better["verdict"], P50)["change_point"] is True


def test_no_false_regression_in_100_trials_of_normal_runs():
    """30 runs with +-3% noise, then one more like them: how often is it called a regression (and
    how often is a change point found at it at all)? Then the same with a run 25% worse."""
    rng = random.Random(2024)
    regressions = change_points = detected = 0
    for trial in range(100):
        runs = [report_of(f"t{trial}-{i}", hours_ago(100 - i), Levels.noisy(rng)) for i in range(30)]
        verdict = judge(report_of(f"t{trial}-now", hours_ago(1), Levels.noisy(rng)), runs, [], RULE)
        regressions += verdict["status"] == "regression"
        change_points += any(entry["change_point"] for entry in verdict["numbers"])
        worse = judge(report_of(f"t{trial}-worse", hours_ago(1), Levels.noisy(rng, p99=1.25)), runs, [], RULE)
        detected += worse["regressions"] == [P99]
    print(f"false regressions: {regressions}/100; change points at a normal run: {change_points}/100 "
          f"({len(verdict['numbers'])} numbers each); 25% regressions detected: {detected}/100")
    assert regressions == 0 and detected == 100


async def test_with_two_comparable_runs_the_verdict_is_insufficient_history(es, settings, unique):
    rng = random.Random(13)
    await store(es, settings, history(unique, 2, rng))
    report = await judged(es, settings, report_of(f"{unique}-now", hours_ago(1), Levels.noisy(rng, p99=1.3)))
    verdict = report["verdict"]
    assert verdict["status"] == "insufficient-history" and verdict["history_runs"] == 2
    assert verdict["regressions"] == [] and verdict["method"] == "threshold"
    p99 = number(verdict, P99)
    # The threshold rule, labelled as such: 30% over the median of the two runs there are.
    assert (p99["method"], p99["status"], p99["change_point"], p99["baseline_runs"]) == ("threshold", "regression", False, 2)

    await store(es, settings, [report])
    code, out, _ = await cli(settings, "show", report["uuid"])
    assert code == 0 and "verdict  insufficient-history against 2 comparable runs" in out
    assert "threshold rule: too few comparable runs" in out


async def test_an_acknowledged_change_no_longer_makes_later_verdicts_regressions(es, settings, unique, acks_index):
    rng = random.Random(14)
    runs = history(unique, 30, rng)
    await store(es, settings, runs)
    jump = await judged(es, settings, report_of(f"{unique}-jump", hours_ago(2), Levels.noisy(rng, p99=1.25)))
    assert jump["verdict"]["regressions"] == [P99]
    await store(es, settings, [jump])
    later = report_of(f"{unique}-later", hours_ago(1), Levels.noisy(rng, p99=1.25))

    # Unacknowledged, the change stands: the next run at the new level is still a regression, since the jump.
    before = (await judged(es, settings, later))["verdict"]
    assert before["status"] == "regression" and number(before, P99)["since"] == jump["uuid"]
    assert number(before, P99)["change_point"] is False

    code, out, err = await cli(settings, "ack", jump["uuid"][:12], "--metric", P99, "--reason", "OCPBUGS-1234: expected")
    assert code == 0, err
    assert out.splitlines()[0] == f"acknowledged {P99} of run {jump['uuid']}: OCPBUGS-1234: expected"
    after = (await judged(es, settings, later))["verdict"]
    assert after["status"] == "pass" and number(after, P99)["status"] == "pass"
    assert number(after, P99)["baseline_from"] == jump["uuid"]  # the acknowledged level is the baseline now

    # The acked run itself, rebuilt: acked, not a regression.
    rebuilt = (await judged(es, settings, jump))["verdict"]
    assert rebuilt["status"] == "pass" and rebuilt["acked"] == [P99] and number(rebuilt, P99)["status"] == "acked"

    code, out, _ = await cli(settings, "acks", "--json")
    [ack] = json.loads(out)
    assert (ack["uuid"], ack["metric"], ack["reason"]) == (jump["uuid"], P99, "OCPBUGS-1234: expected")
    code, out, err = await cli(settings, "ack", jump["uuid"], "--metric", "nothing/such", "--reason", "x")
    assert code == 1 and out == "" and f"run {jump['uuid']} has no judged number 'nothing/such'" in err


async def test_runs_on_another_platform_or_worker_count_or_failed_never_enter_the_baseline(es, settings, unique):
    rng = random.Random(15)
    comparable = history(f"{unique}-aws", 30, rng, first_hours_ago=300)
    # More recent, and 25% worse: were they compared with, the run below would pass.
    others = [*history(f"{unique}-gcp", 30, rng, first_hours_ago=100, platform="GCP"),
              *history(f"{unique}-big", 30, rng, first_hours_ago=100, workers=120),
              *history(f"{unique}-failed", 10, rng, first_hours_ago=60, status="failure")]
    for report in others:
        for job in report["jobs"][:1]:
            job["latency_ms"]["Ready"]["P99"] *= 1.25
    await store(es, settings, [*comparable, *others])
    levels = Levels.noisy(rng, p99=1.25)
    verdict = (await judged(es, settings, report_of(f"{unique}-now", hours_ago(1), levels)))["verdict"]
    assert verdict["status"] == "regression" and verdict["regressions"] == [P99]
    assert [run["uuid"] for run in verdict["history"]] == [run["uuid"] for run in comparable]
    assert verdict["comparable"] == {"benchmark": "node-density", "openshift_platform": "AWS",
                                     "openshift_network_type": "OVNKubernetes", "worker_count": 24,
                                     "openshift_cluster_version_parts.major": 4, "openshift_cluster_version_parts.minor": 17}
    # A GCP run at the GCP level is judged against GCP runs only: it passes.
    gcp = (await judged(es, settings, report_of(f"{unique}-gcp-now", hours_ago(1), levels, platform="GCP")))["verdict"]
    assert gcp["status"] == "pass" and {run["uuid"][:len(unique) + 4] for run in gcp["history"]} == {f"{unique}-gcp"}
    # A failed run is not judged at all.
    failed = (await judged(es, settings, report_of(f"{unique}-fail-now", hours_ago(1), levels, status="failure")))["verdict"]
    assert failed["status"] == "not-judged" and "did not succeed" in failed["reason"]


def test_comparison_rules_from_a_folder_come_first_and_bad_files_say_where(tmp_path: Path):
    (tmp_path / "density.yaml").write_text(
        "rules:\n  - benchmarks: 'node-density*'\n    comparable: [benchmark, release_stream]\n    history: 20\n"
        "    numbers:\n      - job: '*'\n        value: latency_ms.Ready.P95\n        direction: lower\n        min_change: 5%\n")
    rules = load_rules(tmp_path)
    rule = rule_for("node-density-cni", rules)
    assert (rule.comparable, rule.history, rule.numbers[0].min_change_pct) == (("benchmark", "release_stream"), 20, 5.0)
    assert rule_for("cluster-density-v2", rules).label == "default.yaml: *"
    report = report_of("x-1", hours_ago(1), Levels(4000, 1500, 1800, 0.8))
    report["jobs"][0]["latency_ms"]["Ready"]["P95"] = 3000
    assert list(numbers_of(report, rule)) == ["node-density/latency_ms.Ready.P95"]

    for text, problem in [
        ("rules: [{benchmarks: '*', numbers: [{job: '*', value: latency_ms.Ready.P99, direction: up}]}]",
         "direction 'up' is not lower or higher"),
        ("rules: [{benchmarks: '*', comparable: [colour], numbers: [{job: '*', value: elapsed_s}]}]",
         "colour is not a comparable report field"),
        ("rules: [{benchmarks: '*', numbers: [{metric: podCPU, value: p99}]}]", "p99 is not a metric statistic"),
        ("rules: [{benchmarks: '*', numbers: [{job: '*', value: elapsed_s, min_change: lots}]}]",
         "min_change 'lots' is not a percentage"),
        ("rules: {", "not valid YAML"),
    ]:
        (tmp_path / "density.yaml").write_text(text)
        with pytest.raises(ComparisonError) as err:
            load_rules(tmp_path)
        assert str(err.value).startswith(f"{tmp_path / 'density.yaml'}: ") and problem in str(err.value)


async def test_bad_comparison_rules_or_webhook_url_stop_a_command_with_one_line(settings: Settings, tmp_path: Path):
    (tmp_path / "mine.yaml").write_text("rules: [{benchmarks: '*', numbers: [{job: '*', value: elapsed_s, direction: up}]}]")
    env = {**settings_env(settings), "COMPARISON_DIR": str(tmp_path)}

    async def run(env: dict[str, str]) -> tuple[int | None, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "consumer.cli", "backfill", "--days", "1", "--dry-run", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode, err.decode()

    code, err = await run(env)
    assert code == 2 and err.strip().splitlines() == [
        f"report-consumer: {tmp_path / 'mine.yaml'}: rules[0].numbers[0]: direction 'up' is not lower or higher"]
    code, err = await run({**settings_env(settings), "WEBHOOK_URL": "hooks.slack.com/services/T0/B0/s3cr3t-token"})
    assert code == 2 and "WEBHOOK_URL is not an http(s) URL" in err and "s3cr3t" not in err
