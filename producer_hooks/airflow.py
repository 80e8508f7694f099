"""Airflow task callbacks that publish a run's events: started on execute, finished on success or failure.

    from producer_hooks.airflow import report_callbacks

    benchmark = BashOperator(
        task_id="cluster-density",
        ...,
        **report_callbacks(uuid_xcom_task="generate-uuid", platform="AWS", cluster_name="perf-1",
                           master_count=3, worker_count=24),
    )

The metadata document (Airflow-era snake_case schema) is built from the task's context and merged
with the cluster facts the DAG passes in; a fact may be a callable taking the context, evaluated at
callback time (e.g. to read the cluster version from an XCom). Facts win over derived fields.

The callbacks never raise into Airflow: when Kafka is down the event is spooled, and any other
problem (no uuid, invalid metadata, bad settings) is logged to the task log. Settings are read
from the worker's environment when the callback runs, unless given. Airflow itself is not
imported: the callbacks only read attributes of the context it passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from producer_hooks.events import TERMINAL_STATUSES, InvalidEvent, make_event
from producer_hooks.publisher import publish_sync
from producer_hooks.settings import HookSettings, SettingsError

log = logging.getLogger(__name__)

Context = Mapping[str, Any]
Callback = Callable[[Context], None]


def report_callbacks(
    *,
    settings: HookSettings | None = None,
    uuid: str | Callable[[Context], str | None] | None = None,
    uuid_xcom_key: str = "uuid",
    uuid_xcom_task: str | None = None,
    **cluster_facts: Any,
) -> dict[str, Callback]:
    """``on_execute_callback``, ``on_success_callback`` and ``on_failure_callback`` for an operator.

    The run uuid is ``uuid`` (a string, rendered as a Jinja template when it contains ``{{``, or a
    callable taking the context), or else the XCom ``uuid_xcom_key`` of task ``uuid_xcom_task``
    (default: the task itself). On execute the uuid must already exist, so a task that creates
    its own uuid gets no started event, only the finished one.
    """
    reporter = RunReporter(
        cluster_facts=cluster_facts,
        settings=settings,
        uuid=uuid,
        uuid_xcom_key=uuid_xcom_key,
        uuid_xcom_task=uuid_xcom_task,
    )
    return {
        "on_execute_callback": reporter.on_execute,
        "on_success_callback": reporter.on_success,
        "on_failure_callback": reporter.on_failure,
    }


@dataclass(frozen=True)
class RunReporter:
    cluster_facts: Mapping[str, Any] = field(default_factory=dict)
    settings: HookSettings | None = None
    uuid: str | Callable[[Context], str | None] | None = None
    uuid_xcom_key: str = "uuid"
    uuid_xcom_task: str | None = None

    def on_execute(self, context: Context) -> None:
        self._report(context, "running")

    def on_success(self, context: Context) -> None:
        self._report(context, "success")

    def on_failure(self, context: Context) -> None:
        self._report(context, "failure")

    def run_uuid(self, context: Context) -> str | None:
        if callable(self.uuid):
            return self.uuid(context)
        if isinstance(self.uuid, str):
            task = context.get("task")
            if "{{" in self.uuid and task is not None:
                return task.render_template(self.uuid, context)
            return self.uuid
        ti = _task_instance(context)
        return ti.xcom_pull(task_ids=self.uuid_xcom_task or ti.task_id, key=self.uuid_xcom_key)

    def _report(self, context: Context, status: str) -> None:
        try:
            uuid = self.run_uuid(context)
            if not uuid:
                source = self.uuid or f"XCom {self.uuid_xcom_key!r} of task {self.uuid_xcom_task or 'itself'!r}"
                log.warning("run report: no run uuid (from %s); %s event not published", source, _kind(status))
                return
            facts = {name: value(context) if callable(value) else value for name, value in self.cluster_facts.items()}
            settings = self.settings or HookSettings.from_env()
            document = task_document(context, status, str(uuid), facts)
            event = make_event(document, now=datetime.now(timezone.utc), limits=settings.limits)
            result = publish_sync(event, settings)
            if result.credentials_refused:
                log.error("run report: Kafka refused the credentials (%s); %s event of run %s spooled (%d pending); "
                          "fix the KAFKA_SASL_* settings, then run `report-hook flush`",
                          result.reason, event.kind, event.run.uuid, result.pending)
            elif result.spooled:
                log.warning("run report: Kafka unavailable (%s); %s event of run %s spooled (%d pending)",
                            result.reason, event.kind, event.run.uuid, result.pending)
            else:
                log.info("run report: %s event of run %s published", event.kind, event.run.uuid)
        except (InvalidEvent, SettingsError) as err:
            log.error("run report: %s event not published: %s", _kind(status), err)
        except Exception:  # noqa: BLE001 - a reporting problem must never fail or hang the task
            log.exception("run report: %s event not published", _kind(status))


def task_document(context: Context, status: str, uuid: str, facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The snake_case metadata document of the task in ``context``, as index.sh would index it.

    ``status`` is what the callback means (running, success, failure); a more precise terminal
    state of the task instance (e.g. upstream_failed) is kept. A finished task without an end date
    yet (callbacks may run before it is stored) ends now.
    """
    ti = _task_instance(context)
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None)
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id") or getattr(ti, "run_id", None)
    state = str(getattr(ti, "state", None) or "").lower()
    if status == "failure" and state in (TERMINAL_STATUSES | {"failed"}) - {"success"}:
        status = state

    start: datetime | None = getattr(ti, "start_date", None)
    doc: dict[str, Any] = {
        "uuid": uuid,
        "build_tag": ti.task_id,
        "job_status": status,
        "upstream_job": dag_id,
        "upstream_job_build": f"{dag_id}/{run_id}/{ti.task_id}",
        "build_url": getattr(ti, "log_url", None),
        "node_name": getattr(ti, "hostname", None) or None,
        "execution_date": _iso(_logical_date(context, dag_run)),
        "try_number": getattr(ti, "try_number", None),
    }
    if status != "running":
        end: datetime = getattr(ti, "end_date", None) or datetime.now(timezone.utc)
        start = start or end
        doc["end_date"] = _iso(end)
        doc["job_duration"] = str(max(0, round((_aware(end) - _aware(start)).total_seconds())))
    doc["start_date"] = doc["timestamp"] = _iso(start)
    doc.update(facts or {})
    return {name: value for name, value in doc.items() if value is not None}


def _task_instance(context: Context) -> Any:
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        raise InvalidEvent("context: no 'ti' (is this an Airflow task callback?)", "ti", None)
    return ti


def _logical_date(context: Context, dag_run: Any) -> datetime | None:
    # Airflow 3 dropped execution_date for logical_date; 2.x has both.
    for value in (getattr(dag_run, "logical_date", None), getattr(dag_run, "execution_date", None),
                  context.get("logical_date")):
        if value is not None:
            return value
    return None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _aware(value).astimezone(timezone.utc).isoformat()


def _kind(status: str) -> str:
    return "started" if status == "running" else "finished"


__all__ = ["RunReporter", "report_callbacks", "task_document"]
