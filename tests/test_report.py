"""The report document's shape and fingerprint."""

from datetime import datetime, timezone

import pytest

from consumer.report import REPORT_FORMAT_VERSION, build_report, fingerprint, run_summary, version_parts
from producer_hooks.events import make_event

DOC = {
    "uuid": "0b8a4e70-1", "cluster_name": "perf-a", "cluster_version": "4.17.3", "network_type": "OVNKubernetes",
    "platform": "AWS", "build_tag": "cluster-density-v2", "job_status": "success",
    "start_date": "2024-05-02T10:00:03+00:00", "end_date": "2024-05-02T11:00:00Z", "custom": {"x": 1},
    "master_count": "3", "worker_count": "24", "job_duration": "3597", "release_stream": "4.17.0-0.nightly",
}
NO_DATA = {"name": "podCPU", "profile": "control-plane", "query": "sum(x)", "status": "no data"}


def report(reasons=(), built_at=datetime(2024, 5, 2, 12, tzinfo=timezone.utc), metrics=None, built_in_ms=None):
    return build_report(make_event(DOC), results={"jobs": [{"name": "job", "phase": "job", "elapsed_s": 3.0}]},
                        metrics=metrics or [NO_DATA], links={"cluster": "https://g/d/x"},
                        profiles=[("control-plane", 2)], reasons=reasons, built_at=built_at, built_in_ms=built_in_ms)


def test_report_carries_cluster_fields_metadata_and_sections():
    built = report()
    assert built["openshift_cluster_name"] == "perf-a"
    assert built["openshift_cluster_version"] == "4.17.3"
    assert built["openshift_network_type"] == "OVNKubernetes"
    assert built["openshift_platform"] == "AWS"
    assert built["metadata"] == DOC
    assert (built["uuid"], built["benchmark"], built["job_status"]) == ("0b8a4e70-1", "cluster-density-v2", "success")
    assert (built["start_date"], built["end_date"]) == ("2024-05-02T10:00:03.000Z", "2024-05-02T11:00:00.000Z")
    assert built["report"]["status"] == "complete"
    assert built["report"]["profiles"] == [{"name": "control-plane", "version": 2}]
    assert built["report"]["format_version"] == REPORT_FORMAT_VERSION == 2
    assert built["jobs"] == [{"name": "job", "phase": "job", "elapsed_s": 3.0}]
    assert built["metrics"] == [{**NO_DATA, "end_date": "2024-05-02T11:00:00.000Z"}]  # the window's end, per series


def test_canonical_run_fields_are_typed_whatever_the_document_spelled():
    built = report()
    assert (built["master_count"], built["worker_count"], built["infra_count"]) == (3, 24, None)  # strings in DOC
    assert built["duration_s"] == 3597.0 and built["release_stream"] == "4.17.0-0.nightly"
    assert built["openshift_cluster_version_parts"] == {"major": 4, "minor": 17, "patch": 3, "number": 4_017_003,
                                                        "release": "4.17"}


@pytest.mark.parametrize("version, parts", [
    ("4.9.0", {"major": 4, "minor": 9, "patch": 0, "number": 4_009_000, "release": "4.9"}),
    ("4.14.0-0.nightly-2024-05-01-000000", {"major": 4, "minor": 14, "patch": 0, "number": 4_014_000, "release": "4.14"}),
    ("4.18", {"major": 4, "minor": 18, "number": 4_018_000, "release": "4.18"}),
    ("v1.30.5", {"major": 1, "minor": 30, "patch": 5, "number": 1_030_005, "release": "1.30"}),
    ("4.18.12345", {"major": 4, "minor": 18, "number": 4_018_000, "release": "4.18"}),
    ("nightly", None), ("", None), (None, None), ("4", None), ("4.12345", None),
])
def test_version_parts_order_as_numbers(version, parts):
    assert version_parts(version) == parts


def test_version_numbers_sort_where_version_strings_do_not():
    versions = ["4.9.0", "4.14.2", "4.18.1", "4.10.3"]
    assert sorted(versions) != sorted(versions, key=lambda v: version_parts(v)["number"])
    assert sorted(versions, key=lambda v: version_parts(v)["number"]) == ["4.9.0", "4.10.3", "4.14.2", "4.18.1"]


