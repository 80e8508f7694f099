"""No record can crash or pin the consumer. Whatever bytes the broker accepts end as a report, as a
dead letter (cut to fit when too large to copy), or, when aiokafka cannot even parse them, as a
dead-letter marker naming their offset; consumption goes on and committed offsets reach the end.

The odd records are real: sent to the real broker by aiokafka's producer, or as raw record batches
(a header name that is not UTF-8 is legal in Kafka and librdkafka-based clients send it; aiokafka's
producer cannot), and read back raw from the broker to check the bytes are what was meant.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import time

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import MessageSizeTooLargeError

from consumer.deadletter import HEADERS_DROPPED, KEY_TRUNCATED, MAX_REQUEST_SIZE, TRUNCATED, fit, message_size
from consumer.records import batch_span, read_raw
from consumer.settings import Settings
from consumer.topics import max_message_bytes
from producer_hooks.events import encode_event, make_event
from tests.support.consumer import ConsumerProcess, run_cli, running_consumer, wait_for_reports
from tests.support.kafka import committed_offsets, end_offsets, produce_raw, read_topic, record_batch
from tests.support.metadata import run_doc

BAD_NAME = b"trace-\xff\xfe-id"  # not UTF-8
BATCH_HEADER = 61  # bytes before a v2 batch's records


def finished(uuid: str, cluster: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A valid finished event of a benchmark without a results reader: reported at once."""
    start = int(time.time()) - 3600
    message = encode_event(make_event(run_doc(uuid, cluster=cluster, benchmark="mystery-bench", status="success",
                                              start=start, end=start + 900)))
    return message.key, message.value, message.headers


def raw(message: tuple[bytes, bytes, list[tuple[str, bytes]]], *extra: tuple[bytes, bytes | None]):
    key, value, headers = message
    return key, value, [(name.encode(), header) for name, header in headers] + list(extra)


def where(record: ConsumerRecord) -> tuple[int, int]:
    headers = dict(record.headers)
    return int(headers["dead-letter-partition"]), int(headers["dead-letter-offset"])


async def wait_until_committed(settings: Settings, timeout: float = 20) -> dict[TopicPartition, int]:
    """The group's committed offsets once they reach the end of every partition."""
    ends = await end_offsets(settings.kafka, settings.kafka.topic)
    deadline = time.monotonic() + timeout
    committed: dict[TopicPartition, int] = {}
    while time.monotonic() < deadline:
        committed = await committed_offsets(settings.kafka, settings.group)
        if all(committed.get(tp, 0) == end for tp, end in ends.items()):
            return committed
        await asyncio.sleep(0.5)
    raise AssertionError(f"committed {committed}, end of partitions {ends}")


async def stop_promptly(consumer: ConsumerProcess, settings: Settings) -> float:
    started = time.monotonic()
    assert await consumer.stop(timeout=settings.drain_timeout_s + 30) == 0, consumer.logs()[-3000:]
    return time.monotonic() - started


async def restart_changes_nothing(settings: Settings, es, uuids: set[str], parked: int, log) -> None:
    """A second start reads nothing again: no rebuilt report, no new dead letter, no crash."""
    async with running_consumer(settings, log) as again:
        for _ in range(40):
            if "assigned" in again.logs():
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)
        assert again.process.returncode is None, again.logs()[-3000:]
        assert await again.stop() == 0
    assert "cannot be read" not in again.logs() and "parked" not in again.logs()
    reports = await wait_for_reports(es, settings.report_index, uuids, timeout=5)
    assert {uuid: report["_version"] for uuid, report in reports.items()} == dict.fromkeys(uuids, 1)
    assert len(await read_topic(settings.kafka, settings.dead_letter_topic, parked + 1, timeout=2)) == parked


