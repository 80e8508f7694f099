"""The Thanos client against the real local Prometheus, with series this module loads.

Samples sit on every multiple of the 10 s step inside each window, so every query point reads the
sample at its own timestamp and the expected avg/max/count follow from the samples alone. Decoy
samples just outside the windows (huge values) prove the window's edges.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import random
import time
import uuid
from datetime import datetime, timezone

import aiohttp
import pytest

from consumer.profiles import render
from consumer.retry import RetryPolicy
from consumer.settings import Settings, ThanosSettings
from consumer.thanos import (
    MAX_POINTS,
    QueryError,
    Thanos,
    ThanosError,
    ThanosUnavailable,
    budget_step,
    chunk_windows,
    prom_time,
    to_ms,
)
from producer_hooks.settings import Secret
from tests.support.prometheus import Series, load_series

STEP = 10
LABEL = "openshift_cluster_name"
METRIC = "perf_reports_thanos_gauge"
RUN = uuid.uuid4().hex[:8]
CLUSTER_A = f"thanos-a-{RUN}"
CLUSTER_B = f"thanos-b-{RUN}"
CLUSTER_LONG = f"thanos-long-{RUN}"
CLUSTER_EVIL = f'evil-{RUN}"}},{LABEL}="x\\'
EVIL_NEIGHBOURS = [f"evil-{RUN}", f'evil-{RUN}"}}', f"evil-{RUN}\\"]
# Two days ago, on the step: old enough to be in TSDB blocks, young enough for any retention.
T0 = (int(time.time()) - 2 * 86400) // 3600 * 3600
HOUR = 3600
LONG = 40 * HOUR  # more than 11,000 points at 10 s
PODS = ("a", "b", "c")
DECOY = 1e9


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def window_samples(rng: random.Random, start: int, end: int, decoys: bool = True) -> list[tuple[float, float]]:
    samples = [(float(t), round(rng.uniform(0, 100), 3)) for t in range(start, end + 1, STEP)]
    if decoys:  # just outside the window; they must never be read
        samples = [(start - 30.0, DECOY), *samples, (end + 10.0, DECOY), (end + 20.0, DECOY)]
    return samples


def inside(samples: list[tuple[float, float]], start: int, end: int) -> list[float]:
    return [v for t, v in samples if start <= t <= end and math.isfinite(v)]


def make_data() -> dict[tuple[str, str], list[tuple[float, float]]]:
    rng = random.Random(20240502)
    data = {}
    for cluster, offset in ((CLUSTER_A, 0.0), (CLUSTER_B, 1000.0)):
        for pod in PODS:
            data[cluster, pod] = [(t, v + offset if v != DECOY else v) for t, v in window_samples(rng, T0, T0 + HOUR)]
    # NaN and Inf points among finite ones; a series with no finite point at all.
    mixed = window_samples(rng, T0, T0 + HOUR)
    for i in range(5, len(mixed) - 5, 7):
        mixed[i] = (mixed[i][0], math.nan if i % 2 else math.inf)
    data[CLUSTER_A, "mixed"] = mixed
    data[CLUSTER_A, "allnan"] = [(float(t), math.nan) for t in range(T0, T0 + HOUR + 1, STEP)]
    data[CLUSTER_LONG, "a"] = window_samples(rng, T0, T0 + LONG)
    for cluster in (CLUSTER_EVIL, *EVIL_NEIGHBOURS):
        data[cluster, "a"] = window_samples(rng, T0, T0 + HOUR, decoys=False)
    return data


DATA = make_data()


@pytest.fixture(scope="module")
def loaded(service_settings: Settings) -> Settings:
    load_series(Series(METRIC, {LABEL: cluster, "pod": pod}, samples) for (cluster, pod), samples in DATA.items())
    return service_settings


@pytest.fixture
async def thanos(loaded: Settings):
    async with Thanos(loaded.thanos, RetryPolicy(attempts=3, max_wait_s=1.0)) as client:
        yield client


def selector(cluster: str) -> str:
    return render(f"{METRIC}{{$cluster}}", LABEL, cluster)


def expected(cluster: str, pod: str, start: int, end: int) -> tuple[float, float, int]:
    values = inside(DATA[cluster, pod], start, end)
    return sum(values) / len(values), max(values), len(values)


def on_grid(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    """The finite values the points ``start + k * STEP <= end`` read: each the latest sample at or
    before it (samples are 10 s apart, well inside Prometheus's 5 minute lookback)."""
    times = [t for t, _ in samples]
    values = []
    for k in range(int((end - start) // STEP) + 1):
        value = samples[bisect.bisect_right(times, start + k * STEP) - 1][1]
        if math.isfinite(value):
            values.append(value)
    return values


def summary_of(result, pod: str) -> tuple[float, float, int]:
    [series] = [s for s in result.series if s.labels["pod"] == pod]
    return series.avg, series.max, series.samples


# -- pure: the chunk arithmetic ---------------------------------------------------------------


def test_short_window_is_one_chunk_ending_on_the_last_grid_point():
    assert chunk_windows(1000, 1000 + 3_605_000, 10_000) == [(1000, 1000 + 3_600_000)]
    assert chunk_windows(1000, 1000, 10_000) == [(1000, 1000)]


@pytest.mark.parametrize("points", [1, 2, MAX_POINTS - 1, MAX_POINTS, MAX_POINTS + 1, 2 * MAX_POINTS, 14_401, 40_000])
def test_chunks_cover_every_grid_point_once_and_respect_the_limit(points):
    start, step = 1_714_644_003_123, 10_000
    end = start + (points - 1) * step + 9_999  # the end need not sit on the grid
    chunks = chunk_windows(start, end, step)
    grid = [t for s, e in chunks for t in range(s, e + 1, step)]
    assert grid == [start + k * step for k in range(points)]
    assert all((e - s) // step + 1 <= MAX_POINTS for s, e in chunks)
    assert len(chunks) == -(-points // MAX_POINTS)


def test_bad_windows_are_refused():
    with pytest.raises(ValueError):
        chunk_windows(10, 5, 1)
    with pytest.raises(ValueError):
        chunk_windows(0, 5, 0)


def test_times_are_sent_exactly():
    assert prom_time(1_714_644_003_123) == "1714644003.123"
    assert prom_time(5) == "0.005"
    assert to_ms(datetime(2024, 5, 2, 10, 0, 3, 123000, tzinfo=timezone.utc)) == 1_714_644_003_123


# -- against Prometheus -------------------------------------------------------------------------


async def test_avg_max_and_count_per_series_equal_the_loaded_samples(thanos: Thanos):
    result = await thanos.summarize(selector(CLUSTER_A), utc(T0), utc(T0 + HOUR))
    assert sorted(s.labels["pod"] for s in result.series) == ["a", "b", "c", "mixed"]  # allnan: no finite point
    for pod in PODS:
        avg, peak, count = summary_of(result, pod)
        want_avg, want_max, want_count = expected(CLUSTER_A, pod, T0, T0 + HOUR)
        assert count == want_count == HOUR // STEP + 1
        assert avg == pytest.approx(want_avg, rel=1e-12)
        assert peak == want_max
    assert result.warnings == []


async def test_a_sub_window_reads_only_its_own_points(thanos: Thanos):
    start, end = T0 + 600, T0 + 1800
    result = await thanos.summarize(selector(CLUSTER_A), utc(start), utc(end))
    avg, peak, count = summary_of(result, "b")
    want_avg, want_max, want_count = expected(CLUSTER_A, "b", start, end)
    assert (count, peak) == (want_count, want_max) and avg == pytest.approx(want_avg, rel=1e-12)


async def test_nan_and_inf_points_are_skipped(thanos: Thanos):
    result = await thanos.summarize(selector(CLUSTER_A), utc(T0), utc(T0 + HOUR))
    avg, peak, count = summary_of(result, "mixed")
    want_avg, want_max, want_count = expected(CLUSTER_A, "mixed", T0, T0 + HOUR)
    assert want_count < HOUR // STEP + 1  # the data does have non-finite points
    assert (count, peak) == (want_count, want_max) and avg == pytest.approx(want_avg, rel=1e-12)


async def test_clusters_never_see_each_others_series(thanos: Thanos):
    for cluster in (CLUSTER_A, CLUSTER_B):
        result = await thanos.summarize(f"sum({selector(cluster)}) by (pod)", utc(T0), utc(T0 + HOUR))
        assert sorted(s.labels["pod"] for s in result.series) == (["a", "b", "c", "mixed"] if cluster == CLUSTER_A else ["a", "b", "c"])
        for pod in PODS:
            avg, peak, count = summary_of(result, pod)
            want_avg, want_max, want_count = expected(cluster, pod, T0, T0 + HOUR)
            assert (count, peak) == (want_count, want_max) and avg == pytest.approx(want_avg, rel=1e-12)
    raw = await thanos.summarize(selector(CLUSTER_B), utc(T0), utc(T0 + HOUR))
    assert {s.labels[LABEL] for s in raw.series} == {CLUSTER_B}


async def test_a_forty_hour_window_is_chunked_and_equals_the_samples(loaded: Settings):
    requests: list[dict] = []
    trace = aiohttp.TraceConfig()

    async def on_start(session, context, params):
        requests.append(params)

    trace.on_request_start.append(on_start)
    async with Thanos(loaded.thanos, RetryPolicy(attempts=3, max_wait_s=1.0), trace_configs=[trace]) as thanos:
        result = await thanos.summarize(selector(CLUSTER_LONG), utc(T0), utc(T0 + LONG))
    want_avg, want_max, want_count = expected(CLUSTER_LONG, "a", T0, T0 + LONG)
    assert want_count == LONG // STEP + 1 > MAX_POINTS
    assert len(requests) == 3  # 1,000 (the first, before the width is known) + 11,000 + 2,401 points
    [series] = result.series
    assert (series.samples, series.max) == (want_count, want_max)
    assert series.avg == pytest.approx(want_avg, rel=1e-12)


@pytest.mark.parametrize("shift", [0.001, 3.123, 9.999])
async def test_a_window_off_the_epoch_grid_is_evaluated_on_the_runs_own_grid(thanos: Thanos, shift: float):
    # Points at start + k * 10 s read the samples at T0 + k * 10 s, up to T0 + HOUR (the decoy
    # 10 s later is past the last point); a grid of epoch multiples would miss the first sample.
    start, end = T0 + shift, T0 + shift + HOUR + 0.5
    result = await thanos.summarize(selector(CLUSTER_A), utc(start), utc(end))
    for pod in (*PODS, "mixed"):
        values = on_grid(DATA[CLUSTER_A, pod], start, end)
        assert values == inside(DATA[CLUSTER_A, pod], T0, T0 + HOUR)
        avg, peak, count = summary_of(result, pod)
        assert (count, peak) == (len(values), max(values)) and avg == pytest.approx(sum(values) / len(values), rel=1e-12)


async def test_answers_are_asked_for_uncompressed(thanos: Thanos, loaded: Settings):
    seen = []
    trace = aiohttp.TraceConfig()

    async def on_end(session, context, params):
        seen.append((params.headers.get("Accept-Encoding"), params.response.headers.get("Content-Encoding")))

    trace.on_request_end.append(on_end)
    async with Thanos(loaded.thanos, RetryPolicy(), trace_configs=[trace]) as client:
        await client.summarize(selector(CLUSTER_A), utc(T0), utc(T0 + HOUR))
    assert seen == [("identity", None)]


async def test_a_window_past_the_point_budget_is_evaluated_at_a_coarser_step_in_one_request(loaded: Settings):
    # The same 40 h window with a budget of 1,000 points per series: one request, a step that is
    # a multiple of THANOS_STEP, and the numbers of exactly the grid points evaluated.
    requests: list[dict] = []
    trace = aiohttp.TraceConfig()

    async def on_start(session, context, params):
        requests.append(params)

    trace.on_request_start.append(on_start)
    budget = dataclasses.replace(loaded.thanos, max_points=1000)
    async with Thanos(budget, RetryPolicy(attempts=3, max_wait_s=1.0), trace_configs=[trace]) as thanos:
        result = await thanos.summarize(selector(CLUSTER_LONG), utc(T0), utc(T0 + LONG))
    step = budget_step(T0 * 1000, (T0 + LONG) * 1000, STEP * 1000, 1000) // 1000
    assert step % STEP == 0 and LONG // step + 1 <= 1000 < LONG // (step - STEP) + 1
    assert len(requests) == 1 and result.step_s == step
    values = [v for t, v in DATA[CLUSTER_LONG, "a"] if T0 <= t <= T0 + LONG and (t - T0) % step == 0]
    [series] = result.series
    assert (series.samples, series.max) == (len(values), max(values))
    assert series.avg == pytest.approx(sum(values) / len(values), rel=1e-12)


def test_the_budget_step_is_the_configured_step_until_the_window_needs_more_points():
    assert budget_step(0, 3_600_000, 10_000, 65_000) == 10_000
    assert budget_step(0, 7 * 86_400_000, 10_000, 65_000) == 10_000  # a week fits at 10 s
    assert budget_step(0, 30 * 86_400_000, 10_000, 65_000) == 40_000
    assert budget_step(0, 8000 * 365 * 86_400_000, 10_000, 65_000) // 10_000 * 10_000 == \
        budget_step(0, 8000 * 365 * 86_400_000, 10_000, 65_000)


async def test_a_hostile_cluster_name_matches_only_its_own_series(thanos: Thanos):
    query = selector(CLUSTER_EVIL)
    result = await thanos.summarize(query, utc(T0), utc(T0 + HOUR))
    [series] = result.series
    assert series.labels[LABEL] == CLUSTER_EVIL
    want_avg, want_max, want_count = expected(CLUSTER_EVIL, "a", T0, T0 + HOUR)
    assert (series.samples, series.max) == (want_count, want_max)
    assert series.avg == pytest.approx(want_avg, rel=1e-12)
    for neighbour in EVIL_NEIGHBOURS:  # and each neighbour only its own
        [other] = (await thanos.summarize(selector(neighbour), utc(T0), utc(T0 + HOUR))).series
        assert other.labels[LABEL] == neighbour


async def test_a_bad_query_is_a_query_error_with_the_servers_message(thanos: Thanos):
    with pytest.raises(QueryError) as caught:
        await thanos.summarize(f"rate({selector(CLUSTER_A)})", utc(T0), utc(T0 + HOUR))
    assert "range vector" in str(caught.value)
    with pytest.raises(QueryError, match="parse error"):
        await thanos.summarize(f"sum({selector(CLUSTER_A)}", utc(T0), utc(T0 + HOUR))


async def test_no_data_is_an_empty_result(thanos: Thanos):
    result = await thanos.summarize(selector(f"nobody-{RUN}"), utc(T0), utc(T0 + HOUR))
    assert result.series == [] and result.warnings == []


async def test_an_unreachable_server_is_unavailable_after_the_retries(unused_tcp_port: int):
    settings = ThanosSettings(url=f"http://127.0.0.1:{unused_tcp_port}", timeout_s=2)
    attempts = []
    trace = aiohttp.TraceConfig()

    async def on_start(session, context, params):
        attempts.append(params.url)

    trace.on_request_start.append(on_start)
    async with Thanos(settings, RetryPolicy(attempts=3, max_wait_s=0.05, first_wait_s=0.01), trace_configs=[trace]) as thanos:
        with pytest.raises(ThanosUnavailable, match="after 3 attempts"):
            await thanos.summarize("up", utc(T0), utc(T0 + 60))
    assert len(attempts) == 3


async def test_a_wrong_url_is_an_error_without_retries(loaded: Settings):
    settings = dataclasses.replace(loaded.thanos, url=loaded.thanos.url + "/no/such/prefix")
    async with Thanos(settings, RetryPolicy(attempts=3, max_wait_s=0.05)) as thanos:
        with pytest.raises(ThanosError, match="HTTP 404") as caught:
            await thanos.summarize(selector(CLUSTER_A), utc(T0), utc(T0 + 60))
    assert not isinstance(caught.value, (QueryError, ThanosUnavailable))


async def test_token_is_sent_as_bearer_and_thanos_parameters_are_sent(loaded: Settings):
    seen = []
    trace = aiohttp.TraceConfig()

    async def on_start(session, context, params):
        seen.append(params.headers.get("Authorization"))

    trace.on_request_start.append(on_start)
    settings = dataclasses.replace(loaded.thanos, token=Secret("s3cret"))
    async with Thanos(settings, RetryPolicy(), trace_configs=[trace]) as thanos:
        result = await thanos.summarize(selector(CLUSTER_A), utc(T0), utc(T0 + 60))  # Prometheus ignores both
    assert seen == ["Bearer s3cret"]
    assert len(result.series) == 4


async def test_instant_query_reads_one_point(thanos: Thanos):
    rows = await thanos.instant(f"sum({selector(CLUSTER_B)}) by (pod)", utc(T0 + 600))
    values = {labels["pod"]: value for labels, value in rows}
    assert values == {pod: dict(DATA[CLUSTER_B, pod])[float(T0 + 600)] for pod in PODS}
