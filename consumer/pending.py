"""Runs that never finish: a `started` run with no `finished` event by its deadline still gets a report.

Every `started` event is remembered in an index of its own (``<REPORT_INDEX>-pending``), so the
memory survives restarts and is shared by every member of the group. A sweep, every
``sweep_every_s``, builds an ``incomplete`` report (the run's metadata, what results exist, no
metrics) for each run past ``incomplete_after_s`` since its start, then forgets it. The report is
written like any other, under the `started` event's origin: a `finished` event, always later,
replaces it when it comes, and a run that did finish is never reported incomplete (its finished
report, from a later event, stands; see :func:`consumer.sink.decide`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from consumer.origin import Origin
from consumer.store import Store, create_index
from producer_hooks.events import Event, InvalidEvent, format_date, make_event

log = logging.getLogger(__name__)

PENDING_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "uuid": {"type": "keyword"},
        "due": {"type": "date"},
        "metadata": {"type": "object", "enabled": False},
        "origin": {"type": "object", "enabled": False},
    },
}

# Runs swept at once; the next sweep takes the rest.
SWEEP_BATCH = 500


@dataclass(frozen=True)
class Started:
    """A started run to remember: its event, where the event came from, and when it is due."""

    event: Event
    origin: Origin
    due: datetime


def due_date(event: Event, origin: Origin, incomplete_after_s: float) -> datetime:
    """When a run without a finished event is reported incomplete: that long after its start (or,
    without a start date, after its event was published)."""
    return (event.run.start or origin.published_at) + timedelta(seconds=incomplete_after_s)


def pending_document(started: Started) -> dict[str, Any]:
    return {
        "uuid": started.event.run.uuid,
        "due": format_date(started.due),
        "metadata": dict(started.event.metadata),
        "origin": started.origin.to_dict(),
    }


def from_document(doc: dict[str, Any]) -> Started:
    """A remembered run back; the metadata is read again, as the event first was."""
    event = make_event(doc["metadata"], "started")
    return Started(event, Origin.from_dict(doc["origin"]), datetime.fromisoformat(doc["due"].replace("Z", "+00:00")))


async def ensure_pending_index(es: Store, index: str) -> None:
    await create_index(es, index, PENDING_MAPPING)


async def remember(es: Store, index: str, runs: Sequence[Started]) -> None:
    """Store ``runs`` in one bulk request; a later `started` event of a run replaces the earlier."""
    if not runs:
        return
    operations: list[dict[str, Any]] = []
    for started in runs:
        operations += [{"index": {"_index": index, "_id": started.event.run.uuid}}, pending_document(started)]
    response = await es.bulk(operations=operations)
    if response.get("errors"):
        failed = [item["index"] for item in response["items"] if item["index"].get("error")]
        raise PendingNotStored(f"{len(failed)} started runs not stored in {index}: {failed[0]['error']}")


async def due(es: Store, index: str, now: datetime) -> tuple[list[Started], list[str]]:
    """Remembered runs whose deadline has passed, oldest first; and the uuids of remembered
    documents that no longer read as a started run (to forget, not to retry forever)."""
    response = await es.options(ignore_status=404).search(
        index=index, query={"range": {"due": {"lte": format_date(now)}}}, sort=[{"due": "asc"}], size=SWEEP_BATCH,
        track_total_hits=False,
    )
    runs, unreadable = [], []
    for hit in response.body.get("hits", {}).get("hits", []):
        try:
            runs.append(from_document(hit["_source"]))
        except (InvalidEvent, KeyError, ValueError) as err:
            log.error("remembered run %s cannot be read back (%s); forgotten", hit["_id"], err)
            unreadable.append(hit["_id"])
    return runs, unreadable


async def forget(es: Store, index: str, uuids: Sequence[str]) -> None:
    if uuids:
        await es.bulk(operations=[{"delete": {"_index": index, "_id": uuid}} for uuid in uuids])


class PendingNotStored(Exception):
    """The pending index refused started runs."""


def incomplete_reason(incomplete_after_s: float) -> str:
    hours = incomplete_after_s / 3600
    span = f"{hours:g} h" if hours >= 1 else f"{incomplete_after_s:g} s"
    return f"no finished event within {span} of the run's start (INCOMPLETE_AFTER)"


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


__all__ = [
    "PENDING_MAPPING",
    "PendingNotStored",
    "Started",
    "due",
    "due_date",
    "ensure_pending_index",
    "forget",
    "from_document",
    "incomplete_reason",
    "pending_document",
    "remember",
]
