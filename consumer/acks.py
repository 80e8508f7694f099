"""Acknowledgements: a change of a judged number in a run is known (a bug link, an expected change).

``report-consumer ack UUID --metric NAME --reason TEXT`` stores one document per (run, number) in
``ACK_INDEX`` (``_id`` derived from both, so acking again replaces the reason); ``acks`` lists
them. ``NAME`` is a judged number's name as ``show`` prints it, or a glob of names
(``node-density/*``). Verdicts built afterwards (later runs, or this run's report rebuilt) treat
the acknowledged change as the expected level: it no longer makes them ``regression``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumer.elastic import is_transient
from consumer.report import iso
from consumer.retry import RetryPolicy
from consumer.store import Store, create_index


@dataclass(frozen=True)
class Ack:
    uuid: str
    metric: str  # a judged number's name, or a glob of names
    reason: str


ACK_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "uuid": {"type": "keyword"},
        "metric": {"type": "keyword"},
        "reason": {"type": "keyword", "ignore_above": 8191},
        "by": {"type": "keyword"},
        "created_at": {"type": "date"},
    },
}


def ack_id(uuid: str, metric: str) -> str:
    return hashlib.sha256(f"{uuid}\x00{metric}".encode()).hexdigest()[:32]


async def ensure_ack_index(es: Store, index: str) -> None:
    await create_index(es, index, ACK_MAPPING)


async def add_ack(es: Store, index: str, uuid: str, metric: str, reason: str, by: str | None,
                  now: datetime, retry: RetryPolicy) -> dict[str, Any]:
    document = {"uuid": uuid, "metric": metric, "reason": reason, "by": by, "created_at": iso(now)}
    async for attempt in retry.retrying(is_transient, f"storing the acknowledgement of {uuid}"):
        with attempt:
            await ensure_ack_index(es, index)
            await es.index(index=index, id=ack_id(uuid, metric), document=document, refresh="wait_for")
    return document


async def list_acks(es: Store, index: str, retry: RetryPolicy, *, uuids: Iterable[str] = (),
                    limit: int = 1000) -> list[dict[str, Any]]:
    """The acknowledgements (of ``uuids`` only, when given), newest first."""
    wanted = list(dict.fromkeys(uuids))
    query: dict[str, Any] = {"terms": {"uuid": wanted}} if wanted else {"match_all": {}}
    async for attempt in retry.retrying(is_transient, f"reading acknowledgements from {index}"):
        with attempt:
            response = await es.search(index=index, query=query, size=limit, ignore_unavailable=True,
                                       sort=[{"created_at": "desc"}, {"uuid": "asc"}], track_total_hits=False)
    return [hit["_source"] for hit in response["hits"]["hits"]]


async def acks_for(es: Store, index: str, uuids: Iterable[str], retry: RetryPolicy) -> list[Ack]:
    """The acknowledgements of the runs ``uuids`` (a verdict's history and run)."""
    return [as_ack(doc) for doc in await list_acks(es, index, retry, uuids=uuids)]


def as_ack(document: Mapping[str, Any]) -> Ack:
    return Ack(str(document.get("uuid")), str(document.get("metric")), str(document.get("reason", "")))


__all__ = ["ACK_MAPPING", "Ack", "ack_id", "acks_for", "add_ack", "as_ack", "ensure_ack_index", "list_acks"]
