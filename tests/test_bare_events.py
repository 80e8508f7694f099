"""Bare metadata documents, as any Kafka client publishes them (kcat, a Jenkins or Go pipeline): the
JSON index.sh builds, no envelope, with or without key and headers. `report-consumer run` builds
their reports as it does for the hooks' events."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import orjson
from aiokafka import AIOKafkaProducer

from consumer.settings import Settings
from tests.support.consumer import running_consumer, wait_for_reports
from tests.support.kafka import read_topic
from tests.support.metadata import run_doc


def report_date(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_bare_documents_of_both_schemas_from_a_raw_producer_become_reports(
    settings: Settings, es, unique: str, tmp_path
) -> None:
    end = (int(time.time()) // 60 - 30) * 60
    start = end - 1800
    cluster = f"bare-{unique}"

    def finished(n: int, status: str, camel: bool) -> dict:
        return run_doc(f"{unique}-{n}", cluster=cluster, benchmark=f"mystery-bench-{n}", status=status, start=start + n,
                       end=end + n, camel=camel)

    # (document, key, headers, value as the client writes it)
    started = run_doc(f"{unique}-1", cluster=cluster, benchmark="mystery-bench-1", status="running", start=start + 1,
                      end=None)
    sent = [
        (started, True, [("event-kind", b"started")], orjson.dumps),
        (finished(1, "success", camel=False), True, [("event-kind", b"finished"), ("schema-version", b"1")], orjson.dumps),
        (finished(2, "FAILED", camel=False), False, [], lambda doc: json.dumps(doc, indent=2).encode()),  # jq's style
        (finished(3, "success", camel=True), True, [], orjson.dumps),
        (finished(4, "upstream_failed", camel=True), False, [("event-kind", b"finished")], orjson.dumps),
    ]
    mismatched = finished(5, "success", camel=False)
    producer = AIOKafkaProducer(**settings.kafka.client_options())
    await producer.start()
    try:
        for doc, keyed, headers, encode in sent:
            await producer.send_and_wait(settings.kafka.topic, value=encode(doc), headers=headers,
                                         key=doc["uuid"].encode() if keyed else None)
        await producer.send_and_wait(settings.kafka.topic, key=b"some-other-run", value=orjson.dumps(mismatched))
    finally:
        await producer.stop()

    expected = {doc["uuid"]: doc for doc, *_ in sent[1:]}
    async with running_consumer(settings, tmp_path / "consumer.log") as consumer:
        reports = await wait_for_reports(es, settings.report_index, set(expected), timeout=90, consumer=consumer)
        [parked] = await read_topic(settings.kafka, settings.dead_letter_topic, 1, timeout=30)
        assert await consumer.stop() == 0

    shown = {
        uuid: (r["uuid"], r["benchmark"], r["openshift_cluster_name"], r["job_status"], r["start_date"], r["end_date"])
        for uuid, r in reports.items()
    }
    assert shown == {
        f"{unique}-{n}": (f"{unique}-{n}", f"mystery-bench-{n}", cluster, status, report_date(start + n), report_date(end + n))
        for n, status in ((1, "success"), (2, "failure"), (3, "success"), (4, "upstream_failed"))
    }
    for uuid, report in reports.items():
        assert report["metadata"] == expected[uuid]  # the document as sent, whatever its schema
    assert parked.value == orjson.dumps(mismatched)
    assert dict(parked.headers)["dead-letter-reason"] == (
        f"invalid event: key: b'some-other-run' does not match uuid '{unique}-5'".encode()
    )
    assert mismatched["uuid"] not in await wait_for_reports(es, settings.report_index, {mismatched["uuid"]}, timeout=1,
                                                            at_least=0)
