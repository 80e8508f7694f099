"""`report-consumer init`: what the product owns, created on purpose and idempotently."""

from __future__ import annotations

import dataclasses

from consumer.settings import Settings
from consumer.topics import delete_topics, partitions_of
from tests.support.consumer import run_cli


async def test_init_creates_topics_and_the_report_index_once(settings: Settings, es, unique: str):
    settings = dataclasses.replace(settings, kafka=dataclasses.replace(settings.kafka, topic=f"test-init-{unique}"),
                                   dead_letter_topic=f"test-init-{unique}.dead-letter")
    try:
        code, out = await run_cli(settings, "init", "--partitions", "4")
        assert code == 0, out
        assert f"topic test-init-{unique}: created" in out and f"index {settings.report_index}: created" in out
        code, out = await run_cli(settings, "init", "--partitions", "4")
        assert code == 0 and out.count(": exists") == 3, out

        described = {topic: len(await partitions_of(settings.kafka, topic))
                     for topic in (settings.kafka.topic, settings.dead_letter_topic)}
        assert described == {settings.kafka.topic: 4, settings.dead_letter_topic: 1}

        mapping = (await es.indices.get_mapping(index=settings.report_index))[settings.report_index]["mappings"]
        fields = mapping["properties"]
        for name in ("uuid", "benchmark", "job_status", "openshift_cluster_name", "openshift_platform"):
            assert fields[name]["type"] == "keyword", name
        assert fields["start_date"]["type"] == fields["end_date"]["type"] == "date"
        assert fields["metadata"]["type"] == "flattened"
    finally:
        await delete_topics(settings.kafka, [settings.kafka.topic, settings.dead_letter_topic])
