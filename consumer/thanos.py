"""Thanos Query (Prometheus HTTP API) client: one query's average and maximum per series over a window.

How a window is summarised: on the server, in one request, on the run's own grid.

    sum_over_time((Q') > -Inf < +Inf)[w:step])  or  max_over_time(...)  or  count_over_time(...)

evaluated at the window's last grid point, each part tagged by ``label_replace``; ``Q'`` is ``Q`` with
``offset δ`` on every selector, so the subquery's epoch-aligned points are exactly the run's
``start + k * step`` (see :mod:`consumer.promql`). The server sends three numbers per series instead
of every point: the client-side cost (JSON of every point, decoded and folded here) is gone.

Measured (benchmarks/thanos_window.py, local Prometheus 2.42, irate() of 100 counters, 10 s step, median of 5):
client-side chunked ``query_range`` against server-side subqueries, 0.012 s vs 0.007 s for 1 h x 10
series up to 4.7 s vs 0.44 s for 40 h x 100 series: 1.6-11x faster, the time being JSON (37 MB for
100 series x 11,000 points). An earlier version kept client-side because subqueries sample epoch
multiples of the step, not the run's grid (other count, other max; avg within 0.3 %); the offset
shift removes that difference: on the oracle-checked test data (tests/test_thanos.py,
tests/test_metrics.py, windows on and off the epoch grid) counts and maxima are equal and averages
within 1e-12. benchmarks/perf.py measures the whole rebuild (see README, Performance).

Client-side ``query_range`` (in chunks of <= 11,000 points, folded here) stays for what cannot be
shifted exactly (``time()``, ``@``, subqueries, own offsets: :class:`consumer.promql.Unsupported`)
and for a query the server refuses in its summarised form: the original query then gets its own
answer, and its own error message. Which path answered is in :attr:`QueryResult.method`.

Several windows of one query (a rebuild's runs of one cluster) are summarised in one request with
``@`` per window (:meth:`Thanos.summarize_windows`): one round trip instead of one per run.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from consumer import promql
from consumer.retry import RetryPolicy
from consumer.settings import ThanosSettings
from producer_hooks.settings import ssl_context

# Prometheus and Thanos refuse a range query of more than 11,000 points per series.
MAX_POINTS = 11_000


class ThanosError(Exception):
    """Thanos could not answer; the message names the server and the reason."""


class QueryError(ThanosError):
    """The server refused the query itself (bad PromQL, failed evaluation): retrying cannot help."""


class ThanosUnavailable(ThanosError):
    """Thanos stayed unreachable or failing through every retry."""


class _TransientStatus(ThanosError):
    """HTTP 429 or 5xx: worth another attempt."""


@dataclass(frozen=True)
class SeriesSummary:
    labels: dict[str, str]
    avg: float
    max: float
    samples: int  # finite points that went into avg and max


SERVER = "server"  # summarised by Thanos (subqueries on the run's grid)
CLIENT = "client"  # every point fetched with query_range and folded here


@dataclass(frozen=True)
class QueryResult:
    series: list[SeriesSummary]
    warnings: list[str]
    step_s: float = 0.0  # the resolution evaluated: THANOS_STEP, or coarser to stay in the budget
    method: str = CLIENT  # SERVER or CLIENT: how the numbers were computed (equal either way)


# -- pure helpers -------------------------------------------------------------------------------


def to_ms(moment: datetime) -> int:
    """Unix milliseconds of an aware datetime, the resolution Prometheus works at."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    return round(moment.timestamp() * 1000)


def chunk_windows(start_ms: int, end_ms: int, step_ms: int, max_points: int = MAX_POINTS) -> list[tuple[int, int]]:
    """Split the evaluation grid ``start, start+step, ... <= end`` into ranges of at most ``max_points``.

    Each range starts and ends on a grid point and the next one starts one step later, so the
    chunks together evaluate exactly the points one unlimited ``query_range`` would, each once.
    """
    if step_ms <= 0:
        raise ValueError(f"step {step_ms} ms is not positive")
    if end_ms < start_ms:
        raise ValueError(f"window ends ({end_ms}) before it starts ({start_ms})")
    last = start_ms + (end_ms - start_ms) // step_ms * step_ms
    span = (max_points - 1) * step_ms
    chunks = []
    chunk_start = start_ms
    while chunk_start <= last:
        chunk_end = min(chunk_start + span, last)
        chunks.append((chunk_start, chunk_end))
        chunk_start = chunk_end + step_ms
    return chunks


