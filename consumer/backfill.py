"""`backfill`: runs found in the metadata index (both schemas), for runs that predate the events.

The index is read with a point in time and ``search_after``, so any number of documents is read,
consistently, without the 10,000-hit window of a plain search.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection
from typing import Any

from elasticsearch import AsyncElasticsearch

from consumer.elastic import is_transient
from consumer.rebuild import Summary
from consumer.retry import RetryPolicy
from producer_hooks.events import Event, InvalidEvent, make_event

log = logging.getLogger(__name__)

# Both schemas carry `timestamp`; older documents may only have their start date.
DATE_FIELDS = ("timestamp", "start_date", "startDate")
UUID_FIELDS = ("uuid", "uuid.keyword")


def metadata_query(days: int, uuids: Collection[str] = ()) -> dict[str, Any]:
    if uuids:
        return {"bool": {"should": [{"terms": {name: list(uuids)}} for name in UUID_FIELDS], "minimum_should_match": 1}}
    since = f"now-{days}d/d"
    return {"bool": {"should": [{"range": {name: {"gte": since}}} for name in DATE_FIELDS], "minimum_should_match": 1}}


async def metadata_documents(es: AsyncElasticsearch, index: str, query: dict[str, Any], retry: RetryPolicy,
                             page_size: int = 1000, keep_alive: str = "2m") -> AsyncIterator[dict[str, Any]]:
    """Every matching document's source, page by page, under one point in time."""
    async for attempt in retry.retrying(is_transient):
        with attempt:
            pit = (await es.open_point_in_time(index=index, keep_alive=keep_alive, ignore_unavailable=True))["id"]
    try:
        after: list[Any] | None = None
        while True:
            async for attempt in retry.retrying(is_transient):
                with attempt:
                    page = await es.search(pit={"id": pit, "keep_alive": keep_alive}, query=query, size=page_size,
                                           sort=[{"_shard_doc": "asc"}], search_after=after, track_total_hits=False)
            hits = page["hits"]["hits"]
            pit = page.get("pit_id", pit)
            for hit in hits:
                yield hit["_source"]
            if len(hits) < page_size:
                return
            after = hits[-1]["sort"]
    finally:
        try:
            await es.close_point_in_time(id=pit)
        except Exception as err:  # it expires by itself; not worth failing the backfill for
            log.debug("closing point in time failed: %s", err)


async def finished_runs_in_index(es: AsyncElasticsearch, index: str, days: int, retry: RetryPolicy,
                                 summary: Summary, uuids: Collection[str] = ()) -> dict[str, Event]:
    """The finished runs among the metadata documents, by uuid (the latest document of a run wins)."""
    runs: dict[str, Event] = {}
    async for doc in metadata_documents(es, index, metadata_query(days, uuids), retry):
        summary.seen += 1
        try:
            event = make_event(doc)
        except InvalidEvent as err:
            summary.skip("invalid metadata")
            log.warning("skipping metadata document %s: %s", doc.get("uuid", "without uuid"), err)
            continue
        if event.kind != "finished":
            summary.skip("status not terminal")
            continue
        previous = runs.get(event.run.uuid)
        if previous is None or (event.run.end or event.run.start) >= (previous.run.end or previous.run.start):  # type: ignore[operator]
            runs[event.run.uuid] = event
    return runs
