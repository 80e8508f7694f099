"""``report-hook`` as a pipeline step runs it: a separate process, settings from the environment.

Exit status 0 when published or spooled, 1 when ``flush`` leaves events behind or Kafka refuses the
credentials, 2 with one line on stderr for bad input (absurd run windows included); bad input
publishes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from consumer.topics import TopicSpec, ensure_topics
from producer_hooks.cli import ENV_FIELDS
from producer_hooks.events import Event, decode_event, make_event
from producer_hooks.settings import HookSettings, limits_from_env
from producer_hooks.spool import Spool
from tests.support.kafka import read_topic, topic_size
from tests.support.metadata import camel_doc, snake_doc
from tests.support.secure import PASSWORD, SecureServers
from tests.support.services import services

UNREACHABLE = "127.0.0.1:1"


def hook(
    settings: HookSettings, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``report-hook`` with the test's topic and spool, and no run variables but ``env``'s."""
    base = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in ENV_FIELDS and not name.startswith("AIRFLOW_CTX_")
    }
    base.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        RUNS_TOPIC=settings.kafka.topic,
        REPORT_HOOK_SPOOL=str(settings.spool_path),
        REPORT_HOOK_TIMEOUT=str(settings.timeout_s),
    )
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "producer_hooks.cli", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=base,
        timeout=120,
    )


def write(tmp_path: Path, doc: object, name: str = "metadata.json") -> str:
    path = tmp_path / name
    path.write_bytes(doc if isinstance(doc, bytes) else orjson.dumps(doc))
    return str(path)


def events_of(records: list) -> list[Event]:
    return [decode_event(record.key, record.value, record.headers) for record in records]


# -- publishing -----------------------------------------------------------------------------------


async def test_publish_file_delivers_the_event_and_exits_0(hook_settings: HookSettings, tmp_path: Path, unique: str) -> None:
    doc = snake_doc(unique)
    done = hook(hook_settings, "publish", write(tmp_path, doc))

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"published finished event of run {unique} to {hook_settings.kafka.topic}\n"
    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 1)
    assert events_of(records) == [make_event(doc)]


@pytest.mark.parametrize("args", [("publish", "-"), ("publish",)], ids=["dash", "no-file"])
async def test_publish_reads_the_document_from_stdin(hook_settings: HookSettings, unique: str, args: tuple) -> None:
    doc = camel_doc(unique, jobStatus="running", endDate="", endDateUnixTimestamp="")
    done = hook(hook_settings, *args, stdin=orjson.dumps(doc))

    assert done.returncode == 0, done.stderr
    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 1)
    assert events_of(records) == [make_event(doc)]
    assert list(records[0].headers)[0] == ("event-kind", b"started")


async def test_publish_from_env_reads_the_variables_index_sh_exports(hook_settings: HookSettings, unique: str) -> None:
    env = {
        "UUID": unique,
        "job_status": "running",  # lower case, as index.sh names its shell variables
        "platform": "AWS",
        "CLUSTER_NAME": "perf-upper",
        "cluster_name": "perf-lower",  # the upper-case variable wins
        "CLUSTER_VERSION": "4.16.3",
        "master_count": "3",
        "WORKER_COUNT": "24",
        "start_date": "2024-05-02T10:00:03.123456+00:00",
        "AIRFLOW_CTX_TASK_ID": "node-density-cni",
        "AIRFLOW_CTX_DAG_ID": "aws-4.16",
        "AIRFLOW_CTX_DAG_RUN_ID": "manual__2024-05-02",
        "AIRFLOW_CTX_EXECUTION_DATE": "2024-05-02T00:00:00+00:00",
    }
    done = hook(hook_settings, "publish", "--from-env", env=env)

    assert done.returncode == 0, done.stderr
    [event] = events_of(await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 1))
    assert event.metadata == {
        "uuid": unique,
        "platform": "AWS",
        "cluster_name": "perf-upper",
        "cluster_version": "4.16.3",
        "build_tag": "node-density-cni",
        "job_status": "running",
        "upstream_job": "aws-4.16",
        "upstream_job_build": "aws-4.16/manual__2024-05-02/node-density-cni",
        "execution_date": "2024-05-02T00:00:00+00:00",
        "start_date": "2024-05-02T10:00:03.123456+00:00",
        "master_count": "3",
        "worker_count": "24",
    }
    assert (event.kind, event.run.benchmark, event.run.master_count, event.run.worker_count) == (
        "started", "node-density-cni", 3, 24,
    )  # fmt: skip


