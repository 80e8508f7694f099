"""The store's client, configured once; reading every hit of a search; which errors to retry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TlsError
from elasticsearch import ApiError, NotFoundError

from consumer.settings import ElasticsearchSettings
from consumer.store import Store
from producer_hooks.settings import ssl_context

log = logging.getLogger(__name__)

# 408 and 429 are the 4xx that say "later", not "never".
_TRANSIENT_4XX = frozenset({408, 429})


def connect(settings: ElasticsearchSettings) -> Store:
    """The store for ``settings`` (Elasticsearch or OpenSearch, see :mod:`consumer.store`); no I/O
    happens until the first request.

    The clients themselves never retry: every caller wraps its requests in the :class:`RetryPolicy`,
    which backs off with jitter and logs, so a second retry layer would only multiply attempts.
    """
    elasticsearch: dict[str, Any] = {
        "request_timeout": settings.timeout_s,
        "max_retries": 0,
        "retry_on_timeout": False,
        # Reports with many metric series are large and compress well.
        "http_compress": True,
    }
    opensearch: dict[str, Any] = {"timeout": settings.timeout_s, "max_retries": 0, "retry_on_timeout": False,
                                  "http_compress": True}
    probe: dict[str, Any] = {"timeout": min(settings.timeout_s, 10.0)}
    if settings.api_key is not None:
        elasticsearch["api_key"] = settings.api_key.reveal()
        opensearch["headers"] = probe["headers"] = {"Authorization": f"ApiKey {settings.api_key.reveal()}"}
    elif settings.username is not None or settings.password is not None:
        password = settings.password.reveal() if settings.password is not None else ""
        elasticsearch["basic_auth"] = opensearch["http_auth"] = (settings.username or "", password)
        probe["auth"] = aiohttp.BasicAuth(settings.username or "", password)
    # The transport refuses TLS options on plain http nodes.
    if urlsplit(settings.url).scheme == "https":
        for options in (elasticsearch, opensearch):
            options["verify_certs"] = settings.verify_certs
            if settings.ca_certs is not None:
                options["ca_certs"] = str(settings.ca_certs)
            if not settings.verify_certs:
                options["ssl_show_warn"] = False
        opensearch["use_ssl"] = True
        probe["ssl"] = ssl_context(settings.ca_certs, None, None, settings.verify_certs)
    return Store(settings.url, settings.store, elasticsearch, opensearch, probe)


class IncompleteSearch(Exception):
    """A search answered without all of its shards; its hits cannot be trusted to be all there is."""


async def search_all(
    es: Store,
    index: str,
    query: Mapping[str, Any],
    *,
    page_size: int = 1000,
    keep_alive: str = "1m",
) -> AsyncIterator[dict[str, Any]]:
    """Every ``_source`` matching ``query``. A missing index yields nothing: its results are not
    there yet.

    What fits in one page (a run's results, polled while they arrive) takes one plain search; more
    is read again from the start under a point in time, page by page, a consistent view however
    many pages.
    """
    first = await es.search(index=index, query=query, size=page_size, track_total_hits=False,
                            allow_partial_search_results=False, ignore_unavailable=True)
    _check_complete(first, index)
    if len(first["hits"]["hits"]) < page_size:
        for hit in first["hits"]["hits"]:
            yield hit["_source"]
        return
    try:
        pit = await es.open_point_in_time(index=index, keep_alive=keep_alive, ignore_unavailable=True)
    except NotFoundError:
        return
    pit_id = pit["id"]
    try:
        search_after: list[Any] | None = None
        while True:
            page = await es.search(
                pit={"id": pit_id, "keep_alive": keep_alive},
                query=query,
                size=page_size,
                sort=[{"_shard_doc": "asc"}],
                search_after=search_after,
                track_total_hits=False,
                allow_partial_search_results=False,
            )
            _check_complete(page, index)
            pit_id = page.get("pit_id", pit_id)
            hits = page["hits"]["hits"]
            for hit in hits:
                yield hit["_source"]
            if len(hits) < page_size:
                return
            search_after = hits[-1]["sort"]
    finally:
        try:
            await es.close_point_in_time(id=pit_id)
        except Exception as exc:  # it expires by itself after keep_alive
            log.debug("could not close point in time on %s: %s", index, exc)


def _check_complete(page: Mapping[str, Any], index: str) -> None:
    if page.get("timed_out") or page["_shards"].get("failed"):
        raise IncompleteSearch(f"search of {index!r} answered by part of its shards: {page['_shards']}")


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same request again later may succeed.

    Connection failures, timeouts, 408, 429 and 5xx are; other 4xx (bad request, auth, conflict,
    not found) and TLS failures (a wrong certificate stays wrong) are not.
    """
    if isinstance(exc, IncompleteSearch):
        return True
    if isinstance(exc, TlsError):
        return False
    if isinstance(exc, (TransportConnectionError, ConnectionTimeout, asyncio.TimeoutError)):
        return True
    if isinstance(exc, ApiError):
        status = exc.meta.status
        return status >= 500 or status in _TRANSIENT_4XX
    return False
