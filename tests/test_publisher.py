"""Publishing against the real broker: acknowledged delivery, ordering, and the spool during outages.

"Kafka unreachable" is a bootstrap address where nothing listens (what a worker sees when the
broker is down) or a port that accepts connections and never answers; stopping the shared broker
itself is left to the one slow test in test_hook_cli.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import orjson
import pytest

from producer_hooks.events import MAX_EVENT_BYTES, Event, InvalidEvent, decode_event, encode_event, make_event
from producer_hooks.publisher import Publisher, PublishResult, flush, publish, publish_sync
from producer_hooks.settings import HookSettings
from producer_hooks.spool import Spool
from tests.support.kafka import read_topic, topic_size
from tests.support.metadata import camel_doc, filler, snake_doc

UNREACHABLE = "127.0.0.1:1"  # nothing listens there


def unreachable(settings: HookSettings, address: str = UNREACHABLE, timeout_s: float | None = None) -> HookSettings:
    """The same topic and spool, with a broker that cannot be reached."""
    return dataclasses.replace(
        settings,
        kafka=dataclasses.replace(settings.kafka, bootstrap_servers=address),
        timeout_s=timeout_s or settings.timeout_s,
    )


def run_events(uuid: str) -> tuple[Event, Event]:
    """The started and finished events of one run."""
    return (
        make_event(snake_doc(uuid, job_status="running", end_date="", job_duration="")),
        make_event(snake_doc(uuid, job_status="success")),
    )


def events_of(records: list) -> list[Event]:
    return [decode_event(record.key, record.value, record.headers) for record in records]


async def test_events_in_both_schemas_reach_the_topic_keyed_by_uuid_with_headers_and_canonical_run(
    hook_settings: HookSettings, unique: str
) -> None:
    docs = {f"snake-{unique}": snake_doc(f"snake-{unique}"), f"camel-{unique}": camel_doc(f"camel-{unique}")}
    for doc in docs.values():
        assert await publish(make_event(doc), hook_settings) == PublishResult(delivered=1, spooled=False, pending=0)

    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 2)
    assert sorted(record.key.decode() for record in records) == sorted(docs)
    for record in records:
        doc = docs[record.key.decode()]
        body = orjson.loads(record.value)
        assert list(record.headers) == [("event-kind", b"finished"), ("schema-version", b"1")]
        assert body["schema_version"] == 1 and body["kind"] == "finished"
        assert body["metadata"] == doc
        assert body["run"] == make_event(doc).run.to_dict()
    camel = orjson.loads(next(r.value for r in records if r.key == f"camel-{unique}".encode()))["run"]
    assert (camel["benchmark"], camel["status"], camel["worker_count"], camel["start"]) == (
        "node-density", "failure", 120, "2024-06-02T08:00:00Z",
    )  # fmt: skip


async def test_events_of_one_run_arrive_in_order_on_one_partition(hook_settings: HookSettings, unique: str) -> None:
    first, second = run_events(f"a-{unique}"), run_events(f"b-{unique}")
    async with Publisher(hook_settings) as publisher:
        for event in (first[0], second[0], first[1], second[1]):
            await publisher.publish(event)

    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 4)
    assert len(records) == 4
    for uuid in (f"a-{unique}", f"b-{unique}"):
        mine = [record for record in records if record.key == uuid.encode()]
        assert [event.kind for event in events_of(mine)] == ["started", "finished"]
        assert len({record.partition for record in mine}) == 1
        assert mine[0].offset < mine[1].offset


async def test_unreachable_kafka_spools_events_and_flush_delivers_each_once_in_order(
    hook_settings: HookSettings, unique: str
) -> None:
    started, finished = run_events(unique)
    down = unreachable(hook_settings)

    first = await publish(started, down)
    second = await publish(finished, down)
    assert (first.spooled, first.delivered, first.pending) == (True, 0, 1)
    assert (second.spooled, second.delivered, second.pending) == (True, 0, 2)
    assert UNREACHABLE in (second.reason or "")
    assert await topic_size(hook_settings.kafka, hook_settings.kafka.topic) == 0

    assert await flush(hook_settings) == PublishResult(delivered=2, spooled=False, pending=0)
    assert await flush(hook_settings) == PublishResult(delivered=0, spooled=False, pending=0)
    assert not hook_settings.spool_path.exists()
    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 2)
    assert events_of(records) == [started, finished]
    assert [record.offset for record in records] == sorted(record.offset for record in records)


async def test_publish_sends_spooled_events_before_the_new_one(hook_settings: HookSettings, unique: str) -> None:
    started, finished = run_events(unique)
    await publish(started, unreachable(hook_settings))

    result = await publish(finished, hook_settings)

    assert result == PublishResult(delivered=2, spooled=False, pending=0)
    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 2)
    assert events_of(records) == [started, finished]


async def test_new_event_waits_behind_the_spool_while_kafka_is_down(hook_settings: HookSettings, unique: str) -> None:
    started, finished = run_events(unique)
    down = unreachable(hook_settings)
    await publish(started, down)
    await publish(finished, down)

    lines = hook_settings.spool_path.read_bytes().splitlines()
    assert [orjson.loads(line)["headers"][0][1] for line in lines] == ["started", "finished"]
    assert [orjson.loads(line)["key"] for line in lines] == [unique, unique]


async def test_a_broker_that_never_answers_is_given_up_after_the_timeout(hook_settings: HookSettings, unique: str) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, then say nothing

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        began = time.monotonic()
        result = await publish(run_events(unique)[0], unreachable(hook_settings, f"127.0.0.1:{port}", timeout_s=1.0))
        elapsed = time.monotonic() - began
    finally:
        for writer in held:
            writer.close()
        server.close()
    assert result.spooled and result.pending == 1
    assert result.reason == f"127.0.0.1:{port}: no answer within 1s"
    assert elapsed < 5, f"took {elapsed:.1f}s with a 1s timeout"


async def test_concurrent_publishers_spool_every_event_intact(hook_settings: HookSettings, unique: str) -> None:
    events = [make_event(snake_doc(f"{unique}-{n}")) for n in range(20)]
    down = unreachable(hook_settings)

    results = await asyncio.gather(*(publish(event, down) for event in events))

    assert all(result.spooled for result in results)
    assert await Spool(hook_settings.spool_path).pending() == 20
    assert await flush(hook_settings) == PublishResult(delivered=20, spooled=False, pending=0)
    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 20)
    assert sorted(events_of(records), key=lambda e: e.run.uuid) == sorted(events, key=lambda e: e.run.uuid)


async def test_a_torn_spool_line_is_set_aside_without_losing_its_neighbours(hook_settings: HookSettings, unique: str) -> None:
    started, finished = run_events(unique)
    down = unreachable(hook_settings)
    await publish(started, down)
    with open(hook_settings.spool_path, "ab") as spool:  # a crash in the middle of an append
        spool.write(b'{"key": "torn-run", "headers": [["event-ki')
    await publish(finished, down)

    assert await flush(hook_settings) == PublishResult(delivered=2, spooled=False, pending=0)
    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 2)
    assert events_of(records) == [started, finished]
    rejected = Spool(hook_settings.spool_path).rejected_path.read_bytes()
    assert rejected == b'{"key": "torn-run", "headers": [["event-ki\n'


async def test_an_event_too_large_to_encode_is_refused_before_touching_kafka_or_spool(
    hook_settings: HookSettings, unique: str
) -> None:
    doc = snake_doc(unique, blob=filler(MAX_EVENT_BYTES - len(orjson.dumps(snake_doc(unique))) - 20))
    with pytest.raises(InvalidEvent, match=r"^event: "):
        await publish(make_event(doc), hook_settings)
    assert not hook_settings.spool_path.exists()
    assert await topic_size(hook_settings.kafka, hook_settings.kafka.topic) == 0


async def test_publish_sync_works_from_plain_threads_and_from_inside_an_event_loop(
    hook_settings: HookSettings, unique: str
) -> None:
    started, finished = run_events(unique)
    from_thread = await asyncio.to_thread(publish_sync, started, hook_settings)  # no loop: asyncio.run
    from_loop = publish_sync(finished, hook_settings)  # a loop runs here: gets a thread of its own

    assert from_thread.delivered == from_loop.delivered == 1
    records = await read_topic(hook_settings.kafka, hook_settings.kafka.topic, 2)
    assert events_of(records) == [started, finished]


async def test_spooling_logs_name_the_run_but_not_the_sasl_password(
    hook_settings: HookSettings, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    from producer_hooks.settings import Secret

    kafka = dataclasses.replace(
        hook_settings.kafka,
        bootstrap_servers=UNREACHABLE,
        security_protocol="SASL_PLAINTEXT",
        sasl_username="hooks",
        sasl_password=Secret("pa55-do-not-log"),
    )
    caplog.set_level(logging.DEBUG)
    result = await publish(run_events(unique)[0], dataclasses.replace(hook_settings, kafka=kafka))

    assert result.spooled
    assert unique in caplog.text
    assert "pa55-do-not-log" not in caplog.text and "pa55-do-not-log" not in (result.reason or "")
    assert encode_event(run_events(unique)[0]).value in hook_settings.spool_path.read_bytes()
