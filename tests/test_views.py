"""`report-consumer show`, `list` and `compare`, run as users run them, against reports in the real
Elasticsearch."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta, timezone

import pytest

from consumer.kubeburner import shape_kube_burner
from consumer.metrics import PlannedQuery, entries
from consumer.profiles import Query
from consumer.report import build_report
from consumer.settings import Settings
from consumer.sink import write_report
from consumer.thanos import QueryResult, SeriesSummary
from consumer.views import since
from producer_hooks.events import make_event
from tests.support.consumer import settings_env
from tests.support.kubeburner import kube_burner_run
from tests.support.metadata import run_doc

NOW = datetime.now(timezone.utc).replace(microsecond=0)
GIB = 1024**3
# name -> (cluster, benchmark, status, started hours ago, version, reasons)
RUNS = {
    "base": ("perf-a", "node-density", "success", 50, "4.17.3", []),
    "next": ("perf-a", "node-density", "success", 26, "4.18.1", ["apiLatency: bad_data: parse error"]),
    "other": ("perf-b", "cluster-density-v2", "failure", 2, "4.16.0-0.nightly-2024-05-01-000000", []),
}
CPU = {"base": {"openshift-etcd": 0.4, "openshift-kube-apiserver": 1.6}, "next": {"openshift-etcd": 0.5, "openshift-kube-apiserver": 1.2},
       "other": {"openshift-etcd": 0.2}}
MEMORY = {"base": 1.5 * GIB, "next": 1.8 * GIB, "other": 0.7 * GIB}
FSYNC = {"base": 0.0042, "next": 0.0063, "other": 0.001}


def make_reports(unique: str) -> tuple[dict[str, dict], dict[str, object]]:
    reports, runs = {}, {}
    for n, (name, (cluster, benchmark, status, hours, version, reasons)) in enumerate(RUNS.items()):
        uuid = f"{name}-{unique}-{n}"
        start = NOW - timedelta(hours=hours)
        doc = run_doc(uuid, cluster=cluster, benchmark=benchmark, status=status, start=int(start.timestamp()),
                      end=int(start.timestamp()) + 2400)
        doc.update(cluster_version=version, master_count="3", worker_count="24")
        run = kube_burner_run(uuid, start, {benchmark: 300, "garbage-collection": 1}, seed=n)
        metrics = entries(PlannedQuery("control-plane", Query("podCPU", "x", "cores"), "sum(cpu)"),
                          QueryResult([SeriesSummary({"namespace": ns}, v, 2 * v, 241) for ns, v in CPU[name].items()], []))
        metrics += entries(PlannedQuery("control-plane", Query("podMemory", "x", "bytes"), "sum(mem)"),
                           QueryResult([SeriesSummary({"namespace": "openshift-etcd"}, MEMORY[name], 2 * MEMORY[name], 241)], []))
        metrics += entries(PlannedQuery("control-plane", Query("etcdWALFsyncDurationP99", "x", "seconds"), "q"),
                           QueryResult([SeriesSummary({}, FSYNC[name], 3 * FSYNC[name], 241)], []))
        metrics += entries(PlannedQuery("control-plane", Query("idle", "x"), "q"), QueryResult([], []))
        report = build_report(make_event(doc), results={"jobs": shape_kube_burner(run.docs).jobs}, metrics=metrics,
                              links={"cluster": f"https://grafana.example.com/d/c?var-cluster_name={cluster}"},
                              profiles=[("control-plane", 1)], reasons=reasons, built_at=NOW)
        reports[name], runs[name] = report, run
    return reports, runs


@pytest.fixture
async def stored(es, settings: Settings, unique: str):
    reports, runs = make_reports(unique)
    for report in reports.values():
        await write_report(es, settings.report_index, report, settings.retry)
    await es.indices.refresh(index=settings.report_index)
    return reports, runs


async def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    """`report-consumer ARGS`: exit code, standard output, standard error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer.cli", *args, env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def narrow(text: str) -> bool:
    """Every line fits 80 columns (links excepted: a URL is not cut)."""
    return all(len(line) <= 80 for line in text.splitlines() if "https://" not in line)


