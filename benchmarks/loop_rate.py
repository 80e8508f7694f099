"""How fast `report-consumer run` gets through events that need no build (`started` events), and
what it holds in memory meanwhile, on the local servers (`scripts/services up` first).

    python benchmarks/loop_rate.py [--events 20000] [--partitions 3]

A consumer is started first and given its partitions; then the events are produced as fast as one
producer can (its own rate is printed too, since it bounds what the consumer can be shown to do);
the consumer's rate is events over the time from the first event produced until the group's
committed offsets reach the end of every partition. RSS is the consumer process's, read from
/proc at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
import uuid as uuids
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from consumer.elastic import connect  # noqa: E402
from consumer.settings import Settings  # noqa: E402
from consumer.topics import TopicSpec, delete_topics, ensure_topics  # noqa: E402
from producer_hooks.events import encode_event, make_event  # noqa: E402
from tests.support.consumer import running_consumer  # noqa: E402
from tests.support.metadata import run_doc  # noqa: E402
from tests.support.services import service_env  # noqa: E402


async def committed_total(settings: Settings, partitions: list[TopicPartition]) -> int:
    consumer = AIOKafkaConsumer(group_id=settings.group, enable_auto_commit=False, **settings.kafka.client_options())
    await consumer.start()
    try:
        return sum([(await consumer.committed(tp)) or 0 for tp in partitions])
    finally:
        await consumer.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main(args: argparse.Namespace) -> None:
    tag = uuids.uuid4().hex[:8]
    base = Settings.from_env({**service_env()})
    settings = dataclasses.replace(
        base, kafka=dataclasses.replace(base.kafka, topic=f"bench-runs-{tag}"), group=f"bench-{tag}",
        dead_letter_topic=f"bench-runs-{tag}.dead-letter", report_index=f"bench-reports-{tag}",
        pending_index=f"bench-reports-{tag}-pending", commit_interval_s=0.5,
    )
    topics = {settings.kafka.topic: TopicSpec(args.partitions), settings.dead_letter_topic: TopicSpec(1)}
    await ensure_topics(settings.kafka, topics)
    partitions = [TopicPartition(settings.kafka.topic, p) for p in range(args.partitions)]
    now = int(time.time())
    messages = [encode_event(make_event(run_doc(f"{tag}-{i}", cluster="bench", benchmark="node-density",
                                                status="running", start=now - 60, end=None), "started"))
                for i in range(args.events)]
    log = Path(tempfile.mkdtemp()) / "consumer.log"
    try:
        async with running_consumer(settings, log) as consumer:
            for _ in range(120):
                if "assigned" in consumer.logs():
                    break
                await asyncio.sleep(0.5)
            producer = AIOKafkaProducer(acks="all", linger_ms=5, **settings.kafka.client_options())
            await producer.start()
            try:
                started = time.perf_counter()
                for message in messages:
                    await producer.send(settings.kafka.topic, value=message.value, key=message.key,
                                        headers=message.headers)
                await producer.flush()
                produced = time.perf_counter() - started
            finally:
                await producer.stop()
            while await committed_total(settings, partitions) < args.events:
                if time.perf_counter() - started > args.timeout:
                    raise SystemExit(f"not all committed after {args.timeout} s; see {log}")
                await asyncio.sleep(0.2)
            consumed = time.perf_counter() - started
            rss = rss_mb(consumer.process.pid)
            assert await consumer.stop() == 0
    finally:
        await delete_topics(settings.kafka, list(topics))
        async with connect(settings.es) as es:
            await es.options(ignore_status=404).indices.delete(index=f"{settings.report_index}*")
    print(f"\n{args.events} started events, {args.partitions} partitions")
    print("producer events/s  consumer events/s  consumer RSS MB")
    print(f"{args.events / produced:>17.0f}  {args.events / consumed:>17.0f}  {rss:>15.0f}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