async def test_dry_run_prints_the_normalised_event_and_publishes_nothing(
    hook_settings: HookSettings, tmp_path: Path, unique: str
) -> None:
    doc = camel_doc(unique)
    done = hook(hook_settings, "publish", "--dry-run", write(tmp_path, doc))

    assert done.returncode == 0, done.stderr
    shown = orjson.loads(done.stdout)
    assert shown["key"] == unique
    assert shown["headers"] == {"event-kind": "finished", "schema-version": "1"}
    assert shown["value"] == {"schema_version": 1, "kind": "finished", "run": make_event(doc).run.to_dict(), "metadata": doc}
    assert await topic_size(hook_settings.kafka, hook_settings.kafka.topic) == 0
    assert not hook_settings.spool_path.exists()


# -- bad input ------------------------------------------------------------------------------------

BAD_INPUT = [
    pytest.param(b"uuid: abc\n", (), {}, "metadata.json is not JSON", id="not-json"),
    pytest.param(b'["uuid", "abc"]', (), {}, "document: expected a JSON object, got an array", id="json-array"),
    pytest.param({k: v for k, v in snake_doc().items() if k != "uuid"}, (), {}, "uuid: missing", id="missing-uuid"),
    pytest.param(snake_doc(start_date="2024-13-45"), (), {}, "start_date: '2024-13-45' is not a date", id="bad-date"),
    pytest.param(snake_doc(master_count="-3"), (), {}, "master_count: '-3' is negative", id="negative-count"),
    pytest.param(camel_doc(workerNodesCount="lots"), (), {}, "workerNodesCount: 'lots' is not a whole number", id="text-count"),
    pytest.param(snake_doc(end_date="2024-05-01T00:00:00Z"), (), {}, "end_date: '2024-05-01T00:00:00Z' is before start_date", id="end-before-start"),
    pytest.param(snake_doc(job_status="exploded"), (), {}, "job_status: 'exploded' is not a known status", id="unknown-status"),
    pytest.param(snake_doc(blob="x" * 2_000_000), (), {}, "document: 2,000,", id="2mb-document"),
    pytest.param(snake_doc(), ("--kind", "started"), {}, "kind: 'started' contradicts job_status 'success'", id="kind-vs-status"),
    pytest.param(snake_doc(end_date=""), (), {}, "end_date: missing (a finished run needs", id="finished-without-end"),
    pytest.param(snake_doc(), (), {"KAFKA_SECURITY_PROTOCOL": "CARRIER_PIGEON"}, "KAFKA_SECURITY_PROTOCOL='CARRIER_PIGEON'", id="bad-setting"),
    pytest.param(snake_doc(), (), {"REPORT_HOOK_TIMEOUT": "soon"}, "REPORT_HOOK_TIMEOUT='soon' is not a number", id="bad-timeout"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "args", "env", "says"), BAD_INPUT)
async def test_bad_input_exits_2_with_one_line_naming_the_field_and_publishes_nothing(
    hook_settings: HookSettings, tmp_path: Path, doc: object, args: tuple, env: dict, says: str
) -> None:
    done = hook(hook_settings, "publish", *args, write(tmp_path, doc), env=env)

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("report-hook: ")
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert await topic_size(hook_settings.kafka, hook_settings.kafka.topic) == 0
    assert not hook_settings.spool_path.exists()


async def test_unreadable_file_and_empty_environment_exit_2(hook_settings: HookSettings, tmp_path: Path) -> None:
    missing = hook(hook_settings, "publish", str(tmp_path / "nowhere.json"))
    no_uuid = hook(hook_settings, "publish", "--from-env", env={"job_status": "running"})

    assert (missing.returncode, missing.stderr) == (2, f"report-hook: cannot read {tmp_path / 'nowhere.json'}: No such file or directory\n")
    assert (no_uuid.returncode, no_uuid.stderr) == (2, "report-hook: invalid event: uuid: missing or empty (every event needs the run uuid)\n")
    assert await topic_size(hook_settings.kafka, hook_settings.kafka.topic) == 0