def ms(value: int) -> str:
    return f"{value:,} ms"


async def test_show_prints_jobs_latencies_metrics_with_units_reasons_and_links(settings, stored):
    reports, runs = stored
    report, run = reports["next"], runs["next"]
    code, out, _ = await cli(settings, "show", report["uuid"])
    assert code == 0 and narrow(out)

    job = run.jobs[0]
    lines = out.splitlines()
    [row] = [line for line in lines if line.startswith(f"  {job.name} ")]
    elapsed = round(job.elapsed)
    assert row.split() == [job.name, f"{elapsed // 60}m", f"{elapsed % 60:02d}s", f"{300}",
                           *ms(job.latency["Ready"]["P99"]).split(), *ms(job.latency["Ready"]["P50"]).split()]
    assert any(line.split() == ["Ready", *" ".join(ms(job.latency["Ready"][s]) for s in ("P99", "P95", "P50", "max")).split()]
               for line in lines)
    assert any(line.startswith("  garbage-collection (gc) ") for line in lines)
    assert "reason    apiLatency: bad_data: parse error" in lines
    words = " ".join(out.split())
    assert "cluster AWS, OpenShift 4.18.1, OVNKubernetes, 3 masters, 24 workers, 3 infra, 1 workload report" in words
    cpu = [line.split() for line in lines if line.startswith("  namespace=")][:2]
    assert cpu == [["namespace=openshift-etcd", "avg", "0.500", "cores", "max", "1.00", "cores"],
                   ["namespace=openshift-kube-apiserver", "avg", "1.20", "cores", "max", "2.40", "cores"]]
    assert "avg 1.80 GiB max 3.60 GiB" in words and "(no labels) avg 6.30 ms max 18.9 ms" in words
    assert "no data: idle" in lines  # queries that found nothing, in one line
    assert f"  cluster: {report['links']['cluster']}" in lines

    # A unique prefix names the run; --json is the stored document.
    code, out, _ = await cli(settings, "show", report["uuid"][:8], "--json")
    assert code == 0 and json.loads(out) == report


async def test_show_of_a_missing_or_ambiguous_run_says_so_in_one_line(es, settings, stored, unique):
    reports, _ = stored
    code, out, err = await cli(settings, "show", f"nothing-{unique}")
    assert code == 1 and out == ""
    assert err.strip() == (f"report-consumer: no report for 'nothing-{unique}' in index {settings.report_index} "
                           "(see `report-consumer list`)")
    code, _, err = await cli(settings, "show", "bas")
    assert code == 1 and "at least 4 characters" in err and len(err.strip().splitlines()) == 1

    rerun = {**reports["base"], "uuid": f"{reports['base']['uuid']}-rerun"}
    await write_report(es, settings.report_index, rerun, settings.retry)
    await es.indices.refresh(index=settings.report_index)
    code, out, err = await cli(settings, "show", "base-")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert f"({reports['base']['uuid']}, {rerun['uuid']}): give more of it" in err
    code, out, _ = await cli(settings, "show", reports["base"]["uuid"])  # a whole uuid is never ambiguous
    assert code == 0 and out.splitlines()[1] == f"uuid      {reports['base']['uuid']}"


