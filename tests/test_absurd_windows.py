"""Events that claim absurd windows, sent by any Kafka client past the hook's checks: the consumer
parks them at once with the reason, asks Thanos nothing for them, and stays small."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from consumer.settings import Settings
from tests.support.consumer import running_consumer, wait_for_reports
from tests.support.kafka import read_topic
from tests.support.metadata import iso, run_doc


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_absurd_windows_are_dead_lettered_at_once_naming_the_field(settings: Settings, es, unique: str, tmp_path):
    now = int(time.time())

    def doc(name: str, **dates: str) -> dict:
        base = run_doc(f"{unique}-{name}", cluster=f"c-{unique}", benchmark="mystery-bench", status="success",
                       start=now - 3600, end=now - 600)
        return {**base, **dates}

    absurd = {
        "epoch-to-9999": (doc("epoch-to-9999", start_date="1970-01-01T00:00:00Z", end_date="9999-12-31T23:59:59Z"),
                          "start_date"),
        "unset-start": (doc("unset-start", start_date="0"), "start_date"),
        "eight-days": (doc("eight-days", start_date=iso(now - 8 * 86400)), "end_date"),
        "a-year-ahead": (doc("a-year-ahead", end_date=iso(now + 365 * 86400)), "end_date"),
    }
    fine = doc("fine")
    producer = AIOKafkaProducer(**settings.kafka.client_options())
    await producer.start()
    try:
        for body, _ in absurd.values():
            await producer.send_and_wait(settings.kafka.topic, orjson.dumps(body), key=body["uuid"].encode())
        await producer.send_and_wait(settings.kafka.topic, orjson.dumps(fine), key=fine["uuid"].encode())
    finally:
        await producer.stop()

    async with running_consumer(settings, tmp_path / "consumer.log") as consumer:
        await wait_for_reports(es, settings.report_index, {fine["uuid"]}, timeout=60, consumer=consumer)
        parked = await read_topic(settings.kafka, settings.dead_letter_topic, len(absurd), timeout=30)
        rss = rss_mb(consumer.process.pid)
        assert await consumer.stop() == 0

    reasons = {record.key.decode(): dict(record.headers)["dead-letter-reason"].decode() for record in parked}
    assert set(reasons) == {body["uuid"] for body, _ in absurd.values()}
    for body, field in absurd.values():
        assert reasons[body["uuid"]].startswith(f"invalid event: {field}: "), reasons[body["uuid"]]
    assert rss < 300, f"the consumer grew to {rss:.0f} MB"
    assert [await es.exists(index=settings.report_index, id=body["uuid"]) for body, _ in absurd.values()] == [False] * 4