@pytest.mark.parametrize("parser", ["c", "python"])
async def test_records_aiokafka_cannot_parse_are_parked_by_offset_and_the_partition_goes_on(
    parser: str, settings: Settings, es, unique: str, tmp_path
):
    settings = dataclasses.replace(settings, drain_timeout_s=60.0)
    topic, cluster = settings.kafka.topic, f"c-{unique}"
    uuids = {name: f"{unique}-{name}" for name in ("first", "unreadable", "second", "batched", "last", "p1", "p2")}
    events = {name: finished(uuid, cluster) for name, uuid in uuids.items()}

    # Partition 0: an event, one alone with a header name that is not UTF-8 (a valid event all the
    # same), an event, a gzip batch whose second record has that header (aiokafka reads the first,
    # then neither the bad one nor the one after it), an event.
    offsets = [
        await produce_raw(settings.kafka, topic, 0, record_batch([raw(events["first"])])),
        await produce_raw(settings.kafka, topic, 0, record_batch([raw(events["unreadable"], (BAD_NAME, b"1"))])),
        await produce_raw(settings.kafka, topic, 0, record_batch([raw(events["second"])])),
        await produce_raw(settings.kafka, topic, 0, record_batch(
            [raw(events["batched"]), (b"k", b"{}", [(BAD_NAME, b"2")]), (b"after", b"after the bad one", [])],
            codec="gzip")),
        await produce_raw(settings.kafka, topic, 0, record_batch([raw(events["last"])])),
    ]
    assert offsets == [0, 1, 2, 3, 6]
    await produce_raw(settings.kafka, topic, 1, record_batch([raw(events["p1"])]))
    await produce_raw(settings.kafka, topic, 2, record_batch([raw(events["p2"])]))

    # The broker keeps the bytes as sent: the header name is not UTF-8 on its side either.
    p0 = TopicPartition(topic, 0)
    options = settings.kafka.client_options()
    assert BAD_NAME in await read_raw(options, p0, 1)
    batched = await read_raw(options, p0, 3)
    assert batched[16] == 2 and batched[22] & 0x07 == 1  # magic 2, gzip
    assert BAD_NAME in gzip.decompress(batched[BATCH_HEADER:])

    env = {"AIOKAFKA_NO_EXTENSIONS": "1"} if parser == "python" else {}
    async with running_consumer(settings, tmp_path / "consumer.log", **env) as consumer:
        readable = {uuid for name, uuid in uuids.items() if name != "unreadable"}
        await wait_for_reports(es, settings.report_index, readable, timeout=60, consumer=consumer)
        parked = await read_topic(settings.kafka, settings.dead_letter_topic, 3, timeout=30)
        await wait_until_committed(settings)
        assert await stop_promptly(consumer, settings) < 10
    assert not await es.exists(index=settings.report_index, id=uuids["unreadable"])

    assert sorted(map(where, parked)) == [(0, 1), (0, 4), (0, 5)]
    expected_error = "CorruptRecordException" if parser == "python" else "UnicodeDecodeError"
    for marker in parked:
        headers = dict(marker.headers)
        assert marker.key == f"{topic}[0]@{where(marker)[1]}".encode() and marker.value is None
        assert headers["dead-letter-topic"] == topic.encode()
        assert headers["dead-letter-reason"].startswith(b"unreadable record: ")
        assert expected_error.encode() in headers["dead-letter-reason"]
    logs = consumer.logs()
    assert "[0]: offset 1 cannot be read" in logs and "[0]: offsets 4-5 cannot be read" in logs

    await restart_changes_nothing(settings, es, readable, 3, tmp_path / "again.log")
    code, out = await run_cli(settings, "replay")
    assert code == 0
    assert "skipped (unreadable record): 3" in out.splitlines()
    assert f"finished runs: {len(readable)}" in out.splitlines()


