"""The Elasticsearch client, configured once, and the rule that says which of its errors to retry."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TlsError
from elasticsearch import ApiError, AsyncElasticsearch

from consumer.settings import ElasticsearchSettings

# 408 and 429 are the 4xx that say "later", not "never".
_TRANSIENT_4XX = frozenset({408, 429})


def connect(settings: ElasticsearchSettings) -> AsyncElasticsearch:
    """An :class:`AsyncElasticsearch` for ``settings``; no I/O happens until the first request.

    The client itself never retries: every caller wraps its requests in the :class:`RetryPolicy`,
    which backs off with jitter and logs, so a second retry layer would only multiply attempts.
    """
    options: dict[str, Any] = {
        "request_timeout": settings.timeout_s,
        "max_retries": 0,
        "retry_on_timeout": False,
        # Reports with many metric series are large and compress well.
        "http_compress": True,
    }
    if settings.api_key is not None:
        options["api_key"] = settings.api_key.reveal()
    elif settings.username:
        password = settings.password.reveal() if settings.password is not None else ""
        options["basic_auth"] = (settings.username, password)
    # The transport refuses TLS options on plain http nodes.
    if urlsplit(settings.url).scheme == "https":
        options["verify_certs"] = settings.verify_certs
        if settings.ca_certs is not None:
            options["ca_certs"] = str(settings.ca_certs)
        if not settings.verify_certs:
            options["ssl_show_warn"] = False
    return AsyncElasticsearch(settings.url, **options)


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same request again later may succeed.

    Connection failures, timeouts, 408, 429 and 5xx are; other 4xx (bad request, auth, conflict,
    not found) and TLS failures (a wrong certificate stays wrong) are not.
    """
    if isinstance(exc, TlsError):
        return False
    if isinstance(exc, (TransportConnectionError, ConnectionTimeout, asyncio.TimeoutError)):
        return True
    if isinstance(exc, ApiError):
        status = exc.meta.status
        return status >= 500 or status in _TRANSIENT_4XX
    return False
