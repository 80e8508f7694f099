"""`report-consumer run --http-port`: /healthz, /readyz and /metrics, as an operator's Prometheus and
process manager see them."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from datetime import datetime, timezone

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from consumer.health import POLL_STALE_S, STALL_S, liveness, readiness
from consumer.settings import Settings
from consumer.telemetry import Telemetry
from producer_hooks.events import make_event
from producer_hooks.publisher import Publisher
from tests.support.consumer import command, running_consumer, settings_env, wait_for_reports
from tests.support.es import index_docs
from tests.support.health import get, scrape, wait_for_status
from tests.support.kubeburner import run_documents
from tests.support.metadata import run_doc
from tests.support.prometheus import query_until, scraping_prometheus
from tests.support.services import closed_port, services

ES = frozenset({("server", "Elasticsearch")})


async def test_the_counters_a_prometheus_scrapes_match_the_events_published(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    port = closed_port()
    end = int(time.time()) - 600
    start = end - 900
    complete = [f"{unique}-c{i}" for i in range(3)]  # results indexed before their event: complete
    partial = [f"{unique}-p{i}" for i in range(4)]  # a benchmark without a results reader: partial
    finished = {uuid: run_doc(uuid, cluster=f"c-{unique}", benchmark="node-density" if uuid in complete else
                              "mystery-bench", status="success", start=start, end=end) for uuid in complete + partial}
    started = [run_doc(uuid, cluster=f"c-{unique}", benchmark="mystery-bench", status="running", start=start, end=None)
               for uuid in (complete + partial)[:5]]
    await index_docs(es, settings.results_index, [doc for uuid in complete for doc in
                                                   run_documents(uuid, datetime.fromtimestamp(start, timezone.utc),
                                                                 {"node-density": 5})])

    (tmp_path / "prometheus").mkdir()
    with scraping_prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"]) as prometheus:
        async with running_consumer(settings, tmp_path / "consumer.log", run_args=("--http-port", str(port))) as consumer:
            ready = await wait_for_status(port, "/readyz", 200, timeout=60, consumer=consumer)
            async with Publisher(hook_settings) as publisher:
                for doc in started:
                    await publisher.publish(make_event(doc))
                for doc in finished.values():
                    await publisher.publish(make_event(doc))
            producer = AIOKafkaProducer(**settings.kafka.client_options())
            await producer.start()
            try:
                for value in (b"{not json", b"[1, 2]"):
                    await producer.send_and_wait(settings.kafka.topic, key=b"x", value=value)
            finally:
                await producer.stop()
            reports = await wait_for_reports(es, settings.report_index, set(finished), timeout=90, consumer=consumer)

            expected = {
                'report_consumer_events_total{kind="started"}': 5.0,
                'report_consumer_events_total{kind="finished"}': 7.0,
                'report_consumer_events_total{kind="invalid"}': 2.0,
                'report_consumer_events_total{kind="unreadable"}': 0.0,
                'report_consumer_reports_total{outcome="created",status="complete"}': 3.0,
                'report_consumer_reports_total{outcome="created",status="partial"}': 4.0,
                "sum(report_consumer_reports_total)": 7.0,
                "report_consumer_superseded_events_total": 0.0,
                "report_consumer_build_duration_seconds_count": 7.0,
                'report_consumer_dead_letters_total{reason="invalid_event"}': 2.0,
                "sum(report_consumer_dead_letters_total)": 2.0,
                "report_consumer_runs_in_flight": 0.0,
                "report_consumer_assigned_partitions": 3.0,
                "count(report_consumer_partition_lag)": 3.0,
                "sum(report_consumer_partition_lag)": 0.0,  # everything consumed is done
                "sum(report_consumer_outages_total)": 0.0,
                "min(report_consumer_server_up)": 1.0,
                'up{job="report-consumer"}': 1.0,
            }
            assert await query_until(prometheus, expected, timeout=30) == expected
            assert (await get(port, "/healthz")) == (200, {"alive": True, "detail": "consuming"})
            assert await consumer.stop() == 0

    assert ready["ready"] is True and ready["checks"]["kafka"]["detail"] == "3 partitions assigned"
    # What the counters say is what a reader of the reports finds.
    assert {uuid: report["report"]["status"] for uuid, report in reports.items()} == {
        **dict.fromkeys(complete, "complete"), **dict.fromkeys(partial, "partial")}


@pytest.mark.slow
async def test_readyz_turns_false_within_10_s_of_elasticsearch_stopping_and_true_once_it_is_back(
    settings: Settings, hook_settings, es, unique: str, tmp_path
):
    settings = dataclasses.replace(settings, retry_attempts=2, retry_max_wait_s=3.0)
    port = closed_port()
    end = int(time.time()) - 600
    doc = run_doc(f"{unique}-during", cluster=f"c-{unique}", benchmark="mystery-bench", status="success",
                  start=end - 900, end=end)
    async with running_consumer(settings, tmp_path / "consumer.log", run_args=("--http-port", str(port))) as consumer:
        await wait_for_status(port, "/readyz", 200, timeout=60, consumer=consumer)
        await asyncio.to_thread(services, "down", "elasticsearch")
        try:
            unready = await wait_for_status(port, "/readyz", 503, timeout=10, consumer=consumer)
            # A run that finishes meanwhile waits for Elasticsearch: an outage, counted.
            async with Publisher(hook_settings) as publisher:
                await publisher.publish(make_event(doc))
            published = time.monotonic()
            await asyncio.sleep(8)
            waiting = await get(port, "/readyz")
            alive = await get(port, "/healthz")
            during = await scrape(port)
        finally:
            await asyncio.to_thread(services, "up", "elasticsearch")
        ready = await wait_for_status(port, "/readyz", 200, timeout=30, consumer=consumer)
        await wait_for_reports(es, settings.report_index, {doc["uuid"]}, timeout=60, consumer=consumer)
        reported = time.monotonic()
        after = await scrape(port)
        assert await consumer.stop() == 0

    checks = unready["checks"]
    assert checks["elasticsearch"]["ok"] is False and checks["kafka"]["ok"] and checks["thanos"]["ok"], unready
    assert waiting[0] == 503 and "waiting for Elasticsearch" in waiting[1]["checks"]["elasticsearch"]["detail"], waiting
    assert alive == (200, {"alive": True, "detail": "consuming"})  # not ready, but nothing to restart
    assert ready["ready"] is True
    assert during[("report_consumer_server_up", ES)] == 0
    assert during[("report_consumer_outages_total", ES)] == 1
    assert during[("report_consumer_outage_retries_total", ES)] >= 1
    assert after[("report_consumer_server_up", ES)] == 1
    assert after[("report_consumer_reports_total", frozenset({("outcome", "created"), ("status", "partial")}))] == 1
    # The run waited from (about) its publication until its report: that is the outage's length.
    seconds = after[("report_consumer_outage_seconds_total", ES)]
    assert 5 <= seconds <= reported - published, (seconds, reported - published)


async def test_a_port_in_use_ends_run_at_once_with_one_line_naming_the_setting(settings: Settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await command("consumer.cli", "run", "--http-port", str(port), env=settings_env(settings), timeout=60)
    assert done.code == 2
    assert done.err.strip().splitlines() == [
        f"report-consumer: cannot serve HTTP on 127.0.0.1:{port} (address already in use); choose another "
        "HTTP_PORT (or --http-port) or HTTP_HOST"], done.err
    bad = await command("consumer.cli", "run", env=settings_env(settings, HTTP_PORT="http"), timeout=60)
    assert (bad.code, bad.err.strip()) == (2, "report-consumer: HTTP_PORT='http' is not a whole number")


# -- the rules, on a clock of the test's own --------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def consuming(clock: Clock) -> Telemetry:
    telemetry = Telemetry(clock)
    telemetry.consuming()
    telemetry.assigned({TopicPartition("runs", 0)})
    telemetry.polled()
    for server in ("Kafka", "Elasticsearch", "Thanos"):
        telemetry.probed(server, True, "answers")
    return telemetry


def test_a_loop_that_stops_polling_while_kafka_answers_is_not_alive_one_waiting_for_kafka_is():
    clock = Clock()
    telemetry = consuming(clock)
    assert liveness(telemetry, clock.now).ok
    clock.now += STALL_S + 1
    telemetry.probed("Kafka", True, "answers")
    assert not liveness(telemetry, clock.now).ok
    telemetry.probed("Kafka", False, "unreachable: KafkaUnreachable")
    assert liveness(telemetry, clock.now).ok
    telemetry.stopping()  # draining: not polling, and rightly so
    telemetry.probed("Kafka", True, "answers")
    assert liveness(telemetry, clock.now).ok


def test_ready_needs_the_group_polling_no_outage_and_every_server_answering():
    clock = Clock()
    telemetry = Telemetry(clock)
    assert readiness(telemetry, clock.now)["Kafka"].detail == "starting"
    telemetry = consuming(clock)
    assert all(check.ok for check in readiness(telemetry, clock.now).values())

    telemetry.outage_started("Thanos", clock.now)  # runs wait for Thanos though the last probe answered
    assert not readiness(telemetry, clock.now)["Thanos"].ok
    telemetry.outage_ended("Thanos", clock.now + 4)
    assert readiness(telemetry, clock.now)["Thanos"].ok
    assert telemetry.outage_seconds()["Thanos"] == 4

    telemetry.assigned(set())  # more members than partitions: still a ready member of the group
    assert readiness(telemetry, clock.now)["Kafka"].ok
    clock.now += POLL_STALE_S + 1
    assert not readiness(telemetry, clock.now)["Kafka"].ok
