"""The ground: each server is real, reachable through the product's own settings."""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumer.settings import Settings
from tests.support.es import index_docs
from tests.support.prometheus import Series, load_series
from tests.support.services import SCRIPT, closed_port, external


async def test_a_message_produced_is_consumed_through_the_broker(settings: Settings, unique: str):
    producer = AIOKafkaProducer(acks="all", **settings.kafka.client_options())
    await producer.start()
    try:
        sent = await producer.send_and_wait(settings.kafka.topic, key=unique.encode(), value=b"hello")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(settings.kafka.topic, group_id=settings.group, auto_offset_reset="earliest",
                                **settings.kafka.client_options())
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert (record.key, record.value, record.partition, record.offset) == (unique.encode(), b"hello", sent.partition, sent.offset)


async def test_a_document_indexed_is_found_in_elasticsearch(settings: Settings, es, unique: str):
    await index_docs(es, settings.results_index, [{"uuid": unique, "metricName": "jobSummary", "elapsedTime": 12.5}])
    found = await es.search(index="ripsaw-kube-burner*", query={"term": {"uuid.keyword": unique}})
    assert [hit["_source"]["elapsedTime"] for hit in found["hits"]["hits"]] == [12.5]


async def test_a_series_loaded_into_prometheus_reads_back_by_query_range(settings: Settings, unique: str):
    start = (int(time.time()) // 60 - 180) * 60  # three hours ago, on a minute
    values = [math.sin(i) * 10 + 20 for i in range(30)]
    load_series([Series("ground_check", {"openshift_cluster_name": unique}, [(start + 60 * i, v) for i, v in enumerate(values)])])
    params = {"query": f'ground_check{{openshift_cluster_name="{unique}"}}', "start": start, "end": start + 60 * 29, "step": 60}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{settings.thanos.url}/api/v1/query_range", params=params) as response:
            body = await response.json()
    assert body["status"] == "success"
    [series] = body["data"]["result"]
    assert [float(v) for _, v in series["values"]] == values
    assert [int(t) for t, _ in series["values"]] == [start + 60 * i for i in range(30)]


@pytest.mark.slow
def test_services_up_is_idempotent_and_down_leaves_no_process_of_ours(tmp_path):
    """A second set of servers on other ports and another runtime folder, so the shared ones stay up."""
    if external():
        pytest.skip("the native servers are not in use")
    ports = {name: str(closed_port()) for name in ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "ES_PORT", "ES_TRANSPORT_PORT",
                                                   "PROMETHEUS_PORT", "OPENSEARCH_PORT", "OPENSEARCH_TRANSPORT_PORT")}
    env = {**os.environ, "PERF_REPORTS_RUN": str(tmp_path / "run"), **ports}

    def services(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600)

    def ours() -> list[str]:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and str(tmp_path).encode() in (proc / "cmdline").read_bytes():
                    if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(proc.name)
            except OSError:
                continue
        return found

    try:
        assert services("up").returncode == 0
        status = services("status").stdout
        # The three the product needs; OpenSearch only when named.
        assert [line.split()[1] for line in status.splitlines()] == ["ready", "ready", "ready", "stopped"], status
        again = services("up")
        assert again.returncode == 0 and again.stderr.count("already running") == 3
        assert f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{ports['KAFKA_PORT']}" in services("env").stdout
        assert ours(), "the servers should be running from the temporary folder"
    finally:
        down = services("down")
    assert down.returncode == 0, down.stderr
    assert ours() == []
    assert [line.split()[1] for line in services("status").stdout.splitlines()] == ["stopped"] * 4
    services("reset")  # and forget the data, wherever it was kept
