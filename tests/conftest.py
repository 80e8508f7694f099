"""Fixtures: the real servers, and names of their own for every test.

The servers are started once per session by `scripts/services up` (a no-op when they already run).
Every test gets a fresh runs topic, dead-letter topic, consumer group and indices, so tests run in
any order, repeat, and never see each other's data.
"""

from __future__ import annotations

import dataclasses
import os
import uuid

import pytest

from consumer.elastic import connect
from consumer.settings import Settings
from consumer.topics import TopicSpec, delete_topics, ensure_topics
from producer_hooks.settings import HookSettings
from tests.support.prometheus import prometheus_with_basic_auth
from tests.support.secure import SecureServers, secure_servers
from tests.support.services import external, service_env, services


@pytest.fixture(scope="session")
def service_settings() -> Settings:
    """Settings for the local servers, as the product reads them from the environment."""
    if external():
        return Settings.from_env()
    services("up")
    return Settings.from_env({**os.environ, **service_env()})


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def settings(service_settings: Settings, unique: str):
    """Settings whose topics, group and indices belong to this test alone."""
    kafka = dataclasses.replace(service_settings.kafka, topic=f"test-runs-{unique}")
    settings = dataclasses.replace(
        service_settings,
        kafka=kafka,
        group=f"test-group-{unique}",
        dead_letter_topic=f"test-runs-{unique}.dead-letter",
        report_index=f"test-reports-{unique}",
        pending_index=f"test-reports-{unique}-pending",
        results_index=f"ripsaw-kube-burner-test-{unique}",
        metadata_index=f"perf_scale_ci-test-{unique}",
        grafana_url="https://grafana.example.com",
        results_deadline_s=20.0,
        retry_attempts=3,
        retry_max_wait_s=2.0,
        commit_interval_s=0.5,
        drain_timeout_s=20.0,
    )
    topics = {kafka.topic: TopicSpec(partitions=3), settings.dead_letter_topic: TopicSpec(partitions=1)}
    await ensure_topics(kafka, topics)
    yield settings
    try:
        await delete_topics(kafka, list(topics))
    except Exception:  # the broker may have been stopped by a fault test; names are unique anyway
        pass
    async with connect(settings.es) as es:
        await es.options(ignore_status=404).indices.delete(
            index=f"{settings.report_index},{settings.pending_index},{settings.results_index},{settings.metadata_index}",
            expand_wildcards="all",
            ignore_unavailable=True,  # else one index the test never made keeps the others from going
        )


@pytest.fixture
def hook_settings(settings: Settings, tmp_path) -> HookSettings:
    return HookSettings(kafka=settings.kafka, spool_path=tmp_path / "spool.jsonl", timeout_s=5.0)


@pytest.fixture
async def es(settings: Settings):
    async with connect(settings.es) as client:
        yield client


@pytest.fixture(scope="session")
def secure(tmp_path_factory) -> SecureServers:
    """Kafka with TLS and SCRAM listeners and Prometheus over HTTPS, on ports of their own, started
    once for the tests that need them."""
    if external():
        pytest.skip("starts native servers of its own")
    with secure_servers(tmp_path_factory.mktemp("tls-run")) as servers:
        yield servers


@pytest.fixture(scope="session")
def basic_auth_prometheus(tmp_path_factory) -> str:
    """The URL (without credentials) of a Prometheus of its own that answers only requests with HTTP
    basic auth (tests.support.prometheus.BASIC_AUTH_USER / BASIC_AUTH_PASSWORD)."""
    with prometheus_with_basic_auth(tmp_path_factory.mktemp("basic-auth-prometheus")) as url:
        yield url