def test_summary_holds_the_highest_latency_of_each_condition_over_the_runs_jobs():
    jobs = [
        {"name": "a", "phase": "job", "latency_ms": {"Ready": {"P99": 900, "P95": 700, "P50": 300, "max": 1200, "avg": 5},
                                                     "PodScheduled": {"P99": 40}}},
        {"name": "b", "phase": "step", "step": 1, "latency_ms": {"Ready": {"P99": 1500.5, "P95": 600, "P50": 350}}},
        {"name": "garbage-collection", "phase": "gc", "elapsed_s": 31},
        {"phase": "job", "latency_ms": {"Ready": {"P99": 1000, "max": 1100}}},  # unattributed: still the run's
    ]
    assert run_summary(jobs) == {"latency_ms": {
        "PodScheduled": {"P99": 40},
        "Ready": {"P99": 1500.5, "P95": 700, "P50": 350, "max": 1200},
    }}
    assert list(run_summary(jobs)["latency_ms"]) == ["PodScheduled", "Ready"]  # kube-burner's order
    assert run_summary([{"name": "gc", "phase": "gc"}]) == {} == run_summary([])
    built = build_report(make_event(DOC), results={"jobs": jobs}, metrics=[], links={}, profiles=[], reasons=[],
                         built_at=datetime(2024, 5, 2, 12, tzinfo=timezone.utc))
    assert built["summary"]["latency_ms"]["Ready"]["P99"] == 1500.5 and built["jobs"] == jobs


def test_reasons_make_a_report_partial():
    built = report(reasons=["no jobSummary after 300 s"])
    assert built["report"]["status"] == "partial"
    assert built["report"]["reasons"] == ["no jobSummary after 300 s"]


def test_fingerprint_ignores_build_time_only():
    first = report(built_at=datetime(2024, 5, 2, 12, tzinfo=timezone.utc))
    later = report(built_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert first["report"]["fingerprint"] == later["report"]["fingerprint"] == fingerprint(later)
    changed = report(metrics=[{**NO_DATA, "status": "ok", "labels": {}, "avg": 1.0, "max": 2.0, "samples": 3}])
    assert changed["report"]["fingerprint"] != first["report"]["fingerprint"]


def test_the_build_duration_is_recorded_outside_the_fingerprint():
    quick, slow = report(built_in_ms=12), report(built_in_ms=3400)
    assert (quick["report"]["built_in_ms"], slow["report"]["built_in_ms"]) == (12, 3400)
    assert quick["report"]["fingerprint"] == slow["report"]["fingerprint"] == report()["report"]["fingerprint"]
    assert "built_in_ms" not in report()["report"]


def test_results_are_awaited_only_until_the_deadline_after_the_run_ended():
    from datetime import timedelta

    from consumer.pipeline import results_wait

    run = make_event(DOC).run  # ended 2024-05-02T11:00:00Z
    assert results_wait(run, 300, run.end + timedelta(seconds=10)) == 290
    assert results_wait(run, 300, run.end + timedelta(days=400)) == 0  # a backfilled run: read once
    failed = make_event({**DOC, "job_status": "failure"}).run
    assert results_wait(failed, 300, failed.end) == 0


def test_the_verdict_counts_in_the_fingerprint_by_its_conclusion_only():
    from consumer.report import with_verdict

    verdict = {"status": "pass", "history_runs": 30, "numbers": [{"name": "x", "baseline_median": 4000.0}],
               "fingerprint": "conclusion-1"}
    first = with_verdict(report(), verdict)
    # A history one run longer moves the median a little: the same conclusion, nothing to rewrite.
    longer = with_verdict(report(), {**verdict, "history_runs": 31, "numbers": [{"name": "x", "baseline_median": 4003.0}]})
    assert longer["report"]["fingerprint"] == first["report"]["fingerprint"] != report()["report"]["fingerprint"]
    changed = with_verdict(report(), {**verdict, "status": "regression", "fingerprint": "conclusion-2"})
    assert changed["report"]["fingerprint"] != first["report"]["fingerprint"]
    assert changed["verdict"]["status"] == "regression" and first["verdict"]["history_runs"] == 30
