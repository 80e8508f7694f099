"""Documents into Elasticsearch, searchable as soon as the call returns."""

from __future__ import annotations

from collections.abc import Iterable

from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk


async def index_docs(es: AsyncElasticsearch, index: str, docs: Iterable[dict], *, refresh: bool = True) -> int:
    actions = ({"_index": index, "_source": doc} for doc in docs)
    indexed, errors = await async_bulk(es, actions, refresh="wait_for" if refresh else False, raise_on_error=True)
    return indexed


def mapping_fields(properties: dict) -> int:
    """How many fields a mapping's ``properties`` define (multi-fields and nested objects included),
    as the index's total-fields limit counts them."""
    total = 0
    for spec in properties.values():
        total += 1 + len(spec.get("fields", {}))
        total += mapping_fields(spec.get("properties", {}))
    return total