def budget_step(start_ms: int, end_ms: int, step_ms: int, max_points: int) -> int:
    """``step_ms``, or the smallest multiple of it that evaluates at most ``max_points`` points of
    ``[start, end]``: however long a window, one query's work and memory stay bounded."""
    points = (end_ms - start_ms) // step_ms + 1
    if points <= max_points:
        return step_ms
    factor = -(-(end_ms - start_ms) // (step_ms * (max_points - 1)))  # ceiling division
    return step_ms * factor


def prom_time(ms: int) -> str:
    """Milliseconds as the decimal seconds Prometheus parses, exactly (no float rounding)."""
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    return f"{sign}{ms // 1000}.{ms % 1000:03d}"


class _Accumulator:
    """Running sum, count and max per series: a chunk's points are folded in and dropped."""

    def __init__(self) -> None:
        self.totals: dict[tuple[tuple[str, str], ...], list[float]] = {}  # key -> [sum, count, max]

    def add_matrix(self, result: Sequence[dict[str, Any]]) -> None:
        isfinite = math.isfinite
        for series in result:
            key = tuple(sorted(series["metric"].items()))
            total = self.totals.get(key)
            if total is None:
                total = self.totals[key] = [0.0, 0, -math.inf]
            for _, raw in series.get("values", ()):
                value = float(raw)
                if isfinite(value):  # NaN/Inf (e.g. 0/0 in a ratio) would poison avg and max
                    total[0] += value
                    total[1] += 1
                    if value > total[2]:
                        total[2] = value

    def summaries(self) -> list[SeriesSummary]:
        """Series with at least one finite point, sorted by labels."""
        return [
            SeriesSummary(dict(key), total / count, peak, int(count))
            for key, (total, count, peak) in sorted(self.totals.items())
            if count
        ]


def _read_summaries(result: Sequence[dict[str, Any]], windows: int) -> list[list[SeriesSummary]]:
    """The answer of :func:`consumer.promql.window_sum_max_count`: per window, its series sorted by
    labels (as the client-side path sorts them), the tags removed and ``__name__`` restored."""
    totals: list[dict[tuple[tuple[str, str], ...], list[float]]] = [{} for _ in range(windows)]
    for item in result:
        labels = dict(item["metric"])
        tag = labels.pop(promql.STAT_LABEL)
        name = labels.pop(promql.NAME_LABEL, None)
        if name is not None:
            labels["__name__"] = name
        total = totals[int(tag[1:])].setdefault(tuple(sorted(labels.items())), [0.0, -math.inf, 0])
        total["smc".index(tag[0])] = float(item["value"][1])
    return [
        [SeriesSummary(dict(key), total / count, peak, int(count)) for key, (total, peak, count) in sorted(one.items()) if count]
        for one in totals
    ]


def _is_transient(err: BaseException) -> bool:
    if isinstance(err, (aiohttp.ClientSSLError, aiohttp.InvalidURL)):
        return False  # configuration, not weather
    return isinstance(err, (_TransientStatus, aiohttp.ClientError, asyncio.TimeoutError))


def _error_message(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode("utf-8", "replace").strip()
    if isinstance(doc, dict) and doc.get("error"):
        return str(doc["error"])
    return body[:300].decode("utf-8", "replace").strip()


# -- the client ---------------------------------------------------------------------------------


class Thanos:
    """``async with Thanos(settings, retry) as thanos: await thanos.summarize(q, start, end)``.

    One HTTP session for the client's life; every request is retried on connection errors,
    timeouts and HTTP 429/5xx under ``retry``. ``trace_configs`` are handed to aiohttp (tests use
    them to watch requests on the wire).
    """

    def __init__(
        self,
        settings: ThanosSettings,
        retry: RetryPolicy,
        *,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
    ) -> None:
        self._settings = settings
        self._retry = retry
        self._base = settings.url.rstrip("/")
        self._trace_configs = list(trace_configs)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Thanos:
        headers = {"Accept": "application/json"}
        if self._settings.token is not None:
            headers["Authorization"] = f"Bearer {self._settings.token.reveal()}"
        connector = aiohttp.TCPConnector(
            ssl=ssl_context(self._settings.ca_file, None, None, self._settings.verify_certs)
            if self._base.startswith("https:")
            else False
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s),
            trace_configs=self._trace_configs or None,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def step_ms(self, start_ms: int, end_ms: int) -> int:
        """The step a window is evaluated at: THANOS_STEP, coarser past THANOS_MAX_POINTS."""
        return budget_step(start_ms, end_ms, round(self._settings.step_s * 1000), self._settings.max_points)

    async def summarize(self, query: str, start: datetime, end: datetime) -> QueryResult:
        """Average, maximum and count of finite points per series of ``query`` over ``[start, end]``.

        Evaluated at ``start + k * step`` (``step`` from settings, coarser when the window would
        take more than ``max_points`` points: see :func:`budget_step`), by the server when the query
        can be shifted onto that grid, else by ``query_range`` folded here. Raises
        :class:`QueryError` for a query the server refuses and :class:`ThanosUnavailable` once
        retries are exhausted.
        """
        [result] = await self.summarize_windows(query, [(start, end)])
        return result

    async def summarize_windows(self, query: str, windows: Sequence[tuple[datetime, datetime]]) -> list[QueryResult]:
        """:meth:`summarize` for several windows of one query, in one request when the server can
        answer them all (the caller keeps the batch small enough for one evaluation)."""
        bounds = [(to_ms(start), to_ms(end)) for start, end in windows]
        grids = [promql.grid(start, end, self.step_ms(start, end)) for start, end in bounds]
        try:
            return await self._server_side(query, grids)
        except promql.Unsupported:
            pass
        except QueryError:
            if len(grids) > 1:  # one window may be the trouble (too many samples): each alone
                return [result for window in windows for result in await self.summarize_windows(query, [window])]
            # The summarised form was refused: the original query gets its own answer, or error.
        return [await self._client_side(query, start, end) for start, end in bounds]

    async def _server_side(self, query: str, grids: Sequence[promql.Grid]) -> list[QueryResult]:
        expression = promql.window_sum_max_count(query, grids, at=len(grids) > 1)
        data, warnings = await self._call(
            "query", {"query": expression, "time": prom_time(grids[-1].eval_ms), **self._thanos_params()})
        if data.get("resultType") != "vector":
            raise ThanosError(f"{self._base}: query answered {data.get('resultType')!r}, not a vector")
        per_window = _read_summaries(data["result"], len(grids))
        return [QueryResult(series, warnings, one.step_ms / 1000, SERVER) for series, one in zip(per_window, grids)]

    async def _client_side(self, query: str, start_ms: int, end_ms: int) -> QueryResult:
        step_ms = self.step_ms(start_ms, end_ms)
        totals = _Accumulator()
        warnings: dict[str, None] = {}  # ordered set: chunks repeat the same warning
        for chunk_start, chunk_end in chunk_windows(start_ms, end_ms, step_ms):
            data, chunk_warnings = await self._call(
                "query_range",
                {
                    "query": query,
                    "start": prom_time(chunk_start),
                    "end": prom_time(chunk_end),
                    "step": prom_time(step_ms),
                    **self._thanos_params(),
                },
            )
            if data.get("resultType") != "matrix":
                raise ThanosError(f"{self._base}: query_range answered {data.get('resultType')!r}, not a matrix")
            totals.add_matrix(data["result"])
            warnings.update(dict.fromkeys(chunk_warnings))
            del data  # the chunk's points are in the totals now
        return QueryResult(totals.summaries(), list(warnings), step_ms / 1000, CLIENT)

    async def instant(self, query: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        """``query`` evaluated at one instant: (labels, value) per series (scalars get no labels)."""
        data, _ = await self._call("query", {"query": query, "time": prom_time(to_ms(at)), **self._thanos_params()})
        if data["resultType"] == "vector":
            return [(item["metric"], float(item["value"][1])) for item in data["result"]]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        raise ThanosError(f"{self._base}: query answered {data['resultType']!r}, not a vector")

    def _thanos_params(self) -> dict[str, str]:
        # Thanos: merge HA replicas and answer with what it has (saying so in warnings) when a
        # store is down. Prometheus ignores both. The server-side timeout bounds evaluation.
        return {"dedup": "true", "partial_response": "true", "timeout": f"{self._settings.timeout_s:g}"}

    async def _call(self, endpoint: str, form: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
        try:
            async for attempt in self._retry.retrying(_is_transient, f"Thanos {endpoint}"):
                with attempt:
                    return await self._post(endpoint, form)
        except (_TransientStatus, aiohttp.ClientError, asyncio.TimeoutError) as err:
            if not _is_transient(err):
                raise ThanosError(f"{self._base}: {type(err).__name__}: {err}") from err
            reason = str(err) or type(err).__name__
            raise ThanosUnavailable(f"{self._base}: {reason} (after {self._retry.attempts} attempts)") from err
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _post(self, endpoint: str, form: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
        if self._session is None:
            raise RuntimeError("Thanos is used outside 'async with'")
        # POST: profile queries can be long, and a form body has no URL length limit.
        async with self._session.post(f"{self._base}/api/v1/{endpoint}", data=form) as response:
            body = await response.read()
            status = response.status
        if status == 429 or status >= 500:
            raise _TransientStatus(f"HTTP {status}: {_error_message(body)}")
        if status in (400, 422):
            raise QueryError(_error_message(body))
        if status != 200:  # 401, 403, 404: wrong URL or credentials
            raise ThanosError(f"{self._base}: HTTP {status}: {_error_message(body)}")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            # e.g. an OAuth proxy's login page: configuration, not a passing failure
            raise ThanosError(f"{self._base}: answer is not JSON: {_error_message(body)[:100]!r}") from None
        if doc.get("status") != "success":
            message = f"{doc.get('errorType')}: {doc.get('error')}"
            if doc.get("errorType") in ("bad_data", "execution"):
                raise QueryError(message)
            raise ThanosError(f"{self._base}: {message}")
        return doc["data"], [str(w) for w in doc.get("warnings") or ()]

