"""`backfill`: runs found in the metadata index (both schemas), for runs that predate the events.

The index is read under one point in time with ``search_after`` (:func:`consumer.elastic.search_all`),
so any number of documents is read, consistently, without the 10,000-hit window of a plain search.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime, timezone
from typing import Any

from consumer.elastic import is_transient, search_all
from consumer.origin import Delivery, Origin
from consumer.rebuild import Summary
from consumer.retry import RetryPolicy
from consumer.store import Store
from producer_hooks.events import DEFAULT_LIMITS, EventLimits, InvalidEvent, make_event

log = logging.getLogger(__name__)

# Both schemas carry `timestamp`; older documents may only have their start date.
DATE_FIELDS = ("timestamp", "start_date", "startDate")
UUID_FIELDS = ("uuid", "uuid.keyword")


def metadata_query(days: int, uuids: Collection[str] = ()) -> dict[str, Any]:
    if uuids:
        return {"bool": {"should": [{"terms": {name: list(uuids)}} for name in UUID_FIELDS], "minimum_should_match": 1}}
    since = f"now-{days}d/d"
    return {"bool": {"should": [{"range": {name: {"gte": since}}} for name in DATE_FIELDS], "minimum_should_match": 1}}


async def finished_runs_in_index(es: Store, index: str, days: int, retry: RetryPolicy,
                                 summary: Summary, uuids: Collection[str] = (),
                                 limits: EventLimits = DEFAULT_LIMITS) -> dict[str, Delivery]:
    """The finished runs among the metadata documents, by uuid (the latest document of a run wins)."""
    async for attempt in retry.retrying(is_transient, f"reading {index}"):
        with attempt:  # a failure part-way reads the whole span again, under a new point in time
            scan = Summary()
            runs = await _scan(es, index, metadata_query(days, uuids), scan, limits)
    summary.seen += scan.seen
    summary.skipped.update(scan.skipped)
    return runs


async def _scan(es: Store, index: str, query: dict[str, Any], summary: Summary,
                limits: EventLimits) -> dict[str, Delivery]:
    runs: dict[str, Delivery] = {}
    async for doc in search_all(es, index, query):
        summary.seen += 1
        try:
            event = make_event(doc, now=datetime.now(timezone.utc), limits=limits)
        except InvalidEvent as err:
            summary.skip("invalid metadata")
            log.warning("skipping metadata document %s: %s", doc.get("uuid", "without uuid"), err)
            continue
        if event.kind != "finished":
            summary.skip("status not terminal")
            continue
        previous = runs.get(event.run.uuid)
        if previous is None or event.run.end >= previous.event.run.end:  # type: ignore[operator]
            # A document has no time of publication: the run's end stands for it, so a report built
            # from a later Kafka event of the run is never replaced by a different document.
            runs[event.run.uuid] = Delivery(event, Origin(published_at=event.run.end))  # type: ignore[arg-type]
    return runs
