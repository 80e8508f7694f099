"""Documents into Elasticsearch, searchable as soon as the call returns."""

from __future__ import annotations

from collections.abc import Iterable

from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk


async def index_docs(es: AsyncElasticsearch, index: str, docs: Iterable[dict], *, refresh: bool = True) -> int:
    actions = ({"_index": index, "_source": doc} for doc in docs)
    indexed, errors = await async_bulk(es, actions, refresh="wait_for" if refresh else False, raise_on_error=True)
    return indexed
