"""The ground: each server is real, reachable through the product's own settings."""

from __future__ import annotations

import math
import time

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumer.settings import Settings
from tests.support.es import index_docs
from tests.support.prometheus import Series, load_series


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
