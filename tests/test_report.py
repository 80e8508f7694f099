"""The report document's shape and fingerprint."""

from datetime import datetime, timezone

from consumer.report import REPORT_FORMAT_VERSION, build_report, fingerprint
from producer_hooks.events import make_event

DOC = {
    "uuid": "0b8a4e70-1", "cluster_name": "perf-a", "cluster_version": "4.17.3", "network_type": "OVNKubernetes",
    "platform": "AWS", "build_tag": "cluster-density-v2", "job_status": "success",
    "start_date": "2024-05-02T10:00:03+00:00", "end_date": "2024-05-02T11:00:00Z", "custom": {"x": 1},
}


def report(reasons=(), built_at=datetime(2024, 5, 2, 12, tzinfo=timezone.utc), metrics=None, built_in_ms=None):
    return build_report(make_event(DOC), results={"job": {"jobSummary": {"elapsedTime": 3.0}}},
                        metrics=metrics or {"podCPU": {"series": []}}, links={"cluster": "https://g/d/x"},
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
    assert built["report"]["format_version"] == REPORT_FORMAT_VERSION


def test_reasons_make_a_report_partial():
    built = report(reasons=["no jobSummary after 300 s"])
    assert built["report"]["status"] == "partial"
    assert built["report"]["reasons"] == ["no jobSummary after 300 s"]


def test_fingerprint_ignores_build_time_only():
    first = report(built_at=datetime(2024, 5, 2, 12, tzinfo=timezone.utc))
    later = report(built_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert first["report"]["fingerprint"] == later["report"]["fingerprint"] == fingerprint(later)
    changed = report(metrics={"podCPU": {"series": [{"labels": {}, "avg": 1.0, "max": 2.0, "samples": 3}]}})
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
