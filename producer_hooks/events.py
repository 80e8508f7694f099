"""Run-metadata events: the contract between the pipelines and the consumer.

A pipeline describes a run with a metadata document in one of two schemas (Airflow-era snake_case,
current camelCase). :func:`parse_run` normalises either into one canonical :class:`Run`; the
original document travels untouched beside it, for the report's ``metadata`` field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SCHEMA_VERSION = 1


class InvalidEvent(ValueError):
    """A metadata document or a Kafka message that cannot be a run event; names the field and value."""

    def __init__(self, message: str, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


@dataclass(frozen=True)
class Run:
    """The canonical run record, whatever schema the pipeline wrote."""

    uuid: str
    benchmark: str | None
    status: str  # lower case; 'failed' is spelled 'failure'
    cluster_name: str | None = None
    cluster_version: str | None = None
    platform: str | None = None
    network_type: str | None = None
    release_stream: str | None = None
    ci_system: str | None = None
    start: datetime | None = None  # timezone-aware, UTC
    end: datetime | None = None
    duration_s: float | None = None
    master_count: int | None = None
    worker_count: int | None = None
    infra_count: int | None = None
    workload_count: int | None = None
    total_count: int | None = None
    master_type: str | None = None
    worker_type: str | None = None
    infra_type: str | None = None
    workload_type: str | None = None
    build_url: str | None = None
    upstream_job: str | None = None
    upstream_job_build: str | None = None


@dataclass(frozen=True)
class Event:
    kind: str  # 'started' or 'finished'
    run: Run
    metadata: Mapping[str, Any]  # the document as the pipeline wrote it