# -- absurd run windows ---------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _absurd(case: str) -> tuple[tuple[str, ...], dict, dict, str]:
    """(args before the file, document or None for --from-env, environment, what stderr says)."""
    now = datetime.now(timezone.utc)
    ended = now - timedelta(minutes=1)
    if case == "1970-to-9999":
        doc = snake_doc(start_date="1970-01-01T00:00:00Z", end_date="9999-12-31T23:59:59Z", job_duration="")
        return (), doc, {}, "start_date: '1970-01-01T00:00:00Z' is before 2000-01-01T00:00:00Z"
    if case == "unset-start-from-env":  # export START_DATE="${START:-0}"
        env = {"UUID": "abc123-0", "JOB_STATUS": "success", "START_DATE": "0", "END_DATE": _iso(ended)}
        return ("--from-env",), None, env, "start_date: '0' is before 2000-01-01T00:00:00Z, the earliest date " \
            "accepted (unix time 0: is the variable that sets it unset?)"
    if case == "unset-unix-start":  # jq --argjson start "${START:-0}"
        doc = {k: v for k, v in camel_doc(startDateUnixTimestamp=0, endDate=_iso(ended)).items() if k != "startDate"}
        return (), doc, {}, "startDateUnixTimestamp: 0 is before 2000-01-01T00:00:00Z"
    if case == "8-day-window":
        doc = snake_doc(start_date=_iso(ended - timedelta(days=8)), end_date=_iso(ended), job_duration="")
        return (), doc, {}, f"end_date: '{_iso(ended)}' is 8 days after start_date"
    if case == "window-over-RUN_WINDOW_MAX_HOURS":
        doc = snake_doc(start_date=_iso(ended - timedelta(hours=3)), end_date=_iso(ended), job_duration="")
        return (), doc, {"RUN_WINDOW_MAX_HOURS": "2"}, "is 3 h after start_date"
    if case == "end-an-hour-ahead":
        doc = snake_doc(start_date=_iso(now - timedelta(hours=1)), end_date=_iso(now + timedelta(hours=1)))
        return (), doc, {}, "is 60 min in the future (now is "
    raise AssertionError(case)


ABSURD = ["1970-to-9999", "unset-start-from-env", "unset-unix-start", "8-day-window", "window-over-RUN_WINDOW_MAX_HOURS",
          "end-an-hour-ahead"]  # fmt: skip


@pytest.mark.parametrize("case", ABSURD)
@pytest.mark.parametrize("dry_run", [False, True], ids=["publish", "dry-run"])
async def test_absurd_run_windows_exit_2_naming_the_date_and_publish_nothing(
    hook_settings: HookSettings, tmp_path: Path, case: str, dry_run: bool
) -> None:
    args, doc, env, says = _absurd(case)
    files = () if doc is None else (write(tmp_path, doc),)
    done = hook(hook_settings, "publish", *(("--dry-run",) if dry_run else ()), *args, *files, env=env)

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("report-hook: invalid event: ") and done.stderr.count("\n") == 1
    assert says in done.stderr, done.stderr
    assert await topic_size(hook_settings.kafka, hook_settings.kafka.topic) == 0
    assert not hook_settings.spool_path.exists()


async def test_a_long_window_within_run_window_max_hours_is_published(
    hook_settings: HookSettings, tmp_path: Path, unique: str
) -> None:
    ended = datetime.now(timezone.utc) - timedelta(minutes=1)
    doc = snake_doc(unique, start_date=_iso(ended - timedelta(days=9)), end_date=_iso(ended), job_duration="")

    done = hook(hook_settings, "publish", write(tmp_path, doc), env={"RUN_WINDOW_MAX_HOURS": "240"})

    assert done.returncode == 0, done.stderr
    [record] = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 1)
    ten_days = limits_from_env({"RUN_WINDOW_MAX_HOURS": "240"})  # the consumer must be told the same
    assert decode_event(record.key, record.value, record.headers, limits=ten_days) == make_event(doc, limits=ten_days)


# -- outages --------------------------------------------------------------------------------------


async def test_unreachable_kafka_spools_with_a_warning_and_flush_delivers_later(
    hook_settings: HookSettings, tmp_path: Path, unique: str
) -> None:
    doc = snake_doc(unique)
    down = {"KAFKA_BOOTSTRAP_SERVERS": UNREACHABLE, "KAFKA_SASL_PASSWORD": "pa55-do-not-log"}

    spooled = hook(hook_settings, "-v", "publish", write(tmp_path, doc), env=down)
    still_down = hook(hook_settings, "flush", env=down)

    assert spooled.returncode == 0
    warning = [line for line in spooled.stderr.splitlines() if line.startswith("report-hook: ")]
    assert warning == [
        f"report-hook: warning: Kafka unavailable ({UNREACHABLE}: cannot connect); finished event of run {unique} "
        f"spooled to {hook_settings.spool_path} (1 pending, sent by the next publish or `report-hook flush`)"
    ]
    assert "pa55-do-not-log" not in spooled.stderr + spooled.stdout
    assert still_down.returncode == 1 and still_down.stderr.count("\n") == 1
    assert "1 still spooled" in still_down.stderr
    assert await topic_size(hook_settings.kafka, hook_settings.kafka.topic) == 0

    flushed = hook(hook_settings, "flush")
    assert (flushed.returncode, flushed.stdout) == (0, f"flushed 1 event(s) to {hook_settings.kafka.topic}; spool empty\n")
    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 1)
    assert events_of(records) == [make_event(doc)]


