"""TLS end to end: a broker with TLS and SCRAM listeners and a Prometheus serving HTTPS only (the
`secure` fixture, tests/support/secure.py)."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from consumer.settings import Settings
from consumer.thanos import Thanos, ThanosError
from consumer.topics import TopicSpec, ensure_topics
from producer_hooks.events import make_event
from producer_hooks.publisher import publish
from producer_hooks.settings import HookSettings
from tests.support.consumer import running_consumer, wait_for_reports
from tests.support.kafka import read_topic
from tests.support.prometheus import Series, openmetrics
from tests.support.secure import PASSWORD, SecureServers

pytestmark = pytest.mark.slow


async def test_events_travel_over_tls_with_scram_and_bad_credentials_or_trust_are_refused(secure: SecureServers, unique: str, tmp_path):
    kafka = dataclasses.replace(secure.kafka(), topic=f"tls-runs-{unique}")
    await ensure_topics(kafka, {kafka.topic: TopicSpec(partitions=1)})
    doc = {"uuid": f"{unique}-tls", "cluster_name": "c", "build_tag": "node-density", "job_status": "success",
           "start_date": "2024-05-02T10:00:00Z", "end_date": "2024-05-02T11:00:00Z"}

    delivered = await publish(make_event(doc), HookSettings(kafka=kafka, spool_path=tmp_path / "ok.jsonl", timeout_s=20))
    assert (delivered.spooled, delivered.delivered) == (False, 1)

    wrong_password = dataclasses.replace(secure.kafka(password="not-the-password"), topic=kafka.topic)
    refused = await publish(make_event({**doc, "uuid": f"{unique}-refused"}),
                            HookSettings(kafka=wrong_password, spool_path=tmp_path / "pw.jsonl", timeout_s=10))
    assert refused.spooled and refused.credentials_refused
    assert "authentication failed for user 'reports' with SCRAM-SHA-256" in (refused.reason or "")
    assert "not-the-password" not in (refused.reason or "")

    system_trust = Path("/etc/ssl/certs/ca-certificates.crt")
    untrusted = dataclasses.replace(secure.kafka("SSL", ca=system_trust), topic=kafka.topic)
    rejected = await publish(make_event({**doc, "uuid": f"{unique}-untrusted"}),
                             HookSettings(kafka=untrusted, spool_path=tmp_path / "ca.jsonl", timeout_s=10))
    assert rejected.spooled and not rejected.credentials_refused  # named, but not a matter of credentials
    assert "TLS handshake failed: CERTIFICATE_VERIFY_FAILED" in (rejected.reason or "")

    over_ssl = dataclasses.replace(secure.kafka("SSL"), topic=kafka.topic)
    records = await read_topic(over_ssl, kafka.topic, 1, timeout=20)
    assert [record.key for record in records] == [f"{unique}-tls".encode()]


async def test_thanos_over_https_needs_its_ca(secure: SecureServers, service_settings: Settings):
    trusted = dataclasses.replace(service_settings.thanos, url=secure.prometheus_url, ca_file=secure.ca)
    now = datetime.now(timezone.utc)
    async with Thanos(trusted, service_settings.retry) as thanos:
        result = await thanos.summarize("vector(1)", now.replace(microsecond=0), now.replace(microsecond=0))
    assert [(s.avg, s.max, s.samples) for s in result.series] == [(1.0, 1.0, 1)]

    untrusted = dataclasses.replace(trusted, ca_file=None)
    async with Thanos(untrusted, service_settings.retry) as thanos:
        with pytest.raises(ThanosError):
            await thanos.summarize("vector(1)", now, now)


async def test_a_report_is_built_with_kafka_over_scram_and_thanos_over_https(
    secure: SecureServers, settings: Settings, es, unique: str, tmp_path
):
    cluster = f"tls-{unique}"
    end = int(time.time()) // 10 * 10
    start = end - 600
    values = [float(i % 7) for i in range(61)]
    series = tmp_path / "series.om"
    series.write_text(openmetrics([Series("tls_gauge", {"openshift_cluster_name": cluster},
                                          [(start + 10 * i, v) for i, v in enumerate(values)])]))
    secure.services("load-series", str(series))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tls.yaml").write_text("name: tls\nversion: 1\nqueries:\n  - name: gauge\n    query: max(tls_gauge{$cluster})\n")

    kafka = dataclasses.replace(secure.kafka(), topic=f"tls-runs-{unique}")
    tls_settings = dataclasses.replace(
        settings, kafka=kafka, dead_letter_topic=f"{kafka.topic}.dead-letter", profile_dir=profiles,
        benchmark_profiles=(("*", ("tls",)),),
        thanos=dataclasses.replace(settings.thanos, url=secure.prometheus_url, ca_file=secure.ca))
    await ensure_topics(kafka, {kafka.topic: TopicSpec(3), tls_settings.dead_letter_topic: TopicSpec(1)})
    doc = {"uuid": f"{unique}-secure", "cluster_name": cluster, "build_tag": "mystery-bench", "job_status": "success",
           "start_date": datetime.fromtimestamp(start, timezone.utc).isoformat(),
           "end_date": datetime.fromtimestamp(end, timezone.utc).isoformat()}
    assert not (await publish(make_event(doc), HookSettings(kafka=kafka, spool_path=tmp_path / "s.jsonl"))).spooled

    env = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "reports",
           "KAFKA_SASL_PASSWORD": PASSWORD, "KAFKA_SSL_CAFILE": str(secure.ca), "THANOS_CA_FILE": str(secure.ca)}
    async with running_consumer(tls_settings, tmp_path / "consumer.log", "--log-level", "DEBUG", **env) as consumer:
        reports = await wait_for_reports(es, tls_settings.report_index, {doc["uuid"]}, timeout=90, consumer=consumer)
        assert await consumer.stop() == 0
    [gauge] = [m for m in reports[doc["uuid"]]["metrics"] if m["name"] == "gauge"]
    assert (gauge["avg"], gauge["max"], gauge["samples"]) == (pytest.approx(sum(values) / len(values)), max(values), len(values))
    assert PASSWORD not in consumer.logs()