async def test_every_kind_of_odd_record_the_broker_takes_ends_as_a_report_or_a_dead_letter(
    settings: Settings, es, unique: str, tmp_path
):
    settings = dataclasses.replace(settings, drain_timeout_s=60.0)
    topic, cluster = settings.kafka.topic, f"c-{unique}"
    limit = await max_message_bytes(settings.kafka, topic)  # the broker's real limit for a batch
    reported: set[str] = set()
    poison: dict[tuple[int, int], tuple[bytes | None, bytes | None]] = {}  # (partition, offset) -> (key, value)

    # The largest record the broker takes, and the proof that it is the largest.
    huge = b"v" * (limit - 100)
    while len(record_batch([(b"huge-value", huge + b"v", [])])) <= limit:
        huge += b"v"
    assert limit - 4 <= len(record_batch([(b"huge-value", huge, [])])) <= limit
    with pytest.raises(MessageSizeTooLargeError):
        await produce_raw(settings.kafka, topic, 1, record_batch([(b"huge-value", huge + b"v", [])]))
    long_key = b"k" * (limit - 200)

    def valid(name: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        uuid = f"{unique}-{name}"
        reported.add(uuid)
        return finished(uuid, cluster)

    async def send(producer: AIOKafkaProducer, partition: int, key: bytes | None, value: bytes | None,
                   headers: list[tuple[str, bytes | None]] | None = None, *, bad: bool = False) -> None:
        future = await producer.send(topic, key=key, value=value, headers=headers or [], partition=partition)
        if bad:
            poison[(partition, (await future).offset)] = (key, value)

    async with AIOKafkaProducer(max_request_size=2 * limit, linger_ms=50, **settings.kafka.client_options()) as plain:
        key, value, headers = valid("plain")
        await send(plain, 0, key, value, headers)
        await send(plain, 0, b"\xff\xfe not utf-8", finished(f"{unique}-bad-key", cluster)[1], bad=True)  # not its uuid
        await send(plain, 0, b"tombstone", None, bad=True)
        await send(plain, 0, b"empty", b"", bad=True)
        key, value, headers = valid("null-header")
        await send(plain, 0, key, value, [*headers, ("x-null", None)])
        await send(plain, 1, long_key, b"{}", [("x-trace", b"t")], bad=True)
        await send(plain, 1, *valid("after-huge"))
        await plain.flush()
    huge_offset = await produce_raw(settings.kafka, topic, 1, record_batch([(b"huge-value", huge, [])]))
    poison[(1, huge_offset)] = (b"huge-value", huge)
    for codec in ("gzip", "snappy", "lz4", "zstd"):  # each codec the broker takes, in batches of two
        async with AIOKafkaProducer(compression_type=codec, linger_ms=200, **settings.kafka.client_options()) as packed:
            key, value, headers = valid(codec)
            await asyncio.gather(send(packed, 2, key, value, headers), send(packed, 2, codec.encode(), b"not json", bad=True))

    async with running_consumer(settings, tmp_path / "consumer.log") as consumer:
        reports = await wait_for_reports(es, settings.report_index, reported, timeout=90, consumer=consumer)
        parked = await read_topic(settings.kafka, settings.dead_letter_topic, len(poison), timeout=60)
        await wait_until_committed(settings)
        assert await stop_promptly(consumer, settings) < 10
    assert {uuid: report["_version"] for uuid, report in reports.items()} == dict.fromkeys(reported, 1)

    copies = {where(record): record for record in parked}
    assert len(parked) == len(copies) and set(copies) == set(poison)
    for at, (key, value) in poison.items():
        copy = copies[at]
        headers = dict(copy.headers)
        assert message_size(copy.key, copy.value, copy.headers) <= MAX_REQUEST_SIZE
        if at == (1, huge_offset):
            assert headers[TRUNCATED] == str(len(huge)).encode()
            assert copy.key == key and value.startswith(copy.value) and len(copy.value) > 1_000_000
        elif key == long_key:
            assert headers[KEY_TRUNCATED] == str(len(long_key)).encode() and headers["x-trace"] == b"t"
            assert long_key.startswith(copy.key) and len(copy.key) > 1_000_000 and copy.value == b"{}"
        else:
            assert (copy.key, copy.value) == (key, value)
            assert TRUNCATED.encode() not in b"".join(name.encode() for name in headers)
    assert b"key" in dict(copies[next(at for at, (k, _) in poison.items() if k == b"\xff\xfe not utf-8")].headers)[
        "dead-letter-reason"]

    await restart_changes_nothing(settings, es, reported, len(poison), tmp_path / "again.log")
    code, out = await run_cli(settings, "replay")
    assert code == 0
    assert f"skipped (invalid event): {len(poison)}" in out.splitlines()


async def test_a_dead_letter_the_broker_refuses_is_logged_once_and_skipped(
    settings: Settings, es, unique: str, tmp_path
):
    settings = dataclasses.replace(settings, drain_timeout_s=60.0)
    topic, cluster = settings.kafka.topic, f"c-{unique}"
    async with running_consumer(settings, tmp_path / "consumer.log") as consumer:
        for _ in range(40):
            if "assigned" in consumer.logs():
                break
            await asyncio.sleep(0.5)
        # The dead-letter topic now takes less than the consumer read at start: the broker itself
        # refuses the copy, the same way every time.
        admin = AIOKafkaAdminClient(**settings.kafka.client_options())
        await admin.start()
        try:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.dead_letter_topic,
                                                      {"max.message.bytes": "4096"})])
        finally:
            await admin.close()
        async with AIOKafkaProducer(**settings.kafka.client_options()) as producer:
            refused = await producer.send_and_wait(topic, key=b"big", value=b"x" * 20_000, partition=0)
            key, value, headers = finished(f"{unique}-after", cluster)
            await producer.send_and_wait(topic, key=key, value=value, headers=headers, partition=0)
        await wait_for_reports(es, settings.report_index, {f"{unique}-after"}, timeout=60, consumer=consumer)
        await wait_until_committed(settings)
        assert await stop_promptly(consumer, settings) < 10
    errors = [line for line in consumer.logs().splitlines() if " ERROR consumer" in line]
    assert len(errors) == 1, errors
    assert f"{topic}[0]@{refused.offset}" in errors[0] and "MessageSizeTooLargeError" in errors[0]
    assert "retrying" not in consumer.logs()
    assert await read_topic(settings.kafka, settings.dead_letter_topic, 0, timeout=2) == []


