"""`report-consumer init`: what the product owns, created on purpose and idempotently."""

from __future__ import annotations

import asyncio
import dataclasses
import sys

from aiokafka.admin import AIOKafkaAdminClient

from consumer.settings import Settings
from consumer.topics import delete_topics
from tests.support.consumer import settings_env


async def init(settings: Settings, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer.cli", "init", *args, env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_init_creates_topics_and_the_report_index_once(settings: Settings, es, unique: str):
    settings = dataclasses.replace(settings, kafka=dataclasses.replace(settings.kafka, topic=f"test-init-{unique}"),
                                   dead_letter_topic=f"test-init-{unique}.dead-letter")
    try:
        code, out = await init(settings, "--partitions", "4")
        assert code == 0, out
        assert f"topic test-init-{unique}: created" in out and f"index {settings.report_index}: created" in out
        code, out = await init(settings, "--partitions", "4")
        assert code == 0 and out.count(": exists") == 3, out

        admin = AIOKafkaAdminClient(**settings.kafka.client_options())
        await admin.start()
        try:
            described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(
                [settings.kafka.topic, settings.dead_letter_topic])}
        finally:
            await admin.close()
        assert described == {settings.kafka.topic: 4, settings.dead_letter_topic: 1}

        mapping = (await es.indices.get_mapping(index=settings.report_index))[settings.report_index]["mappings"]
        fields = mapping["properties"]
        for name in ("uuid", "benchmark", "job_status", "openshift_cluster_name", "openshift_platform"):
            assert fields[name]["type"] == "keyword", name
        assert fields["start_date"]["type"] == fields["end_date"]["type"] == "date"
        assert fields["metadata"]["type"] == "flattened"
    finally:
        await delete_topics(settings.kafka, [settings.kafka.topic, settings.dead_letter_topic])
