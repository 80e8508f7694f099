"""Thanos Query (Prometheus HTTP API) client: one query's average and maximum per series over a window.

How a window is summarised: ``query_range`` from the run's start at the step, in chunks of <= 11,000
points, averaged and maximised here. It evaluates exactly the run's own grid (start + k * step) once.

Measured on this project's data (benchmarks/perf.py's clusters: the control-plane profile's 19
queries over ~440 series a cluster, local Prometheus 2.42, median of 3; seconds of server time for
one run's window, all 19 queries)::

    window  query_range  its JSON decoded + folded here  summarised on the server (3 subqueries, 1 request)
    1 h     0.24         0.08                              0.81
    36 h    6.99         1.90                              26.8

Summarising on the server (``sum_over_time``, ``max_over_time`` and ``count_over_time`` of
``(Q')[w:step]``, with ``Q'`` shifted by an offset onto the run's grid: benchmarks/promql_shift.py,
exact to 1e-12 against this path) costs Prometheus 3.4-3.8x the evaluation of ``query_range``:
each ``*_over_time`` evaluates its subquery again, and evaluation, not JSON, is what these
aggregated queries cost. Even benchmarks/thanos_window.py's raw irate() of 100 series, the case
most in favour of the server (wide answers, cheap evaluation), is 2.3-3.5x slower that way once
this path is as cheap as below (1 h: 0.09 s vs 0.24 s; 40 h: 3.4 s vs 10.4 s; median of 3). An
earlier measurement found the server 1.6-11x faster against this path as it was then (gzipped
answers, a Python loop per point). Since Prometheus's CPU is what bounds a rebuild, the
client-side path stays, made cheaper:

- ``Accept-Encoding: identity``: gzip doubled Prometheus's time for the wide answers
  (APIRequestRate over 30 h: 0.9-1.2 s plain, 2.0-2.4 s gzipped, 14.8 MB vs 1.8 MB). On loopback or
  a datacenter link the bytes are cheaper than the compression.
- A chunk's JSON is decoded and folded with the cyclic garbage collector paused: the parsed
  matrix is hundreds of thousands of small lists, freed by reference counting the moment the chunk
  is folded; letting the collector walk them cost ~20 % of a rebuild's CPU (py-spy, issue 12).
- Folding sums each series' points with the built-in ``sum``/``max`` (non-finite points are only
  looked for when the sum says there are some).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from consumer.retry import RetryPolicy
from consumer.settings import ThanosSettings
from producer_hooks.settings import ssl_context

# Prometheus and Thanos refuse a range query of more than 11,000 points per series.
MAX_POINTS = 11_000
# What one parsed answer may hold, series x points (about 160 bytes a point once parsed): a 36 h
# window of a 36-series query in 11,000-point chunks took a rebuild's peak RSS to 195 MB
# (benchmarks/perf.py, 1,000 runs); the first chunk is short, until the query's width is known.
ANSWER_POINTS = 200_000
FIRST_CHUNK_POINTS = 1_000
_PLAIN = {"Accept-Encoding": "identity"}


class ThanosError(Exception):
    """Thanos could not answer; the message names the server and the reason."""


class QueryError(ThanosError):
    """The server refused the query itself (bad PromQL, failed evaluation): retrying cannot help."""


class ThanosUnavailable(ThanosError):
    """Thanos stayed unreachable or failing through every retry."""


class ThanosAuthError(ThanosError):
    """HTTP 401 or 403: Thanos refuses our credentials; retrying cannot help."""


class _TransientStatus(ThanosError):
    """HTTP 429 or 5xx: worth another attempt."""


@dataclass(frozen=True)
class SeriesSummary:
    labels: dict[str, str]
    avg: float
    max: float
    samples: int  # finite points that went into avg and max


@dataclass(frozen=True)
class QueryResult:
    series: list[SeriesSummary]
    warnings: list[str]
    step_s: float = 0.0  # the resolution evaluated: THANOS_STEP, or coarser to stay in the budget


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
            values = [float(raw) for _, raw in series.get("values", ())]
            chunk_sum = sum(values)
            if not isfinite(chunk_sum):  # NaN/Inf (e.g. 0/0 in a ratio) would poison avg and max
                values = [value for value in values if isfinite(value)]
                chunk_sum = sum(values)
            if not values:
                continue
            key = tuple(sorted(series["metric"].items()))
            total = self.totals.get(key)
            if total is None:
                self.totals[key] = [chunk_sum, len(values), max(values)]
            else:
                total[0] += chunk_sum
                total[1] += len(values)
                total[2] = max(total[2], max(values))

    def summaries(self) -> list[SeriesSummary]:
        """Series with at least one finite point, sorted by labels."""
        return [
            SeriesSummary(dict(key), total / count, peak, int(count))
            for key, (total, count, peak) in sorted(self.totals.items())
            if count
        ]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a parsed answer is alive: it holds no cycles, and is
    freed by reference counting as soon as it is folded."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


def _authorization(settings: ThanosSettings) -> dict[str, str]:
    """The Authorization header: a bearer token, or HTTP basic (settings allow one, not both)."""
    if settings.token is not None:
        return {"Authorization": f"Bearer {settings.token.reveal()}"}
    if settings.username is not None or settings.password is not None:
        password = settings.password.reveal() if settings.password is not None else ""
        pair = base64.b64encode(f"{settings.username or ''}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


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
        headers = {"Accept": "application/json", **_authorization(self._settings)}
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

    async def summarize(self, query: str, start: datetime, end: datetime) -> QueryResult:
        """Average, maximum and count of finite points per series of ``query`` over ``[start, end]``.

        Evaluated at ``start + k * step`` (``step`` from settings, coarser when the window would
        take more than ``max_points`` points: see :func:`budget_step`) by ``query_range``, in chunks
        of at most 11,000 points (fewer for wide queries: ``ANSWER_POINTS``) folded into running
        totals, so any window length works in bounded memory. Raises :class:`QueryError` for a query the server refuses and
        :class:`ThanosUnavailable` once retries are exhausted.
        """
        step_ms = budget_step(to_ms(start), to_ms(end), round(self._settings.step_s * 1000), self._settings.max_points)
        totals = _Accumulator()
        warnings: dict[str, None] = {}  # ordered set: chunks repeat the same warning

        def fold(data: dict[str, Any]) -> int:
            if data.get("resultType") != "matrix":
                raise ThanosError(f"{self._base}: query_range answered {data.get('resultType')!r}, not a matrix")
            totals.add_matrix(data["result"])
            return len(data["result"])

        chunk_start, points = to_ms(start), FIRST_CHUNK_POINTS
        while chunk_start <= to_ms(end):
            [(chunk_start, chunk_end), *_] = chunk_windows(chunk_start, to_ms(end), step_ms, points)
            width, chunk_warnings = await self._call(
                "query_range",
                {
                    "query": query,
                    "start": prom_time(chunk_start),
                    "end": prom_time(chunk_end),
                    "step": prom_time(step_ms),
                    **self._thanos_params(),
                },
                fold,  # the chunk's points go into the totals as it is parsed, and are dropped
            )
            warnings.update(dict.fromkeys(chunk_warnings))
            # As many points as keep the next answer within the budget, now that its width is known.
            points = max(1, min(MAX_POINTS, ANSWER_POINTS // max(1, width)))
            chunk_start = chunk_end + step_ms
        return QueryResult(totals.summaries(), list(warnings), step_ms / 1000)

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

    async def _call(self, endpoint: str, form: dict[str, str],
                    use: Callable[[dict[str, Any]], Any] = lambda data: data) -> tuple[Any, list[str]]:
        """``use(data)`` of the answer's ``data``, and its warnings."""
        try:
            async for attempt in self._retry.retrying(_is_transient, f"Thanos {endpoint}"):
                with attempt:
                    return await self._post(endpoint, form, use)
        except (_TransientStatus, aiohttp.ClientError, asyncio.TimeoutError) as err:
            if not _is_transient(err):
                raise ThanosError(f"{self._base}: {type(err).__name__}: {err}") from err
            reason = str(err) or type(err).__name__
            raise ThanosUnavailable(f"{self._base}: {reason} (after {self._retry.attempts} attempts)") from err
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _post(self, endpoint: str, form: dict[str, str],
                    use: Callable[[dict[str, Any]], Any]) -> tuple[Any, list[str]]:
        if self._session is None:
            raise RuntimeError("Thanos is used outside 'async with'")
        # POST: profile queries can be long, and a form body has no URL length limit. Uncompressed
        # answers: gzip doubled Prometheus's time for wide answers (see the top).
        async with self._session.post(f"{self._base}/api/v1/{endpoint}", data=form, headers=_PLAIN) as response:
            body = await response.read()
            status = response.status
        if status == 429 or status >= 500:
            raise _TransientStatus(f"HTTP {status}: {_error_message(body)}")
        if status in (400, 422):
            raise QueryError(_error_message(body))
        if status in (401, 403):
            what = "refused the credentials" if status == 401 else "denied access"
            raise ThanosAuthError(f"{self._base}: {what} (HTTP {status}): {_error_message(body)[:200]}")
        if status != 200:  # 404: wrong URL
            raise ThanosError(f"{self._base}: HTTP {status}: {_error_message(body)}")
        with _collector_paused():
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                # e.g. an OAuth proxy's login page: configuration, not a passing failure
                raise ThanosError(f"{self._base}: answer is not JSON: {_error_message(body)[:100]!r}") from None
            del body
            if doc.get("status") != "success":
                message = f"{doc.get('errorType')}: {doc.get('error')}"
                if doc.get("errorType") in ("bad_data", "execution"):
                    raise QueryError(message)
                raise ThanosError(f"{self._base}: {message}")
            return use(doc["data"]), [str(w) for w in doc.get("warnings") or ()]