async def test_list_filters_and_orders_newest_first(settings, stored):
    reports, _ = stored
    code, out, _ = await cli(settings, "list")
    assert code == 0 and narrow(out)
    rows = out.splitlines()
    assert rows[0].split() == ["uuid", "started", "(UTC)", "benchmark", "cluster", "version", "status"]
    assert [row[:8] for row in rows[1:4]] == [reports[n]["uuid"][:7] + "…" for n in ("other", "next", "base")]
    assert rows[2].split()[-2:] == ["4.18.1", "success*"] and rows[1].split()[-2:] == ["4.16.0", "failure"]
    assert rows[-1].startswith("* partial report")

    async def listed(*args: str) -> list[str]:
        code, out, _ = await cli(settings, "list", "--json", *args)
        assert code == 0
        return [row["uuid"] for row in json.loads(out)]

    uuid = {name: report["uuid"] for name, report in reports.items()}
    assert await listed() == [uuid["other"], uuid["next"], uuid["base"]]
    assert await listed("--cluster", "perf-a") == [uuid["next"], uuid["base"]]
    assert await listed("--benchmark", "cluster-density-v2") == [uuid["other"]]
    assert await listed("--since", "30h") == [uuid["other"], uuid["next"]]
    assert await listed("--since", (NOW - timedelta(hours=3)).isoformat()) == [uuid["other"]]
    assert await listed("--status", "partial") == [uuid["next"]]
    assert await listed("--status", "FAILED") == [uuid["other"]]
    assert await listed("--limit", "1") == [uuid["other"]]
    code, out, _ = await cli(settings, "list", "--cluster", "nowhere")
    assert (code, out.strip()) == (0, "no reports match")
    code, _, err = await cli(settings, "list", "--since", "last tuesday")
    assert code == 2 and "neither an ISO 8601 time nor a span" in err


async def test_compare_shows_each_job_and_series_with_absolute_and_relative_deltas(settings, stored):
    reports, runs = stored
    a, b = reports["base"], reports["next"]
    job_a, job_b = runs["base"].jobs[0], runs["next"].jobs[0]
    code, out, _ = await cli(settings, "compare", a["uuid"], b["uuid"])
    assert code == 0 and narrow(out)
    lines = out.splitlines()

    p99_a, p99_b = job_a.latency["Ready"]["P99"], job_b.latency["Ready"]["P99"]
    delta = p99_b - p99_a
    ready = next(line for line in lines if line.startswith("  Ready P99 "))
    assert ready.split() == ["Ready", "P99", *ms(p99_a).split(), *ms(p99_b).split(),
                             *(f"{delta:+,} ms").split(), f"{delta / p99_a:+.1%}"]
    assert any(line.startswith("job node-density") for line in lines)
    memory = [line.split() for line in lines if line.startswith("    avg ")]
    assert ["avg", "0.400", "0.500", "+0.100", "+25.0%"] in memory  # podCPU, openshift-etcd
    assert ["avg", "1.50", "GiB", "1.80", "GiB", "+307", "MiB", "+20.0%"] in memory
    assert ["avg", "4.20", "ms", "6.30", "ms", "+2.10", "ms", "+50.0%"] in memory

    code, out, _ = await cli(settings, "compare", a["uuid"][:8], b["uuid"][:8], "--json")
    assert code == 0
    compared = json.loads(out)
    assert (compared["a"]["uuid"], compared["b"]["uuid"]) == (a["uuid"], b["uuid"])
    [job] = [j for j in compared["jobs"] if j["name"] == job_a.name]
    for condition, stats in job_a.latency.items():
        for stat, value in stats.items():
            pair = job["values"][f"latency_ms.{condition}.{stat}"]
            other = job_b.latency[condition][stat]
            assert pair == {"a": value, "b": other, "delta": other - value, "relative": (other - value) / value}
    assert job["values"]["elapsed_s"]["delta"] == job_b.elapsed - job_a.elapsed
    [apiserver] = [m for m in compared["metrics"] if m["name"] == "podCPU" and m["labels"] == {"namespace": "openshift-kube-apiserver"}]
    assert apiserver["avg"] == {"a": 1.6, "b": 1.2, "delta": pytest.approx(-0.4), "relative": pytest.approx(-0.25)}


def test_since_takes_spans_and_times():
    now = datetime(2024, 5, 9, 12, tzinfo=timezone.utc)
    assert since("7d", now) == datetime(2024, 5, 2, 12, tzinfo=timezone.utc)
    assert since("90m", now) == datetime(2024, 5, 9, 10, 30, tzinfo=timezone.utc)
    assert since("2024-05-01T00:00:00Z") == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert since("2024-05-01T02:00:00+02:00") == datetime(2024, 5, 1, tzinfo=timezone.utc)
