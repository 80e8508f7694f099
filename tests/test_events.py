"""The event model: both metadata schemas into one Run, one-line errors, and the Kafka wire format.

Pure functions, no servers. ``snake_doc`` and ``camel_doc`` are also used by the other hook tests.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from producer_hooks.events import (
    MAX_EVENT_BYTES,
    SCHEMA_VERSION,
    InvalidEvent,
    Run,
    decode_event,
    encode_event,
    make_event,
    parse_date,
    parse_run,
)
from tests.support.metadata import camel_doc, filler, snake_doc

START = datetime(2024, 5, 2, 10, 0, 3, 123456, tzinfo=timezone.utc)
END = START + timedelta(minutes=42)




# -- normalisation --------------------------------------------------------------------------------


def test_snake_case_document_becomes_canonical_run() -> None:
    run = parse_run(snake_doc(job_status="FAILED"))
    assert run == Run(
        uuid="6f1b1e0e-0000-4000-8000-000000000001",
        benchmark="cluster-density-v2",
        status="failure",
        cluster_name="perf-416-aws",
        cluster_version="4.16.0-0.nightly-2024-05-01-000000",
        platform="AWS",
        network_type="OVNKubernetes",
        release_stream="4.16.0-0.nightly",
        start=START,
        end=END,
        duration_s=2520.0,
        master_count=3,
        worker_count=24,
        infra_count=3,
        workload_count=1,
        total_count=31,
        master_type="m6a.xlarge",
        worker_type="m6a.2xlarge",
        infra_type="r5.2xlarge",
        workload_type="m5.8xlarge",
        build_url="http://airflow.example.com/task?dag_id=aws-4.16&task_id=cluster-density-v2",
        upstream_job="aws-4.16",
        upstream_job_build="aws-4.16/scheduled__2024-05-02/cluster-density-v2",
    )
    assert run.finished and not run.succeeded


def test_camel_case_document_becomes_canonical_run_with_benchmark_not_build_tag() -> None:
    run = parse_run(camel_doc())
    assert run.benchmark == "node-density"  # not buildTag, which is the CI build id
    assert (run.status, run.ci_system, run.cluster_name, run.cluster_version) == (
        "failure", "PROW", "perf-417-gcp", "4.17.0-0.nightly-2024-06-01-000000",
    )  # fmt: skip
    assert (run.master_count, run.worker_count, run.infra_count, run.total_count) == (3, 120, 0, 123)
    assert run.workload_count is None and run.infra_type is None  # absent, and "" means absent
    assert run.start == datetime(2024, 6, 2, 8, tzinfo=timezone.utc)
    assert run.end == datetime(2024, 6, 2, 9, tzinfo=timezone.utc)
    assert run.duration_s == 3600.0
    assert (run.build_url, run.upstream_job, run.upstream_job_build) == (
        "https://prow.example.com/view/1797234567890", "periodic-ci-openshift-qe-ocp-qe-perfscale-ci", "1797234567890",
    )  # fmt: skip


def test_camel_case_unix_timestamps_stand_in_for_missing_dates() -> None:
    doc = camel_doc()
    del doc["startDate"], doc["endDate"]
    run = parse_run(doc)
    assert (run.start, run.end) == (datetime.fromtimestamp(1717315200, timezone.utc), datetime.fromtimestamp(1717318800, timezone.utc))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-02T10:00:03.123456+00:00", datetime(2024, 5, 2, 10, 0, 3, 123456, tzinfo=timezone.utc)),
        ("2024-05-02T10:00:03+00:00", datetime(2024, 5, 2, 10, 0, 3, tzinfo=timezone.utc)),
        ("2024-05-02T10:00:03Z", datetime(2024, 5, 2, 10, 0, 3, tzinfo=timezone.utc)),
        ("2024-05-02T10:00:03.5Z", datetime(2024, 5, 2, 10, 0, 3, 500000, tzinfo=timezone.utc)),
        ("2024-05-02T10:00:03.123", datetime(2024, 5, 2, 10, 0, 3, 123000, tzinfo=timezone.utc)),  # naive: UTC
        ("2024-05-02 10:00:03", datetime(2024, 5, 2, 10, 0, 3, tzinfo=timezone.utc)),
        ("2024-05-02T12:00:03+02:00", datetime(2024, 5, 2, 10, 0, 3, tzinfo=timezone.utc)),
        (1714644003, datetime(2024, 5, 2, 10, 0, 3, tzinfo=timezone.utc)),
        (1714644003.25, datetime(2024, 5, 2, 10, 0, 3, 250000, tzinfo=timezone.utc)),
        ("1714644003", datetime(2024, 5, 2, 10, 0, 3, tzinfo=timezone.utc)),
        (datetime(2024, 5, 2, 10, 0, 3), datetime(2024, 5, 2, 10, 0, 3, tzinfo=timezone.utc)),
    ],
)
def test_dates_in_every_seen_format_become_aware_utc(raw: object, expected: datetime) -> None:
    parsed = parse_date(raw, "start_date")
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("raw", "status", "finished", "succeeded"),
    [
        ("success", "success", True, True),
        ("SUCCEEDED", "success", True, True),
        ("Failed", "failure", True, False),
        ("failure", "failure", True, False),
        ("upstream_failed", "upstream_failed", True, False),
        (" Cancelled ", "cancelled", True, False),
        ("timeout", "timeout", True, False),
        ("RUNNING", "running", False, False),
        ("queued", "queued", False, False),
    ],
)
def test_status_is_normalised_case_insensitively(raw: str, status: str, finished: bool, succeeded: bool) -> None:
    run = parse_run(snake_doc(job_status=raw))
    assert (run.status, run.finished, run.succeeded) == (status, finished, succeeded)


def test_shell_placeholders_for_unset_values_count_as_absent() -> None:
    # index.sh writes unset shell variables as "" and jq -r writes null as "null".
    run = parse_run(snake_doc(job_status="running", end_date="null", job_duration="", cluster_name=""))
    assert (run.end, run.duration_s, run.cluster_name) == (None, None, None)


def test_duration_is_computed_from_the_dates_when_not_given() -> None:
    doc = snake_doc()
    del doc["job_duration"]
    assert parse_run(doc).duration_s == (END - START).total_seconds()


def test_to_dict_is_json_ready_with_utc_z_dates() -> None:
    data = parse_run(snake_doc()).to_dict()
    assert orjson.loads(orjson.dumps(data)) == data
    assert (data["start"], data["end"]) == ("2024-05-02T10:00:03.123456Z", "2024-05-02T10:42:03.123456Z")
    assert data["worker_count"] == 24 and data["benchmark"] == "cluster-density-v2"


# -- errors ---------------------------------------------------------------------------------------

BAD_DOCUMENTS = [
    pytest.param(["uuid", "x"], "document", "an array", id="json-array"),
    pytest.param("uuid", "document", "a string", id="json-string"),
    pytest.param({k: v for k, v in snake_doc().items() if k != "uuid"}, "uuid", "missing or empty", id="missing-uuid"),
    pytest.param(snake_doc(uuid="  "), "uuid", "missing or empty", id="empty-uuid"),
    pytest.param(snake_doc(start_date="2024-13-45"), "start_date", "'2024-13-45' is not a date", id="bad-date"),
    pytest.param(camel_doc(endDate="yesterday"), "endDate", "'yesterday' is not a date", id="bad-camel-date"),
    pytest.param(snake_doc(end_date="2024-05-02T09:00:00Z"), "end_date", "is before start_date", id="end-before-start"),
    pytest.param(snake_doc(master_count="-3"), "master_count", "'-3' is negative", id="negative-count"),
    pytest.param(camel_doc(workerNodesCount=-1), "workerNodesCount", "-1 is negative", id="negative-camel-count"),
    pytest.param(snake_doc(worker_count="twenty"), "worker_count", "'twenty' is not a whole number", id="text-count"),
    pytest.param(snake_doc(worker_count=2.5), "worker_count", "2.5 is not a whole number", id="fractional-count"),
    pytest.param(snake_doc(job_duration="long"), "job_duration", "'long' is not a number of seconds", id="bad-duration"),
    pytest.param(snake_doc(job_status="exploded"), "job_status", "'exploded' is not a known status", id="unknown-status"),
    pytest.param({"uuid": "u"}, "job_status", "missing", id="missing-status"),
    pytest.param(camel_doc(clusterName={"a": 1}), "clusterName", "is not a string", id="object-as-text"),
    pytest.param(snake_doc(blob="x" * 2_000_000), "document", "more than the 900,000 allowed", id="2mb-document"),
]


@pytest.mark.parametrize(("doc", "field", "says"), BAD_DOCUMENTS)
def test_bad_documents_are_rejected_with_one_line_naming_the_field(doc: object, field: str, says: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        make_event(doc)
    message = str(caught.value)
    assert message.startswith(f"{field}: ") and says in message
    assert "\n" not in message and len(message) < 300
    assert caught.value.field == field


def test_explicit_kind_contradicting_the_status_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match=r"^kind: 'started' contradicts job_status 'success'"):
        make_event(snake_doc(), "started")
    with pytest.raises(InvalidEvent, match=r"^kind: 'finished' contradicts jobStatus 'running'"):
        make_event(camel_doc(jobStatus="running"), "finished")
    with pytest.raises(InvalidEvent, match=r"^kind: 'done' is not one of started, finished"):
        make_event(snake_doc(), "done")


def test_finished_event_needs_both_dates() -> None:
    with pytest.raises(InvalidEvent, match=r"^end_date: missing \(a finished run needs") as caught:
        make_event(snake_doc(end_date=""))
    assert caught.value.field == "end_date"
    with pytest.raises(InvalidEvent, match=r"^startDate: missing"):
        make_event({k: v for k, v in camel_doc().items() if not k.startswith("startDate")})


# -- events ---------------------------------------------------------------------------------------


def test_kind_follows_the_status_and_metadata_stays_untouched() -> None:
    doc = camel_doc(jobStatus="running", endDate="", endDateUnixTimestamp="")
    original = orjson.loads(orjson.dumps(doc))
    started = make_event(doc)
    assert started.kind == "started" and started.run.end is None
    assert started.metadata == original and doc == original
    assert make_event(snake_doc()).kind == "finished"


def test_encoded_message_is_keyed_by_uuid_with_kind_and_version_headers() -> None:
    event = make_event(snake_doc())
    message = encode_event(event)
    assert message.key == b"6f1b1e0e-0000-4000-8000-000000000001"
    assert message.headers == [("event-kind", b"finished"), ("schema-version", str(SCHEMA_VERSION).encode())]
    assert orjson.loads(message.value) == {
        "schema_version": 1,
        "kind": "finished",
        "run": event.run.to_dict(),
        "metadata": snake_doc(),
    }


@pytest.mark.parametrize("doc", [snake_doc(), camel_doc(), camel_doc(jobStatus="running", endDate="")], ids=["snake", "camel", "started"])
def test_decoding_an_encoded_event_gives_it_back(doc: dict) -> None:
    event = make_event(doc)
    message = encode_event(event)
    assert decode_event(message.key, message.value, message.headers) == event


def test_event_too_large_for_kafka_is_rejected_when_encoded() -> None:
    # The document alone fits, but with the canonical run beside it the message would not.
    doc = snake_doc(blob=filler(MAX_EVENT_BYTES - len(orjson.dumps(snake_doc())) - 20))
    event = make_event(doc)
    with pytest.raises(InvalidEvent, match=r"^event: [\d,]+ bytes encoded, more than the 900,000 allowed"):
        encode_event(event)


def _body(**changes: object) -> bytes:
    body = orjson.loads(encode_event(make_event(snake_doc())).value)
    body.update(changes)
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


KEY = b"6f1b1e0e-0000-4000-8000-000000000001"
BAD_MESSAGES = [
    pytest.param(KEY, b"{not json", (), "value", "not JSON", id="malformed-json"),
    pytest.param(KEY, b"[1, 2]", (), "value", "expected a JSON object", id="not-an-object"),
    pytest.param(KEY, b"", (), "value", "empty message", id="empty"),
    pytest.param(KEY, _body(schema_version=None), (), "schema_version", "missing", id="no-version"),
    pytest.param(KEY, _body(schema_version=2), (), "schema_version", "2 is not supported", id="future-version"),
    pytest.param(KEY, _body(kind=None), (), "kind", "missing", id="no-kind"),
    pytest.param(KEY, _body(metadata=None), (), "metadata", "missing", id="no-metadata"),
    pytest.param(KEY, _body(metadata=snake_doc(master_count="-1")), (), "master_count", "negative", id="bad-metadata"),
    pytest.param(b"other-run", _body(), (), "key", "does not match uuid", id="key-mismatch"),
    pytest.param(None, _body(), (), "key", "missing", id="no-key"),
    pytest.param(KEY, _body(), [("event-kind", b"started")], "event-kind", "disagrees", id="header-mismatch"),
]


@pytest.mark.parametrize(("key", "value", "headers", "field", "says"), BAD_MESSAGES)
def test_malformed_messages_are_rejected_naming_the_field(
    key: bytes | None, value: bytes, headers: list, field: str, says: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(key, value, headers)
    assert str(caught.value).startswith(f"{field}: ") and says in str(caught.value)
    assert "\n" not in str(caught.value)