async def test_concurrent_hook_processes_share_one_spool_without_losing_events(
    hook_settings: HookSettings, tmp_path: Path, unique: str
) -> None:
    docs = [snake_doc(f"{unique}-{n}") for n in range(8)]
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in ENV_FIELDS and not name.startswith("AIRFLOW_CTX_")
    }
    env.update(KAFKA_BOOTSTRAP_SERVERS=UNREACHABLE, RUNS_TOPIC=hook_settings.kafka.topic,
               REPORT_HOOK_SPOOL=str(hook_settings.spool_path))
    processes = [
        subprocess.Popen([sys.executable, "-m", "producer_hooks.cli", "publish", write(tmp_path, doc, f"{n}.json")],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for n, doc in enumerate(docs)
    ]
    assert [process.wait(timeout=120) for process in processes] == [0] * 8

    flushed = hook(hook_settings, "flush")
    assert flushed.returncode == 0, flushed.stderr
    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 8)
    assert sorted(event.run.uuid for event in events_of(records)) == sorted(doc["uuid"] for doc in docs)


@pytest.mark.slow
async def test_broker_outage_spools_and_flush_delivers_every_event_once_in_order(
    hook_settings: HookSettings, tmp_path: Path, unique: str
) -> None:
    runs = [f"{unique}-a", f"{unique}-b"]
    docs = [
        snake_doc(runs[0], job_status="running", end_date="", job_duration=""),
        snake_doc(runs[1], job_status="running", end_date="", job_duration=""),
        snake_doc(runs[0], job_status="success"),
        snake_doc(runs[1], job_status="failed"),
    ]
    files = [write(tmp_path, doc, f"{n}.json") for n, doc in enumerate(docs)]
    try:
        services("down", "kafka")
        outcomes = [hook(hook_settings, "publish", file) for file in files]
    finally:
        services("up", "kafka")

    for n, done in enumerate(outcomes):
        assert done.returncode == 0, done.stderr
        assert done.stderr.startswith("report-hook: warning: Kafka unavailable") and done.stderr.count("\n") == 1
        assert f"({n + 1} pending" in done.stderr

    # The broker may take a moment to lead its partitions again: give flush a longer timeout.
    flushed = hook(hook_settings, "flush", env={"REPORT_HOOK_TIMEOUT": "60"})
    assert (flushed.returncode, flushed.stdout) == (0, f"flushed 4 event(s) to {hook_settings.kafka.topic}; spool empty\n")
    assert not hook_settings.spool_path.exists()

    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 4)
    assert len(records) == 4  # exactly once: read_topic waits a little for any duplicate
    for uuid in runs:
        mine = [record for record in records if record.key == uuid.encode()]
        assert events_of(mine) == [make_event(doc) for doc in docs if doc["uuid"] == uuid]


@pytest.mark.slow
async def test_refused_credentials_spool_the_event_and_exit_1_saying_authentication_failed(
    secure: SecureServers, hook_settings: HookSettings, tmp_path: Path, unique: str
) -> None:
    kafka = dataclasses.replace(secure.kafka(), topic=f"auth-runs-{unique}")
    await ensure_topics(kafka, {kafka.topic: TopicSpec(partitions=1)})
    wrong = {**secure.kafka_env(password="not-the-password"), "RUNS_TOPIC": kafka.topic}
    doc = snake_doc(unique)

    refused = hook(hook_settings, "publish", write(tmp_path, doc), env=wrong)
    still_refused = hook(hook_settings, "flush", env=wrong)

    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"report-hook: Kafka refused the credentials ({kafka.bootstrap_servers}: authentication failed for user "
        "'reports' with SCRAM-SHA-256 (Authentication failed during authentication due to invalid credentials with "
        f"SASL mechanism SCRAM-SHA-256)); finished event of run {unique} spooled to {hook_settings.spool_path} "
        "(1 pending); fix the KAFKA_SASL_* settings, then `report-hook flush`\n"
    )
    assert still_refused.returncode == 1 and still_refused.stderr.count("\n") == 1
    assert still_refused.stderr.startswith("report-hook: Kafka refused the credentials (")
    assert "authentication failed" in still_refused.stderr and "1 still spooled" in still_refused.stderr
    for done in (refused, still_refused):
        assert "not-the-password" not in done.stderr and "cannot connect" not in done.stderr
    async with Spool(hook_settings.spool_path).locked() as spool:
        [message] = spool.messages()
    assert decode_event(message.key, message.value, message.headers) == make_event(doc)

    fixed = hook(hook_settings, "flush", env={**wrong, "KAFKA_SASL_PASSWORD": PASSWORD})
    assert (fixed.returncode, fixed.stdout) == (0, f"flushed 1 event(s) to {kafka.topic}; spool empty\n"), fixed.stderr
    assert events_of(await read_topic(kafka, kafka.topic, 1)) == [make_event(doc)]
