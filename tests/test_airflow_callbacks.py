"""Airflow task callbacks, given a context shaped like the one Airflow passes (Airflow is not installed).

Callbacks run in a worker thread with no event loop, as in an Airflow task process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from producer_hooks.airflow import report_callbacks
from producer_hooks.events import Event, decode_event
from producer_hooks.publisher import flush
from producer_hooks.settings import HookSettings
from tests.support.kafka import read_topic, topic_size

LOGICAL_DATE = datetime(2024, 5, 2, tzinfo=timezone.utc)
STARTED_AT = datetime(2024, 5, 2, 10, 0, 3, 123456, tzinfo=timezone.utc)
ENDED_AT = STARTED_AT + timedelta(minutes=37, seconds=12)


@dataclass
class FakeTaskInstance:
    """The attributes and method of Airflow's TaskInstance that the callbacks use."""

    task_id: str
    dag_id: str = "aws-4.16-nightly"
    run_id: str = "scheduled__2024-05-02T00:00:00+00:00"
    state: str | None = "running"
    start_date: datetime | None = STARTED_AT
    end_date: datetime | None = None
    try_number: int = 1
    hostname: str = "airflow-worker-1"
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def log_url(self) -> str:
        return f"http://airflow.example.com/log?dag_id={self.dag_id}&task_id={self.task_id}&execution_date=2024-05-02"

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms.get((task_ids or self.task_id, key))


def airflow_context(ti: FakeTaskInstance, **extra: Any) -> dict[str, Any]:
    dag_run = SimpleNamespace(dag_id=ti.dag_id, run_id=ti.run_id, logical_date=LOGICAL_DATE, execution_date=LOGICAL_DATE)
    return {
        "ti": ti,
        "task_instance": ti,
        "dag_run": dag_run,
        "dag": SimpleNamespace(dag_id=ti.dag_id),
        "run_id": ti.run_id,
        "logical_date": LOGICAL_DATE,
        **extra,
    }


def benchmark_task(uuid: str, task_id: str = "cluster-density-v2", **changes: Any) -> FakeTaskInstance:
    """A benchmark task whose run uuid was pushed to XCom by the DAG's 'generate-uuid' task."""
    return FakeTaskInstance(task_id=task_id, xcoms={("generate-uuid", "uuid"): uuid}, **changes)


CLUSTER = {"platform": "AWS", "cluster_name": "perf-416-aws", "network_type": "OVNKubernetes",
           "master_count": 3, "worker_count": "24", "release_stream": "4.16.0-0.nightly"}  # fmt: skip


async def call(callbacks: dict, name: str, context: dict) -> None:
    assert await asyncio.to_thread(callbacks[name], context) is None


def events_of(records: list) -> list[Event]:
    return [decode_event(record.key, record.value, record.headers) for record in records]


async def test_execute_then_success_publish_started_and_finished_events_from_the_context(
    hook_settings: HookSettings, unique: str
) -> None:
    callbacks = report_callbacks(settings=hook_settings, uuid_xcom_task="generate-uuid", **CLUSTER)
    ti = benchmark_task(unique)
    await call(callbacks, "on_execute_callback", airflow_context(ti))
    ti.state, ti.end_date = "success", ENDED_AT
    await call(callbacks, "on_success_callback", airflow_context(ti))

    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 2)
    started, finished = events_of(records)
    assert records[0].partition == records[1].partition and records[0].offset < records[1].offset
    assert (started.kind, started.run.status, started.run.end) == ("started", "running", None)
    assert (finished.kind, finished.run.status, finished.run.succeeded) == ("finished", "success", True)
    run = finished.run
    assert (run.uuid, run.benchmark, run.start, run.end, run.duration_s) == (
        unique, "cluster-density-v2", STARTED_AT, ENDED_AT, 2232.0,
    )  # fmt: skip
    assert (run.upstream_job, run.upstream_job_build, run.build_url) == (
        "aws-4.16-nightly", "aws-4.16-nightly/scheduled__2024-05-02T00:00:00+00:00/cluster-density-v2", ti.log_url,
    )  # fmt: skip
    assert (run.platform, run.cluster_name, run.network_type, run.master_count, run.worker_count, run.release_stream) == (
        "AWS", "perf-416-aws", "OVNKubernetes", 3, 24, "4.16.0-0.nightly",
    )  # fmt: skip
    assert finished.metadata["execution_date"] == "2024-05-02T00:00:00+00:00"
    assert finished.metadata["job_duration"] == "2232" and finished.metadata["try_number"] == 1


@pytest.mark.parametrize(
    ("callback", "ti_state", "status"),
    [
        ("on_failure_callback", "failed", "failure"),
        ("on_failure_callback", "upstream_failed", "upstream_failed"),
        ("on_failure_callback", "running", "failure"),  # state not yet stored when the callback runs
        ("on_success_callback", None, "success"),
    ],
)
async def test_finished_status_follows_the_callback_and_keeps_a_precise_failure_state(
    hook_settings: HookSettings, unique: str, callback: str, ti_state: str | None, status: str
) -> None:
    callbacks = report_callbacks(settings=hook_settings, uuid_xcom_task="generate-uuid")
    await call(callbacks, callback, airflow_context(benchmark_task(unique, state=ti_state, end_date=ENDED_AT)))

    [event] = events_of(await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 1))
    assert (event.kind, event.run.status) == ("finished", status)


