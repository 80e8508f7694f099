"""The store: where results, run metadata and reports live: Elasticsearch 8 or 9, or OpenSearch 2 or 3.

The product speaks to its store in one dialect, the narrow part of elasticsearch-py 8's async
client it uses: keyword arguments, ``options(ignore_status=...)``, responses with ``.body``,
elasticsearch-py's exceptions. :class:`Store` is that dialect. Against Elasticsearch it hands each
call to :class:`elasticsearch.AsyncElasticsearch` as it is; against OpenSearch, whose client has
another shape (request bodies, points in time, ``flat_object`` for ``flattened``, its own
exceptions), :class:`_OpenSearch` translates it. Which one is chosen by what the server says it is
(``GET /``), on the first request, unless ``STORE`` names it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from elastic_transport import ApiResponseMeta, ConnectionTimeout, HttpHeaders, NodeConfig, ObjectApiResponse, TlsError
from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    AuthenticationException,
    AuthorizationException,
    BadRequestError,
    ConflictError,
    NotFoundError,
)

ELASTICSEARCH = "elasticsearch"
OPENSEARCH = "opensearch"
STORES = (ELASTICSEARCH, OPENSEARCH)


@dataclass
class _Connection:
    """What every view of one store shares: the server's kind and its client, made on first use."""

    url: str
    kind: str | None  # None until the server has said what it is
    options: dict[str, dict[str, Any]]
    probe: dict[str, Any]
    client: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Store:
    """One store, whichever server it is; ``async with`` it, or :meth:`close` it."""

    def __init__(self, url: str, kind: str | None, elasticsearch: dict[str, Any], opensearch: dict[str, Any],
                 probe: dict[str, Any]) -> None:
        self._connection = _Connection(url, kind, {ELASTICSEARCH: elasticsearch, OPENSEARCH: opensearch}, probe)
        self._ignore: tuple[int, ...] = ()
        self.indices = _Indices(self)

    @property
    def kind(self) -> str | None:
        return self._connection.kind

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def options(self, *, ignore_status: int | Sequence[int] = ()) -> Store:
        """This store, answering the given statuses with their body instead of raising."""
        view = Store.__new__(Store)
        view._connection = self._connection
        view._ignore = (ignore_status,) if isinstance(ignore_status, int) else tuple(ignore_status)
        view.indices = _Indices(view)
        return view

    async def backend(self) -> Any:
        connection = self._connection
        if connection.client is None:
            async with connection.lock:
                if connection.client is None:
                    if connection.kind is None:
                        connection.kind = await _what_is(connection.url, connection.probe)
                    options = connection.options[connection.kind]
                    connection.client = (_OpenSearch(connection.url, options) if connection.kind == OPENSEARCH
                                         else AsyncElasticsearch(connection.url, **options))
        client = connection.client
        return client.options(ignore_status=list(self._ignore)) if self._ignore else client

    async def close(self) -> None:
        client, self._connection.client = self._connection.client, None
        if client is not None:
            await client.close()

    # The calls the product makes, in elasticsearch-py 8's shape.
    async def search(self, **kwargs: Any) -> Any:
        return await (await self.backend()).search(**kwargs)

    async def perform_request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request the product builds itself (e.g. a dashboard's ndjson ``_msearch``)."""
        return await (await self.backend()).perform_request(method, path, **kwargs)

    async def msearch(self, **kwargs: Any) -> Any:
        return await (await self.backend()).msearch(**kwargs)

    async def count(self, **kwargs: Any) -> Any:
        return await (await self.backend()).count(**kwargs)

    async def get(self, **kwargs: Any) -> Any:
        return await (await self.backend()).get(**kwargs)

    async def mget(self, **kwargs: Any) -> Any:
        return await (await self.backend()).mget(**kwargs)

    async def exists(self, **kwargs: Any) -> Any:
        return await (await self.backend()).exists(**kwargs)

    async def index(self, **kwargs: Any) -> Any:
        return await (await self.backend()).index(**kwargs)

    async def delete(self, **kwargs: Any) -> Any:
        return await (await self.backend()).delete(**kwargs)

    async def bulk(self, **kwargs: Any) -> Any:
        return await (await self.backend()).bulk(**kwargs)

    async def open_point_in_time(self, **kwargs: Any) -> Any:
        return await (await self.backend()).open_point_in_time(**kwargs)

    async def close_point_in_time(self, **kwargs: Any) -> Any:
        return await (await self.backend()).close_point_in_time(**kwargs)


class _Indices:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def _call(self, name: str, **kwargs: Any) -> Any:
        return await getattr((await self._store.backend()).indices, name)(**kwargs)

    async def create(self, **kwargs: Any) -> Any:
        return await self._call("create", **kwargs)

    async def exists(self, **kwargs: Any) -> Any:
        return await self._call("exists", **kwargs)

    async def delete(self, **kwargs: Any) -> Any:
        return await self._call("delete", **kwargs)

    async def refresh(self, **kwargs: Any) -> Any:
        return await self._call("refresh", **kwargs)

    async def get_mapping(self, **kwargs: Any) -> Any:
        return await self._call("get_mapping", **kwargs)

    async def put_settings(self, **kwargs: Any) -> Any:
        return await self._call("put_settings", **kwargs)


async def create_index(store: Store, index: str, mappings: Mapping[str, Any],
                       settings: Mapping[str, Any] | None = None) -> bool:
    """Create ``index`` unless it exists; True if this call created it. Safe for many writers at
    once: losing the race to create it is not an error."""
    try:
        await store.indices.create(index=index, mappings=mappings, settings=settings)
    except BadRequestError as err:
        if err.error == "resource_already_exists_exception":
            return False
        raise
    return True


async def _what_is(url: str, probe: Mapping[str, Any]) -> str:
    """``opensearch`` when ``GET /`` says so; Elasticsearch otherwise (which may not serve ``/`` at
    all: its test distribution has no root endpoint)."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=probe.get("timeout", 10))) as session:
            async with session.get(url.rstrip("/") + "/", auth=probe.get("auth"), headers=probe.get("headers"),
                                   ssl=probe.get("ssl")) as response:
                if response.status != 200:
                    return ELASTICSEARCH
                info = await response.json(content_type=None)
    except (aiohttp.ClientError, ValueError, asyncio.TimeoutError) as err:
        # The first real request will meet the same problem and say it in the usual way.
        raise TransportConnectionError(f"cannot ask {url} what it is: {type(err).__name__}: {err}") from err
    distribution = (info.get("version") or {}).get("distribution") if isinstance(info, dict) else None
    return OPENSEARCH if distribution == OPENSEARCH else ELASTICSEARCH


# -- OpenSearch ----------------------------------------------------------------------------------

# Keyword arguments of elasticsearch-py's search that are request-body fields; the rest are URL
# parameters in both dialects.
_SEARCH_BODY = frozenset({
    "query", "size", "from_", "sort", "search_after", "pit", "aggs", "aggregations", "source", "_source",
    "track_total_hits", "collapse", "post_filter", "highlight", "fields", "docvalue_fields", "stored_fields",
    "min_score", "runtime_mappings", "script_fields", "suggest", "timeout", "terminate_after", "version",
    "seq_no_primary_term", "explain", "indices_boost", "rescore", "stats", "profile",
})  # fmt: skip
_RENAMED = {"from_": "from", "source": "_source"}
# elasticsearch-py's names for URL parameters, as the server spells them.
_URL_RENAMED = {"source": "_source", "source_includes": "_source_includes", "source_excludes": "_source_excludes"}
# Index settings Elasticsearch has and OpenSearch refuses.
_ELASTICSEARCH_ONLY_SETTINGS = frozenset({"index.mapping.total_fields.ignore_dynamic_beyond_limit"})
# ``flattened`` parameters ``flat_object`` does not take.
_FLAT_OBJECT_PARAMS = frozenset({"type"})


def opensearch_mapping(mapping: Any) -> Any:
    """An Elasticsearch mapping for OpenSearch: ``flattened`` becomes ``flat_object`` (without the
    parameters it does not take), booleans lose ``ignore_malformed``; everything else is the same."""
    if isinstance(mapping, dict):
        if mapping.get("type") == "flattened":
            return {"type": "flat_object", **{k: v for k, v in mapping.items() if k in _FLAT_OBJECT_PARAMS - {"type"}}}
        if mapping.get("type") == "boolean":  # OpenSearch's booleans take no ignore_malformed
            return {key: value for key, value in mapping.items() if key != "ignore_malformed"}
        return {key: opensearch_mapping(value) for key, value in mapping.items()}
    if isinstance(mapping, list):
        return [opensearch_mapping(item) for item in mapping]
    return mapping


def opensearch_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if key not in _ELASTICSEARCH_ONLY_SETTINGS}


class _OpenSearch:
    """opensearch-py's async client, spoken to in elasticsearch-py's dialect."""

    def __init__(self, url: str, options: dict[str, Any], client: Any = None, ignore: Sequence[int] = ()) -> None:
        from opensearchpy import AsyncOpenSearch

        self._url = url
        self._options = options
        self._client = client if client is not None else AsyncOpenSearch([url], **options)
        self._ignore = tuple(ignore)
        self.indices = _OpenSearchIndices(self)

    def options(self, *, ignore_status: Sequence[int] = ()) -> _OpenSearch:
        return _OpenSearch(self._url, self._options, self._client, ignore_status)

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, call: Any, /, **kwargs: Any) -> ObjectApiResponse:
        from opensearchpy import exceptions as os_errors

        try:
            body = await call(**kwargs)
        except os_errors.TransportError as err:
            status = err.status_code if isinstance(err.status_code, int) else 0
            if status in self._ignore:
                info = err.info if isinstance(err.info, dict) else {"error": str(err.error), "status": status}
                return ObjectApiResponse(body=info, meta=_meta(self._url, status))
            raise _translated(err, self._url) from err
        return ObjectApiResponse(body=body, meta=_meta(self._url, 200))

    async def search(self, *, index: Any = None, **kwargs: Any) -> ObjectApiResponse:
        body, params = _split(kwargs, _SEARCH_BODY)
        if body.get("sort") == [{"_shard_doc": "asc"}]:
            body["sort"] = [{"_doc": "asc"}]  # a point in time's tie-breaker, as OpenSearch 2 names it
        return await self._call(self._client.search, index=index, body=body, params=params)

    async def perform_request(self, method: str, path: str, *, body: Any = None,
                              headers: Mapping[str, str] | None = None) -> ObjectApiResponse:
        return await self._call(self._client.transport.perform_request, method=method, url=path, body=body,
                                headers=dict(headers or {}))

    async def msearch(self, *, searches: Sequence[Any] | None = None, index: Any = None, body: Any = None,
                      **params: Any) -> ObjectApiResponse:
        return await self._call(self._client.msearch, index=index, body=searches if searches is not None else body,
                                params=_params(params))

    async def count(self, *, index: Any = None, query: Any = None, **params: Any) -> ObjectApiResponse:
        body = {"query": query} if query is not None else None
        return await self._call(self._client.count, index=index, body=body, params=_params(params))

    async def get(self, *, index: str, id: str, **params: Any) -> ObjectApiResponse:
        return await self._call(self._client.get, index=index, id=id, params=_params(params))

    async def mget(self, *, index: str | None = None, ids: Sequence[str] | None = None, docs: Any = None,
                   **params: Any) -> ObjectApiResponse:
        body = {"ids": list(ids)} if ids is not None else {"docs": docs}
        return await self._call(self._client.mget, index=index, body=body, params=_params(params))

    async def exists(self, *, index: str, id: str, **params: Any) -> bool:
        return bool(await self._client.exists(index=index, id=id, params=_params(params)))

    async def index(self, *, index: str, document: Any, id: str | None = None, **params: Any) -> ObjectApiResponse:
        return await self._call(self._client.index, index=index, id=id, body=document, params=_params(params))

    async def delete(self, *, index: str, id: str, **params: Any) -> ObjectApiResponse:
        return await self._call(self._client.delete, index=index, id=id, params=_params(params))

    async def bulk(self, *, operations: Sequence[Any], index: str | None = None, **params: Any) -> ObjectApiResponse:
        return await self._call(self._client.bulk, index=index, body=list(operations), params=_params(params))

    async def open_point_in_time(self, *, index: str, keep_alive: str, **params: Any) -> ObjectApiResponse:
        response = await self._call(self._client.create_pit, index=index,
                                    params=_params({"keep_alive": keep_alive, **params}))
        return ObjectApiResponse(body={"id": response.body["pit_id"]}, meta=response.meta)

    async def close_point_in_time(self, *, id: str) -> ObjectApiResponse:
        return await self._call(self._client.delete_pit, body={"pit_id": [id]})


class _OpenSearchIndices:
    def __init__(self, outer: _OpenSearch) -> None:
        self._outer = outer

    async def create(self, *, index: str, mappings: Any = None, settings: Any = None, **params: Any) -> ObjectApiResponse:
        body: dict[str, Any] = {}
        if mappings is not None:
            body["mappings"] = opensearch_mapping(mappings)
        if settings is not None:
            body["settings"] = opensearch_settings(settings)
        return await self._outer._call(self._outer._client.indices.create, index=index, body=body or None,
                                       params=_params(params))

    async def exists(self, *, index: str, **params: Any) -> bool:
        return bool(await self._outer._client.indices.exists(index=index, params=_params(params)))

    async def delete(self, *, index: str, **params: Any) -> ObjectApiResponse:
        return await self._outer._call(self._outer._client.indices.delete, index=index, params=_params(params))

    async def refresh(self, *, index: str | None = None, **params: Any) -> ObjectApiResponse:
        return await self._outer._call(self._outer._client.indices.refresh, index=index, params=_params(params))

    async def get_mapping(self, *, index: str, **params: Any) -> ObjectApiResponse:
        return await self._outer._call(self._outer._client.indices.get_mapping, index=index, params=_params(params))

    async def put_settings(self, *, index: str, settings: Any, **params: Any) -> ObjectApiResponse:
        return await self._outer._call(self._outer._client.indices.put_settings, index=index,
                                       body={"settings": opensearch_settings(settings)}, params=_params(params))


def _split(kwargs: Mapping[str, Any], body_keys: frozenset[str]) -> tuple[dict[str, Any], dict[str, str]]:
    body = {_RENAMED.get(key, key): value for key, value in kwargs.items() if key in body_keys and value is not None}
    params = {key: value for key, value in kwargs.items() if key not in body_keys and value is not None}
    return body, _params(params)


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    """URL parameters as opensearch-py sends them: strings, booleans in lower case, lists joined."""
    out = {}
    for key, value in params.items():
        if value is None:
            continue
        key = _URL_RENAMED.get(key, key)
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(item) for item in value)
        out[key] = str(value)
    return out


def _meta(url: str, status: int) -> ApiResponseMeta:
    return ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                           node=NodeConfig("https" if url.startswith("https") else "http", "store", 0))


def _translated(err: Any, url: str) -> Exception:
    """An opensearch-py error as the elasticsearch-py error the product knows how to handle."""
    from opensearchpy import exceptions as os_errors

    if isinstance(err, os_errors.SSLError):
        return TlsError(str(err))
    if isinstance(err, os_errors.ConnectionTimeout):
        return ConnectionTimeout(str(err))
    if isinstance(err, os_errors.ConnectionError):
        return TransportConnectionError(str(err))
    status = err.status_code if isinstance(err.status_code, int) else 500
    body = err.info if isinstance(err.info, (dict, str)) else str(err.error)
    message = str(err.error)
    kind = {400: BadRequestError, 401: AuthenticationException, 403: AuthorizationException, 404: NotFoundError,
            409: ConflictError}.get(status, ApiError)
    return kind(message=message, meta=_meta(url, status), body=body)


__all__ = ["ELASTICSEARCH", "OPENSEARCH", "STORES", "Store", "create_index", "opensearch_mapping", "opensearch_settings"]