async def test_batch_span_reads_the_bounds_of_the_batch_holding_an_offset(settings: Settings):
    # consumer.records reads batch headers through aiokafka's protocol classes: this pins that.
    topic = settings.kafka.topic
    batches = [
        record_batch([(b"a", b"1", []), (b"b", b"2", []), (b"c", b"3", [])]),
        record_batch([(b"d", b"4", [])]),
        record_batch([(b"e", b"5", []), (b"f", b"6", [(BAD_NAME, b"x")])], codec="gzip"),
    ]
    for batch in batches:
        await produce_raw(settings.kafka, topic, 0, batch)
    options = settings.kafka.client_options()
    p0 = TopicPartition(topic, 0)
    spans = [await batch_span(options, p0, offset) for offset in range(7)]
    assert spans == [(0, 2), (0, 2), (0, 2), (3, 3), (4, 5), (4, 5), None]


def test_a_dead_letter_copy_is_cut_to_the_limit_largest_part_first():
    own = [("dead-letter-reason", b"r" * 300), ("dead-letter-offset", b"7")]
    original = [("x-trace", b"t" * 5000)]

    assert fit(b"k", b"small", original, own, 10_000) == (b"k", b"small", [*original, *own])

    key, value, headers = fit(b"k", b"v" * 50_000, original, own, 20_000)
    assert 20_000 - 100 < message_size(key, value, headers) <= 20_000  # cut no more than needed
    assert key == b"k" and value == b"v" * len(value) and headers == [*original, *own, (TRUNCATED, b"50000")]

    # The value alone cannot make room: the headers go too, and the value gets back what is left.
    key, value, headers = fit(b"k", b"v" * 50_000, original, own, 2_000)
    assert 2_000 - 100 < message_size(key, value, headers) <= 2_000 and value.startswith(b"vvv")
    assert headers == [*own, (TRUNCATED, b"50000"), (HEADERS_DROPPED, b"1")]

    key, value, headers = fit(b"k" * 9_000, None, original, own, 2_000)
    assert 2_000 - 100 < message_size(key, value, headers) <= 2_000 and value is None
    assert key.startswith(b"kkk") and headers == [*own, (KEY_TRUNCATED, b"9000"), (HEADERS_DROPPED, b"1")]