async def test_a_finished_task_without_end_date_yet_ends_now(hook_settings: HookSettings, unique: str) -> None:
    callbacks = report_callbacks(settings=hook_settings, uuid_xcom_task="generate-uuid")
    started = datetime.now(timezone.utc) - timedelta(minutes=20)
    before = datetime.now(timezone.utc)
    await call(callbacks, "on_failure_callback",
               airflow_context(benchmark_task(unique, state="failed", start_date=started, end_date=None)))
    after = datetime.now(timezone.utc)

    [event] = events_of(await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 1))
    assert event.run.end is not None and before <= event.run.end <= after
    assert event.run.start == started


async def test_a_window_the_consumer_would_refuse_is_logged_and_not_published(
    hook_settings: HookSettings, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="producer_hooks")
    callbacks = report_callbacks(settings=hook_settings, uuid_xcom_task="generate-uuid")
    ahead = datetime.now(timezone.utc) + timedelta(hours=1)  # a worker whose clock runs an hour fast

    # Started long ago and ending now: longer than the 7 days a run may last.
    await call(callbacks, "on_failure_callback", airflow_context(benchmark_task(unique, state="failed", end_date=None)))
    await call(callbacks, "on_success_callback", airflow_context(benchmark_task(unique, state="success", end_date=ahead)))

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2 and all(m.startswith("run report: finished event not published: end_date: ") for m in messages)
    assert "a run may last at most 7 days (RUN_WINDOW_MAX_HOURS)" in messages[0]
    assert "in the future (now is " in messages[1]
    assert await topic_size(hook_settings.kafka, hook_settings.kafka.topic) == 0
    assert not hook_settings.spool_path.exists()


async def test_explicit_templated_and_callable_values_are_resolved_at_callback_time(
    hook_settings: HookSettings, unique: str
) -> None:
    ti = benchmark_task("unused", state="success", end_date=ENDED_AT)
    ti.xcoms[("install-cluster", "version")] = "4.16.7"
    task = SimpleNamespace(render_template=lambda content, context: content.replace("{{ run_id }}", context["run_id"]))
    facts = {"cluster_version": lambda context: context["ti"].xcom_pull(task_ids="install-cluster", key="version")}

    explicit = report_callbacks(settings=hook_settings, uuid=f"{unique}-fixed", **facts)
    templated = report_callbacks(settings=hook_settings, uuid=unique + "-{{ run_id }}")
    from_callable = report_callbacks(settings=hook_settings, uuid=lambda context: f"{unique}-{context['ti'].try_number}")
    for callbacks in (explicit, templated, from_callable):
        await call(callbacks, "on_success_callback", airflow_context(ti, task=task))

    events = events_of(await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 3))
    assert sorted(event.run.uuid for event in events) == sorted(
        [f"{unique}-fixed", f"{unique}-scheduled__2024-05-02T00:00:00+00:00", f"{unique}-1"]
    )
    assert next(e for e in events if e.run.uuid == f"{unique}-fixed").run.cluster_version == "4.16.7"


async def test_kafka_down_spools_the_event_without_raising_into_airflow(
    hook_settings: HookSettings, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    down = dataclasses.replace(hook_settings, kafka=dataclasses.replace(hook_settings.kafka, bootstrap_servers="127.0.0.1:1"))
    callbacks = report_callbacks(settings=down, uuid_xcom_task="generate-uuid", **CLUSTER)
    caplog.set_level(logging.WARNING, logger="producer_hooks")

    await call(callbacks, "on_failure_callback", airflow_context(benchmark_task(unique, state="failed", end_date=ENDED_AT)))

    assert f"finished event of run {unique} spooled (1 pending)" in caplog.text
    assert await topic_size(hook_settings.kafka, hook_settings.kafka.topic) == 0
    assert (await flush(hook_settings)).delivered == 1
    [event] = events_of(await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 1))
    assert (event.run.uuid, event.run.status, event.run.cluster_name) == (unique, "failure", "perf-416-aws")


async def test_problems_are_logged_never_raised_and_publish_nothing(
    hook_settings: HookSettings, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="producer_hooks")
    finished = {"state": "success", "end_date": ENDED_AT}

    def broken_xcom(**_: Any) -> Any:
        raise ConnectionError("metadata database unreachable")

    bad_facts = report_callbacks(settings=hook_settings, uuid_xcom_task="generate-uuid", master_count=-1)
    no_uuid = report_callbacks(settings=hook_settings)  # the task's own XCom: nothing pushed yet
    broken = report_callbacks(settings=hook_settings)
    ti_broken = benchmark_task(unique, **finished)
    ti_broken.xcom_pull = broken_xcom  # type: ignore[method-assign]

    await call(bad_facts, "on_success_callback", airflow_context(benchmark_task(unique, **finished)))
    await call(no_uuid, "on_execute_callback", airflow_context(benchmark_task(unique)))
    await call(broken, "on_success_callback", airflow_context(ti_broken))
    await call(no_uuid, "on_failure_callback", {"dag_run": None})

    messages = [record.getMessage() for record in caplog.records]
    assert "run report: finished event not published: master_count: -1 is negative (expected a count of nodes)" in messages
    assert any(m.startswith("run report: no run uuid") and "started event not published" in m for m in messages)
    assert "metadata database unreachable" in caplog.text
    assert "run report: finished event not published: context: no 'ti' (is this an Airflow task callback?)" in messages
    assert await topic_size(hook_settings.kafka, hook_settings.kafka.topic) == 0
    assert not hook_settings.spool_path.exists()


def test_importing_the_hooks_does_not_import_airflow() -> None:
    probe = "import sys, producer_hooks.airflow, producer_hooks.cli; print('airflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "False\n"), done.stderr
