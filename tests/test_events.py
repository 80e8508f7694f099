"""The event model: both metadata schemas into one Run, one-line errors, and the Kafka wire format.

Pure functions, no servers. ``snake_doc`` and ``camel_doc`` are also used by the other hook tests.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from producer_hooks.events import (
    MAX_EVENT_BYTES,
    SCHEMA_VERSION,
    EventLimits,
    InvalidEvent,
    Run,
    decode_event,
    encode_event,
    make_event,
    parse_date,
    parse_run,
)
from producer_hooks.settings import HookSettings, SettingsError, limits_from_env
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


# -- limits on what one run may cost ---------------------------------------------------------------

NOW = datetime(2024, 6, 2, 12, 0, tzinfo=timezone.utc)


def window_doc(start: object, end: object, **changes: object) -> dict:
    return snake_doc(start_date=start, end_date=end, timestamp=start, job_duration="", **changes)


ABSURD_WINDOWS = [
    pytest.param(window_doc("1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"), "start_date",
                 "'1970-01-01T00:00:00Z' is before 2000-01-01T00:00:00Z, the earliest date accepted (unix time 0",
                 id="1970-to-9999"),
    pytest.param(window_doc("0", "2024-06-02T11:00:00Z"), "start_date", "'0' is before 2000-01-01T00:00:00Z, "
                 "the earliest date accepted (unix time 0: is the variable that sets it unset?)", id="unset-start-0"),
    pytest.param({k: v for k, v in camel_doc(startDateUnixTimestamp=0).items() if k != "startDate"},
                 "startDateUnixTimestamp", "0 is before 2000-01-01T00:00:00Z", id="camel-unix-0"),
    pytest.param(window_doc("1999-12-31T23:59:59Z", "2000-01-01T00:30:00Z"), "start_date",
                 "is before 2000-01-01T00:00:00Z", id="last-second-of-1999"),
    pytest.param(window_doc("2024-05-25T11:00:00Z", "2024-06-02T11:00:00Z"), "end_date",
                 "'2024-06-02T11:00:00Z' is 8 days after start_date '2024-05-25T11:00:00Z'; a run may last at most "
                 "7 days (RUN_WINDOW_MAX_HOURS)", id="8-day-window"),
    pytest.param(window_doc("2024-06-02T11:00:00Z", "2024-06-02T13:00:00Z"), "end_date",
                 "'2024-06-02T13:00:00Z' is 60 min in the future (now is 2024-06-02T12:00:00Z; at most 5 min ahead "
                 "is accepted)", id="end-an-hour-ahead"),
    pytest.param(window_doc("2024-06-02T12:06:00Z", "2024-06-02T12:07:00Z"), "end_date", "7 min in the future",
                 id="whole-run-ahead"),
    pytest.param(snake_doc(job_status="running", start_date="2025-06-02T12:00:00Z", end_date=""), "start_date",
                 "365 days in the future", id="started-next-year"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "field", "says"), ABSURD_WINDOWS)
def test_absurd_windows_are_refused_naming_the_field_and_the_limit(doc: dict, field: str, says: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        make_event(doc, now=NOW)
    assert str(caught.value).startswith(f"{field}: ") and says in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value) and caught.value.field == field


def test_windows_up_to_the_limits_are_accepted() -> None:
    week = make_event(window_doc("2024-05-26T12:00:00Z", "2024-06-02T12:00:00Z"), now=NOW)
    assert week.run.end - week.run.start == timedelta(days=7)
    slack = make_event(window_doc("2024-06-02T11:00:00Z", "2024-06-02T12:04:59Z"), now=NOW)  # clocks disagree
    assert slack.run.end == datetime(2024, 6, 2, 12, 4, 59, tzinfo=timezone.utc)
    assert make_event(window_doc("2000-01-01T00:00:00Z", "2000-01-01T01:00:00Z"), now=NOW).run.start.year == 2000


def test_without_now_only_the_future_goes_unchecked() -> None:
    ahead = window_doc("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z")
    assert make_event(ahead).run.start.year == 2030
    with pytest.raises(InvalidEvent, match=r"^end_date: .* a run may last at most 7 days"):
        make_event(window_doc("2024-05-01T00:00:00Z", "9999-12-31T23:59:59Z"))


def test_limits_are_configurable() -> None:
    day_and_a_half = EventLimits(max_window=timedelta(hours=36))
    doc = window_doc("2024-06-01T00:00:00Z", "2024-06-02T13:00:00Z")  # 37 h
    with pytest.raises(InvalidEvent, match=r"^end_date: .* is 37 h after .* at most 36 h \(RUN_WINDOW_MAX_HOURS\)$"):
        make_event(doc, now=NOW + timedelta(hours=2), limits=day_and_a_half)
    assert make_event(doc, now=NOW + timedelta(hours=2)).run.duration_s == 37 * 3600


def test_decoding_judges_an_event_by_when_it_was_published() -> None:
    message = encode_event(make_event(window_doc("2024-06-02T11:00:00Z", "2024-06-02T12:00:00Z")))
    # Replayed a year later: still valid, as it was when published.
    assert decode_event(message.key, message.value, message.headers, now=NOW + timedelta(days=365)).run.end == NOW
    with pytest.raises(InvalidEvent, match=r"^end_date: .* 60 min in the future"):
        decode_event(message.key, message.value, message.headers, now=NOW - timedelta(hours=1))
    with pytest.raises(InvalidEvent, match=r"^end_date: .* at most 30 min"):
        decode_event(message.key, message.value, message.headers, limits=EventLimits(max_window=timedelta(minutes=30)))


@pytest.mark.parametrize(
    ("value", "window"),
    [(None, timedelta(days=7)), ("", timedelta(days=7)), ("36", timedelta(hours=36)), ("0.5", timedelta(minutes=30))],
)
def test_run_window_max_hours_sets_the_longest_window(value: str | None, window: timedelta) -> None:
    env = {} if value is None else {"RUN_WINDOW_MAX_HOURS": value}
    assert limits_from_env(env) == EventLimits(max_window=window)
    assert HookSettings.from_env(env).limits == limits_from_env(env)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e300", "a week"])
def test_run_window_max_hours_must_be_a_positive_number(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        limits_from_env({"RUN_WINDOW_MAX_HOURS": value})
    assert str(caught.value) == f"RUN_WINDOW_MAX_HOURS={value!r} is not a positive number of hours"


# -- bare metadata documents ----------------------------------------------------------------------


@pytest.mark.parametrize("doc", [snake_doc(), camel_doc(), camel_doc(jobStatus="running", endDate="")],
                         ids=["snake", "camel", "camel-running"])
@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
@pytest.mark.parametrize("with_headers", [True, False], ids=["headers", "no-headers"])
def test_a_bare_metadata_document_is_an_event_whose_kind_follows_its_status(
    doc: dict, with_key: bool, with_headers: bool
) -> None:
    expected = make_event(doc)
    key = doc["uuid"].encode() if with_key else None
    headers = [("event-kind", expected.kind.encode()), ("trace", b"\xff\xfe")] if with_headers else []

    assert decode_event(key, orjson.dumps(doc), headers) == expected


def test_a_bare_document_may_have_keys_named_like_the_envelope() -> None:
    # kube-burner 1.9 nested cluster facts under "metadata"; free-form keys may say "kind" or "run".
    doc = camel_doc(kind="ocp", metadata={"platform": "GCP", "k8sVersion": "v1.30"}, run={"id": 3})
    event = decode_event(None, orjson.dumps(doc))
    assert (event.kind, event.run.uuid, event.metadata) == ("finished", doc["uuid"], doc)


def test_a_bare_document_checks_its_key_and_headers_when_present() -> None:
    value = orjson.dumps(snake_doc())
    with pytest.raises(InvalidEvent, match=r"^key: b'other-run' does not match uuid '6f1b1e0e-0000-4000-8000-000000000001'$"):
        decode_event(b"other-run", value)
    with pytest.raises(InvalidEvent, match=r"^event-kind: header 'started' disagrees with job_status 'success', "
                                           r"which makes it a 'finished' event$"):
        decode_event(None, value, [("event-kind", b"started")])
    with pytest.raises(InvalidEvent, match=r"^schema-version: header '2' is not supported"):
        decode_event(None, value, [("schema-version", b"2")])
    with pytest.raises(InvalidEvent, match=r"^uuid: missing or empty"):
        decode_event(None, orjson.dumps({"job_status": "success", "kind": "finished"}))
    assert decode_event(b"", value).run.uuid == snake_doc()["uuid"]  # an empty key, as some clients send none


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ([("event-kind", b"\xff\xfe")], r"^event-kind: header b'\\xff\\xfe' is not UTF-8$"),
        ([("schema-version", b"\xc3")], r"^schema-version: header b'\\xc3' is not UTF-8$"),
        ([("event-kind", None)], r"^event-kind: header has no value$"),
        ([("event-kind", b"finished"), ("event-kind", b"started")], r"^event-kind: header given twice"),
        ([(b"event-kind", b"started")], r"^event-kind: header 'started' disagrees"),
        ([("event-kind",)], r"^headers: \('event-kind',\) is not a \(name, value\) pair$"),
    ],
    ids=["kind-not-utf8", "version-not-utf8", "no-value", "repeated", "bytes-name", "not-a-pair"],
)
def test_odd_headers_give_a_one_line_invalid_event(headers: list, says: str) -> None:
    for value in (orjson.dumps(snake_doc()), encode_event(make_event(snake_doc())).value):  # bare and envelope
        with pytest.raises(InvalidEvent, match=says):
            decode_event(KEY, value, headers)


def _odd_values() -> list[bytes]:
    rng = random.Random(8)
    envelope = encode_event(make_event(snake_doc())).value
    bare = orjson.dumps(camel_doc())
    odd = [
        b"null", b"true", b"0", b"-1e999", b"1" * 5000, b'"NaN"', b"NaN", b"Infinity", b"[]", b"{}", b"\xff\xfe",
        b"\x00" * 10, b"[" * 5000, b'{"a":' * 2000 + b"1" + b"}" * 2000, "\u00e9".encode("latin-1"),
        b'{"uuid": null, "job_status": null}', b'{"uuid": [], "jobStatus": {}}', b'{"uuid": "\\ud800"}',
        b'{"uuid": 1e400}', b'{"uuid": 18446744073709551616, "job_status": "success"}',
        b'{"schema_version": true, "kind": "finished", "metadata": {}}',
        b'{"schema_version": 1, "kind": ["finished"], "metadata": []}',
        b'{"schema_version": 1, "kind": "finished", "metadata": "uuid"}',
        b'{"schema_version": null}',
    ]
    for uuid in ("NaN", "Infinity", "-0", "1e400", 18446744073709551615, -1, 0.5, True, None):
        odd.append(orjson.dumps(snake_doc(uuid=uuid)))
    for name in ("start_date", "end_date", "job_duration", "master_count", "job_status", "cluster_name"):
        for value in ("NaN", "inf", "-inf", "1e400", "9" * 400, 1e308, -1e308, 2**64 - 1, [], {}, None, True,
                      "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2024-02-30T00:00:00Z", "\x00"):
            odd.append(orjson.dumps(snake_doc(**{name: value})))
    for seed in (envelope, bare):
        for _ in range(300):
            data = bytearray(seed)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            odd.append(bytes(data))
            odd.append(seed[: rng.randrange(len(seed))])
    odd.extend(rng.randbytes(rng.randint(1, 300)) for _ in range(300))
    return odd


def test_decode_event_raises_nothing_but_invalid_event_whatever_the_bytes() -> None:
    keys = [None, b"", KEY, b"\xff", b"6f1b1e0e-0000-4000-8000-000000000002", "a-str", 12]
    headers = [None, [], [("event-kind", b"finished")], [("event-kind", b"\x80")], [("schema-version", None)],
               [(b"\xff", b"\xff")], [("x",)], 7]
    accepted = refused = 0
    for n, value in enumerate(_odd_values()):
        try:
            event = decode_event(keys[n % len(keys)], value, headers[n % len(headers)], now=NOW)
        except InvalidEvent as err:
            assert "\n" not in str(err) and len(str(err)) < 400, str(err)
            refused += 1
        else:
            encode_event(event)  # whatever is accepted can be sent again (dead letters, replays)
            accepted += 1
    assert refused > 1000 and accepted > 0  # corrupted bytes inside strings may still be a valid event


# -- what the report index can store ---------------------------------------------------------------


def nested(depth: int, leaf: object = "v") -> dict:
    """A document ``depth`` objects deep (itself included)."""
    doc: object = leaf
    for _ in range(depth - 1):
        doc = {"k": doc}
    return snake_doc(deep=doc)


@pytest.mark.parametrize(
    "uuid",
    ["6f1b1e0e-0000-4000-8000-000000000001", "abc123-0", "perf-scale-ci:42", "Run_7.try.2",
     "scheduled__2024-05-02T00:00:00+00:00", "a" * 512],
)  # fmt: skip
def test_run_ids_in_use_are_accepted(uuid: str) -> None:
    assert make_event(snake_doc(uuid=uuid)).run.uuid == uuid


@pytest.mark.parametrize(
    ("uuid", "says"),
    [(".", "is not a usable run id"), ("..", "is not a usable run id"), ("_hidden", "is not a usable run id"),
     ("-rf", "is not a usable run id"), ("a b", "is not a usable run id"), ("a/b", "is not a usable run id"),
     ("a\tb", "is not a usable run id"), ("a\x00b", "is not a usable run id"), ("caf\u00e9", "is not a usable run id"),
     ("a" * 513, "is 513 bytes, more than the 512 of an Elasticsearch id")],
)  # fmt: skip
def test_unusable_run_ids_are_refused(uuid: str, says: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        make_event(snake_doc(uuid=uuid))
    assert str(caught.value).startswith("uuid: ") and says in str(caught.value)
    assert "letters, digits and . _ : + -" in str(caught.value) or "512" in str(caught.value)


def test_strings_keys_and_nesting_are_held_to_the_index_limits() -> None:
    # At the limits: 'note', a NUL and the value make one 32,766-byte term; 20 objects deep.
    assert make_event(snake_doc(note="x" * 32_761)).metadata["note"] == "x" * 32_761
    assert make_event(nested(20)).metadata["deep"]
    cases = [
        (snake_doc(note="\u00e9" * 16_383 + "x"),
         "note: a string of 32,767 bytes, more than Lucene's limit of 32,766 bytes for one indexed term"),
        (snake_doc(note="x" * 32_762), "note: its key path and value take 32,767 bytes together, more than Lucene's"),
        (snake_doc(tags={"a" * 30_000: "x" * 3_000}), "tags." + "a" * 55 + "...: its key path and value take 33,006 bytes"),  # shortened
        (snake_doc(**{"k" * 32_767: None}), "document: a key of 32,767 bytes, more than Lucene's"),
        (nested(21), "deep" + ".k" * 19 + ": objects nested 21 deep, more than Elasticsearch's limit of 20"),
        (nested(20, {}), "deep" + ".k" * 19 + ": objects nested 21 deep"),
        (snake_doc(tags=[[{"a\x00b": 1}]]), "tags: key 'a\\x00b' contains a NUL character, which Elasticsearch refuses"),
    ]  # fmt: skip
    for doc, says in cases:
        with pytest.raises(InvalidEvent) as caught:
            make_event(doc)
        assert str(caught.value).startswith(says), str(caught.value)[:200]
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
