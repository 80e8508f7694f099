"""The Kafka topics the product owns: created on purpose, because brokers should not auto-create them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code

from producer_hooks.settings import KafkaSettings

TOPIC_ALREADY_EXISTS = 36


class MissingTopic(LookupError):
    """The topic does not exist; the message says how to create it."""


@asynccontextmanager
async def _admin(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**kafka.client_options())
    try:
        await admin.start()
    except BaseException:  # a failed or interrupted start leaves connections to close
        await admin.close()
        raise
    try:
        yield admin
    finally:
        await admin.close()


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    replication: int = 1


async def ensure_topics(kafka: KafkaSettings, topics: Mapping[str, TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Existing ones are left as
    they are (partitions are never changed behind the operator's back)."""
    async with _admin(kafka) as admin:
        response = await admin.create_topics(
            [NewTopic(name, spec.partitions, spec.replication) for name, spec in topics.items()]
        )
    created = []
    for topic, code, *rest in response.topic_errors:
        if code == 0:
            created.append(topic)
        elif code != TOPIC_ALREADY_EXISTS:
            message = rest[0] if rest and rest[0] else for_code(code).__name__
            raise RuntimeError(f"cannot create topic {topic!r}: {message}")
    return created


async def delete_topics(kafka: KafkaSettings, topics: list[str]) -> None:
    async with _admin(kafka) as admin:
        await admin.delete_topics(topics)


UNKNOWN_TOPIC = 3
TOPIC_AUTHORIZATION_FAILED = 29


async def partitions_of(kafka: KafkaSettings, topic: str) -> list[int]:
    """The topic's partition numbers; :class:`MissingTopic` if there is no such topic, and
    :class:`PermissionError` if we may not see it."""
    async with _admin(kafka) as admin:
        [described] = await admin.describe_topics([topic])
    if described["error_code"] == UNKNOWN_TOPIC:
        raise MissingTopic(f"topic {topic!r} does not exist (RUNS_TOPIC); run `report-consumer init` to create it")
    if described["error_code"] == TOPIC_AUTHORIZATION_FAILED:
        raise PermissionError(f"Kafka does not let user {kafka.sasl_username!r} describe topic {topic!r}; "
                              "check the topic's ACLs")
    if described["error_code"]:
        raise RuntimeError(f"cannot describe topic {topic!r}: {for_code(described['error_code']).__name__}")
    return sorted(p["partition"] for p in described["partitions"])


async def max_message_bytes(kafka: KafkaSettings, topic: str) -> int:
    """The largest record batch the broker accepts on ``topic`` (its ``max.message.bytes``)."""
    async with _admin(kafka) as admin:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})])
    [(error_code, error_message, _type, _name, entries)] = response.resources
    if error_code:
        raise RuntimeError(f"cannot describe topic {topic!r}: {error_message or for_code(error_code).__name__}")
    return next(int(value) for name, value, *_ in entries if name == "max.message.bytes")
