"""Documents into the store (Elasticsearch or OpenSearch), searchable as soon as the call returns."""

from __future__ import annotations

from collections.abc import Iterable

CHUNK = 2000


async def index_docs(es, index: str, docs: Iterable[dict], *, refresh: bool = True) -> int:
    """Bulk-index ``docs`` into ``index``; raise if any is refused. Returns how many were indexed."""
    batch: list[dict] = []
    indexed = 0

    async def send(last: bool) -> int:
        response = await es.bulk(operations=batch, refresh="wait_for" if refresh and last else False)
        if response["errors"]:
            failed = [item for item in response["items"] if next(iter(item.values())).get("error")]
            raise AssertionError(f"{len(failed)} documents refused by {index}: {failed[:2]}")
        return len(response["items"])

    for doc in docs:
        batch += [{"index": {"_index": index}}, doc]
        if len(batch) >= 2 * CHUNK:
            indexed += await send(last=False)
            batch = []
    if batch:
        indexed += await send(last=True)
    elif refresh and indexed:
        await es.indices.refresh(index=index)
    return indexed


def mapping_fields(properties: dict) -> int:
    """How many fields a mapping's ``properties`` define (multi-fields and nested objects included),
    as the index's total-fields limit counts them."""
    total = 0
    for spec in properties.values():
        total += 1 + len(spec.get("fields", {}))
        total += mapping_fields(spec.get("properties", {}))
    return total
