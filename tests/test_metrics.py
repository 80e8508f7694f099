"""collect_metrics against the real local Prometheus, with series this module loads."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import datetime, timezone

import aiohttp
import pytest

from consumer.metrics import collect_metrics, plan
from consumer.profiles import CONTROL_PLANE, Profile, Query, load_profiles
from consumer.retry import RetryPolicy
from consumer.settings import Settings, ThanosSettings
from consumer.thanos import Thanos, ThanosUnavailable
from tests.support.prometheus import Series, load_series

STEP = 10
LABEL = "openshift_cluster_name"
METRIC = "perf_reports_metrics_gauge"
RUN = uuid.uuid4().hex[:8]
CLUSTER = f"metrics-{RUN}"
OTHER = f"metrics-other-{RUN}"  # same node and pod names, other roles and values
T0 = (int(time.time()) - 2 * 86400) // 3600 * 3600 + 1800
HOUR = 3600
START, END = T0, T0 + HOUR
PODS = ("a", "b")
# Non-idle CPU seconds per second of each node, split over modes; "idle" must not count.
CPU_RATES = {
    CLUSTER: {"m1": {"user": 0.5, "system": 0.25, "idle": 3.0}, "m2": {"user": 1.25, "system": 0.5, "idle": 2.0},
              "w1": {"user": 2.0, "system": 1.0, "idle": 1.0}},
    OTHER: {"m1": {"user": 8.0, "system": 8.0, "idle": 0.0}, "w1": {"user": 4.0, "system": 4.0, "idle": 0.0}},
}
ROLES = {CLUSTER: {"m1": "master", "m2": "master", "w1": "worker"}, OTHER: {"m1": "worker", "w1": "master"}}


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def grid(start: int, end: int) -> range:
    return range(start, end + 1, STEP)


def make_series() -> tuple[list[Series], dict]:
    rng = random.Random(7)
    series, gauges, memory = [], {}, {}
    for cluster, offset in ((CLUSTER, 0.0), (OTHER, 500.0)):
        for pod in PODS:
            samples = [(float(t), round(rng.uniform(0, 100), 2) + offset) for t in grid(START, END)]
            gauges[cluster, pod] = samples
            series.append(Series(METRIC, {LABEL: cluster, "pod": pod}, samples))
        # Counters start five minutes early so irate[2m] has two points at the window's first step.
        for node, modes in CPU_RATES[cluster].items():
            for mode, rate in modes.items():
                samples = [(float(t), 1000.0 + rate * (t - START)) for t in grid(START - 300, END)]
                series.append(Series("node_cpu_seconds_total", {LABEL: cluster, "instance": node, "mode": mode, "cpu": "0"}, samples))
            total = [(float(t), 64e9) for t in grid(START - 300, END)]
            available = [(float(t), 64e9 - round(rng.uniform(1e9, 9e9))) for t in grid(START - 300, END)]
            memory[cluster, node] = [64e9 - v for (t, v) in available if START <= t <= END]
            series.append(Series("node_memory_MemTotal_bytes", {LABEL: cluster, "instance": node}, total))
            series.append(Series("node_memory_MemAvailable_bytes", {LABEL: cluster, "instance": node}, available))
            series.append(Series("kube_node_role", {LABEL: cluster, "node": node, "role": ROLES[cluster][node]},
                                 [(float(t), 1.0) for t in grid(START - 300, END)]))
    return series, {"gauges": gauges, "memory": memory}


SERIES, EXPECTED = make_series()


@pytest.fixture(scope="module")
def loaded(service_settings: Settings) -> Settings:
    load_series(SERIES)
    return service_settings


def retry() -> RetryPolicy:
    return RetryPolicy(attempts=3, max_wait_s=1.0)


def stats(values: list[float]) -> tuple[float, float, int]:
    return sum(values) / len(values), max(values), len(values)


def by_label(series: list[dict], label: str) -> dict[str, tuple[float, float, int]]:
    return {s["labels"][label]: (s["avg"], s["max"], s["samples"]) for s in series}


def assert_close(got: tuple[float, float, int], want: tuple[float, float, int]) -> None:
    assert got[2] == want[2]
    assert got[0] == pytest.approx(want[0], rel=1e-9)
    assert got[1] == pytest.approx(want[1], rel=1e-9)


GAUGE = Query("gauge", f"{METRIC}{{$cluster}}", "widgets")
TOTAL = Query("total", f"sum({METRIC}{{$cluster}})")
BAD = Query("bad", f"rate({METRIC}{{$cluster}})")
FIRST = Profile("control-plane", 3, (GAUGE, BAD))
SECOND = Profile("extra", 2, (GAUGE, TOTAL))


async def test_report_entries_values_errors_and_key_order(loaded: Settings):
    async with Thanos(loaded.thanos, retry()) as thanos:
        outcome = await collect_metrics(thanos, [FIRST, SECOND], LABEL, CLUSTER, utc(START), utc(END), 2)
    assert list(outcome.metrics) == ["gauge", "bad", "extra.gauge", "total"]
    assert outcome.profiles == [("control-plane", 3), ("extra", 2)]

    gauge = outcome.metrics["gauge"]
    assert gauge["profile"] == "control-plane" and gauge["unit"] == "widgets"
    assert gauge["query"] == f'{METRIC}{{{LABEL}="{CLUSTER}"}}'
    assert "warnings" not in gauge and "error" not in gauge
    got = by_label(gauge["series"], "pod")
    assert set(got) == set(PODS)
    for pod in PODS:
        assert_close(got[pod], stats([v for _, v in EXPECTED["gauges"][CLUSTER, pod]]))
    assert outcome.metrics["extra.gauge"]["series"] == gauge["series"]
    assert outcome.metrics["extra.gauge"]["profile"] == "extra"

    [total] = outcome.metrics["total"]["series"]
    sums = [sum(vals) for vals in zip(*([v for _, v in EXPECTED["gauges"][CLUSTER, pod]] for pod in PODS))]
    assert_close((total["avg"], total["max"], total["samples"]), stats(sums))
    assert "unit" not in outcome.metrics["total"]

    bad = outcome.metrics["bad"]
    assert "series" not in bad and "range vector" in bad["error"]
    assert outcome.partial and outcome.errors == [f"bad: {bad['error']}"]


async def test_masters_are_joined_by_role_within_the_cluster(loaded: Settings):
    control = load_profiles()[CONTROL_PLANE]
    async with Thanos(loaded.thanos, retry()) as thanos:
        outcome = await collect_metrics(thanos, [control], LABEL, CLUSTER, utc(START), utc(END), 4)
    assert outcome.errors == []
    cpu = by_label(outcome.metrics["masterCPU"]["series"], "instance")
    assert set(cpu) == {"m1", "m2"}  # w1 is a worker here; the other cluster's roles do not count
    for node in cpu:
        busy = sum(rate for mode, rate in CPU_RATES[CLUSTER][node].items() if mode != "idle")
        assert_close(cpu[node], (busy, busy, HOUR // STEP + 1))
    memory = by_label(outcome.metrics["masterMemoryUsage"]["series"], "instance")
    assert set(memory) == {"m1", "m2"}
    for node in memory:
        assert_close(memory[node], stats(EXPECTED["memory"][CLUSTER, node]))


async def test_every_shipped_query_is_accepted_by_prometheus(loaded: Settings):
    profiles = list(load_profiles().values())
    async with Thanos(loaded.thanos, retry()) as thanos:
        outcome = await collect_metrics(thanos, profiles, LABEL, f"nothing-{RUN}", utc(START), utc(START + 600), 4)
    assert outcome.errors == []
    assert len(outcome.metrics) == sum(len(p.queries) for p in profiles)
    assert all(entry["series"] == [] for entry in outcome.metrics.values())  # no data for that cluster


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_no_more_than_concurrency_requests_are_in_flight(loaded: Settings, concurrency: int):
    in_flight = peak = 0
    trace = aiohttp.TraceConfig()

    async def on_start(session, context, params):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)  # hold the request open long enough for others to pile up

    async def on_done(session, context, params):
        nonlocal in_flight
        in_flight -= 1

    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_done)
    trace.on_request_exception.append(on_done)
    queries = tuple(Query(f"q{i}", f"sum({METRIC}{{$cluster}}) + {i}") for i in range(10))
    async with Thanos(loaded.thanos, retry(), trace_configs=[trace]) as thanos:
        outcome = await collect_metrics(thanos, [Profile("many", 1, queries)], LABEL, CLUSTER, utc(START), utc(END), concurrency)
    assert peak == concurrency and in_flight == 0
    assert [entry["series"][0]["samples"] for entry in outcome.metrics.values()] == [HOUR // STEP + 1] * 10


async def test_queries_past_the_run_budget_are_not_asked_and_say_so(loaded: Settings):
    requests: list = []
    trace = aiohttp.TraceConfig()

    async def on_start(session, context, params):
        requests.append(params)

    trace.on_request_start.append(on_start)
    queries = tuple(Query(f"q{i}", f"sum({METRIC}{{$cluster}}) + {i}") for i in range(5))
    async with Thanos(loaded.thanos, retry(), trace_configs=[trace]) as thanos:
        outcome = await collect_metrics(thanos, [Profile("many", 1, queries)], LABEL, CLUSTER, utc(START), utc(END),
                                        2, max_queries=3)
    assert len(requests) == 3
    assert list(outcome.metrics) == ["q0", "q1", "q2", "q3", "q4"]
    assert all("series" in outcome.metrics[key] for key in ("q0", "q1", "q2"))
    assert [outcome.metrics[key]["error"] for key in ("q3", "q4")] == [
        "not asked: the run's budget is 3 queries (THANOS_MAX_QUERIES)"] * 2
    assert len(outcome.errors) == 2


async def test_thanos_unavailable_propagates(unused_tcp_port: int):
    settings = ThanosSettings(url=f"http://127.0.0.1:{unused_tcp_port}", timeout_s=2)
    queries = tuple(Query(f"q{i}", f"up{{$cluster}} + {i}") for i in range(6))
    async with Thanos(settings, RetryPolicy(attempts=2, max_wait_s=0.05, first_wait_s=0.01)) as thanos:
        with pytest.raises(ThanosUnavailable):
            await collect_metrics(thanos, [Profile("p", 1, queries)], LABEL, CLUSTER, utc(START), utc(END), 2)
    leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and "collect_metrics" in repr(t.get_coro())]
    assert leftovers == []


def test_duplicate_names_are_prefixed_by_their_profile_and_collisions_refused():
    keys = [p.key for p in plan([FIRST, SECOND, FIRST], LABEL, "c")]
    assert keys == ["gauge", "bad", "extra.gauge", "total"]
    first = Profile("control-plane", 1, (GAUGE, Query("extra.gauge", "up{$cluster}")))
    with pytest.raises(ValueError, match="'extra.gauge' is already used"):
        plan([first, SECOND], LABEL, "c")

