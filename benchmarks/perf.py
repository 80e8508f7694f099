"""The product against the original report job's method: rebuilds, the live loop, memory. One table.

    python benchmarks/perf.py            # the full size: about 30 minutes on a 2-core machine
    python benchmarks/perf.py --smoke    # every scenario at a tiny size, well under a minute (CI)

Needs the local Kafka and Elasticsearch (`scripts/services up`) and `prometheus`/`promtool` on
PATH: the series live in a Prometheus of the benchmark's own (4 clusters, ~440 series each over
40 h, cached by day in $PERF_REPORTS_CACHE), so the shared one is never restarted.

Scenarios, each measured in this one run, methods alternating, median of ``--repeats``:

- rebuild: ``report-consumer backfill`` of N runs over 4 clusters (windows of 15 minutes to 36 h)
  against ``benchmarks/original_job.py`` (the retired job's method, one run after another) on a
  sample of the same runs (its rate for all of them estimated per stratum, long runs and the
  others, from its time for each sampled run); on loopback, and through ``benchmarks/delay_proxy.py``
  (Elasticsearch and Prometheus behind a ``--delay-ms`` one-way delay). Runs/s, the ratio, CPU time
  and peak RSS of each process (from ``wait4``); and how far apart the two methods' numbers are.
- live: ``report-consumer run`` while finished runs are published at a steady rate for
  ``--live-seconds`` (results already indexed): reports/s, latency from publication to the report
  stored (a realtime get) and to it being searchable (a search; the index refreshes every second),
  the backlog when publishing stops, CPU per report, RSS.
- started: ``--started`` `started` events through the loop: events/s, and RSS over them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuids
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import cluster_data  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from servers import PrivatePrometheus, start_delay_proxy  # noqa: E402

from consumer.elastic import connect  # noqa: E402
from consumer.settings import Settings  # noqa: E402
from consumer.sink import REPORT_MAPPING, REPORT_SETTINGS  # noqa: E402
from consumer.topics import TopicSpec, delete_topics, ensure_topics  # noqa: E402
from producer_hooks.events import encode_event, make_event  # noqa: E402
from tests.support.consumer import running_consumer, settings_env  # noqa: E402
from tests.support.es import index_docs  # noqa: E402
from tests.support.kubeburner import run_documents  # noqa: E402
from tests.support.metadata import run_doc, snake_doc  # noqa: E402
from tests.support.services import service_env  # noqa: E402

# The shared Elasticsearch is a single node: replicas would stay unassigned and only count
# against its shard limit.
ONE_SHARD = {"number_of_shards": 1, "number_of_replicas": 0}
CACHE = Path(os.environ.get("PERF_REPORTS_CACHE", Path.home() / ".cache" / "perf-reports"))


@dataclasses.dataclass(frozen=True)
class Plan:
    size: cluster_data.Size
    baseline_runs: int  # on loopback; through the proxy a third of it
    repeats: int
    delay_ms: float
    live_seconds: float
    live_rates: tuple[float, ...]
    proxy_live_rates: tuple[float, ...]
    started: int


# Live: 2 runs/s shows the latency of a loop that keeps up; 20 (loopback) and 10 (proxy) are the goals.
FULL = Plan(cluster_data.FULL, baseline_runs=100, repeats=1, delay_ms=25, live_seconds=60, live_rates=(2, 20),
            proxy_live_rates=(2, 10), started=100_000)
SMOKE = Plan(cluster_data.SMOKE, baseline_runs=6, repeats=1, delay_ms=25, live_seconds=4, live_rates=(5,),
             proxy_live_rates=(5,), started=2_000)


@dataclasses.dataclass
class Proc:
    """What one process took: wall time, CPU time (user + system), peak RSS."""

    seconds: float
    cpu_s: float
    max_rss_mb: float
    output: str
    server_cpu_s: float = 0.0  # the private Prometheus's, meanwhile


def run_process(args: list[str], env: dict[str, str]) -> Proc:
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])}... exited {process.returncode}:\n{err[-3000:]}\n{out[-2000:]}")
    return Proc(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out)


def proc_stat(pid: int) -> tuple[float, float]:
    """CPU seconds so far and current RSS (MB) of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return (int(fields[11]) + int(fields[12])) / ticks, rss / 1024


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """The median, and the range when repeated."""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


# -- setup ------------------------------------------------------------------------------------------


def anchor() -> int:
    """The end of the series: midnight UTC a day ago, so a day's runs share the cached blocks."""
    return (int(time.time()) // 86400 - 1) * 86400


def blocks(size: cluster_data.Size, end_s: int, clusters: list[str]) -> Path:
    folder = CACHE / f"bench-blocks-{size.clusters}x{size.span_h:g}h-{end_s}"
    if not (folder / "done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.perf_counter()
        samples = cluster_data.load_blocks(folder / "data", clusters, end_s - int(size.span_h * 3600), end_s)
        print(f"  {samples:,} samples into TSDB blocks in {time.perf_counter() - started:.0f} s", flush=True)
        (folder / "done").write_text("")
    return folder / "data"


def metadata_doc(run: cluster_data.Run) -> dict:
    start, end = (datetime.fromtimestamp(ms / 1000, timezone.utc) for ms in (run.start_ms, run.end_ms))
    return snake_doc(run.uuid, cluster_name=run.cluster, build_tag=run.benchmark, job_status="success",
                     start_date=start.isoformat(), end_date=end.isoformat(), timestamp=start.isoformat(),
                     job_duration=str((run.end_ms - run.start_ms) / 1000))


def sample(runs: list[cluster_data.Run], count: int, long_ms: float) -> list[cluster_data.Run]:
    """``count`` of the runs, chosen at random among the long runs and among the others in
    proportion (at least one long run), for :func:`estimate_all`."""
    rng = random.Random(3)
    long, short = strata(runs, long_ms)
    take_long = min(len(long), max(1, round(count * len(long) / len(runs)))) if long else 0
    return rng.sample(long, take_long) + rng.sample(short, min(count - take_long, len(short)))


def strata(runs: list[cluster_data.Run], long_ms: float) -> tuple[list[cluster_data.Run], list[cluster_data.Run]]:
    return ([r for r in runs if r.end_ms - r.start_ms >= long_ms], [r for r in runs if r.end_ms - r.start_ms < long_ms])


def estimate_all(runs: list[cluster_data.Run], per_run: dict[str, float], long_ms: float) -> float:
    """The original method's seconds for all ``runs``, from its seconds on a sample of them: the
    mean of the sampled long runs times the number of long runs, plus the same for the others."""
    total = 0.0
    for stratum in strata(runs, long_ms):
        times = [per_run[r.uuid] for r in stratum if r.uuid in per_run]
        if stratum:
            total += statistics.mean(times) * len(stratum)
    return total


class Bench:
    def __init__(self, plan: Plan, tag: str, workdir: Path, log_level: str = "WARNING") -> None:
        self.plan = plan
        self.log_level = log_level
        self.tag = tag
        self.workdir = workdir
        self.base = Settings.from_env({**service_env()})
        self.rows: list[tuple[str, str, str, str]] = []
        self.notes: list[str] = []

    # -- the world the scenarios run in

    async def prepare(self) -> None:
        size = self.plan.size
        self.clusters = [f"bench-{i}" for i in range(size.clusters)]
        end_s = anchor()
        print(f"series for {size.clusters} clusters over {size.span_h:g} h", flush=True)
        data = blocks(size, end_s, self.clusters)
        copy = self.workdir / "prometheus"
        shutil.copytree(data, copy / "data")
        self.prometheus = PrivatePrometheus(copy)
        self.prometheus.start()
        span_start = end_s - int(size.span_h * 3600)
        self.runs = cluster_data.make_runs(size, self.clusters, span_start, end_s, f"rb-{self.tag}")
        # Live runs: other uuids, windows of 15-60 minutes inside the span.
        rng = random.Random(4)
        self.live_runs = []
        for i in range(int(sum(self.plan.live_rates + self.plan.proxy_live_rates) * self.plan.live_seconds)):
            duration = rng.randint(15 * 60_000, 60 * 60_000)
            start = rng.randint((span_start + 600) * 1000, end_s * 1000 - duration)
            self.live_runs.append(cluster_data.Run(f"lv-{self.tag}-{i:05d}", self.clusters[i % len(self.clusters)],
                                                   "node-density", start, start + duration))
        self.results_index = f"bench-results-{self.tag}"
        self.metadata_index = f"bench-metadata-{self.tag}"
        async with connect(self.base.es) as es:
            for index in (self.results_index, self.metadata_index):
                await es.indices.create(index=index, settings=ONE_SHARD)
            docs = [d for run in self.runs + self.live_runs
                    for d in run_documents(run.uuid, datetime.fromtimestamp(run.start_ms / 1000, timezone.utc),
                                           {run.benchmark: 30}, cluster=run.cluster)]
            await index_docs(es, self.results_index, docs)
            await index_docs(es, self.metadata_index, [metadata_doc(run) for run in self.runs])
        self.proxy, ports = start_delay_proxy(self.plan.delay_ms, [self.es_port, self.prometheus.port])
        self.proxied_es = f"http://127.0.0.1:{ports[0]}"
        self.proxied_thanos = f"http://127.0.0.1:{ports[1]}"
        print(f"{len(self.runs)} runs to rebuild, {len(self.live_runs)} live runs; Prometheus {self.prometheus.url}; "
              f"proxy {self.plan.delay_ms:g} ms each way: ES {self.proxied_es}, Prometheus {self.proxied_thanos}", flush=True)

    @property
    def es_port(self) -> int:
        return int(self.base.es.url.rstrip("/").rsplit(":", 1)[1])

    def settings(self, proxied: bool, **changes) -> Settings:
        es = dataclasses.replace(self.base.es, url=self.proxied_es if proxied else self.base.es.url)
        thanos = dataclasses.replace(self.base.thanos, url=self.proxied_thanos if proxied else self.prometheus.url)
        return dataclasses.replace(self.base, es=es, thanos=thanos, results_index=self.results_index,
                                   metadata_index=self.metadata_index, **changes)

    async def cleanup(self) -> None:
        if getattr(self, "proxy", None) is not None:
            self.proxy.kill()
            self.proxy.wait()
        if getattr(self, "prometheus", None) is not None:
            self.prometheus.stop()
        async with connect(self.base.es) as es:
            await es.options(ignore_status=404).indices.delete(index=f"bench-*-{self.tag}*", expand_wildcards="all")

    # -- rebuild

    def server_cpu(self) -> float:
        """CPU seconds the private Prometheus has used so far."""
        return proc_stat(self.prometheus.process.pid)[0]

    async def report_index(self, name: str, mapped: bool) -> str:
        """A fresh report index: the product's mapping (``mapped``), or a guessed one as the original
        job had; without replicas."""
        async with connect(self.base.es) as es:
            await es.options(ignore_status=404).indices.delete(index=name)
            if mapped:
                await es.indices.create(index=name, mappings=REPORT_MAPPING, settings={**REPORT_SETTINGS, **ONE_SHARD})
            else:
                await es.indices.create(index=name, settings=ONE_SHARD)
        return name

    def product(self, settings: Settings) -> Proc:
        env = {**settings_env(settings), "PYTHONPATH": str(REPO)}
        for key in ("RETRY_ATTEMPTS", "RETRY_MAX_WAIT", "COMMIT_INTERVAL", "DRAIN_TIMEOUT", "MAX_IN_FLIGHT",
                    "THANOS_STEP", "RESULTS_DEADLINE"):
            env.pop(key)  # the product's defaults, as a user runs it
        days = int(self.plan.size.span_h // 24) + 3
        return run_process([sys.executable, "-m", "consumer.cli", "--log-level", "WARNING", "backfill",
                            "--days", str(days)], env)

    def baseline(self, settings: Settings, runs: list[cluster_data.Run]) -> Proc:
        listing = self.workdir / f"uuids-{len(runs)}.txt"
        listing.write_text("\n".join(run.uuid for run in runs))
        env = {**settings_env(settings), "PYTHONPATH": str(REPO)}
        return run_process([sys.executable, str(REPO / "benchmarks" / "original_job.py"), str(listing)], env)

    async def rebuild(self) -> None:
        long_ms = self.plan.size.long_h * 3600_000 * 0.9
        n = len(self.runs)
        for proxied in (False, True):
            where = f"through the proxy ({2 * self.plan.delay_ms:g} ms round trip)" if proxied else "loopback"
            subset = sample(self.runs, self.plan.baseline_runs // (3 if proxied else 1), long_ms)
            mine: list[Proc] = []
            theirs: list[Proc] = []
            for repeat in range(self.plan.repeats):

                async def product_run(repeat: int = repeat) -> None:
                    index = await self.report_index(f"bench-reports-{self.tag}-p{int(proxied)}{repeat}", True)
                    settings = self.settings(proxied, report_index=index)
                    before = self.server_cpu()
                    mine.append(self.product(settings))
                    mine[-1].server_cpu_s = self.server_cpu() - before
                    print(f"  {where}, product: {n} runs in {mine[-1].seconds:.1f} s, CPU {mine[-1].cpu_s:.1f} s", flush=True)

                async def baseline_run(repeat: int = repeat) -> None:
                    index = await self.report_index(f"bench-reports-{self.tag}-b{int(proxied)}{repeat}", False)
                    settings = self.settings(proxied, report_index=index)
                    before = self.server_cpu()
                    theirs.append(self.baseline(settings, subset))
                    theirs[-1].server_cpu_s = self.server_cpu() - before
                    print(f"  {where}, original method: {len(subset)} runs in {theirs[-1].seconds:.1f} s, "
                          f"CPU {theirs[-1].cpu_s:.1f} s", flush=True)

                order = [product_run, baseline_run] if repeat % 2 == 0 else [baseline_run, product_run]
                for step in order:
                    await step()
                if not proxied and repeat == 0:
                    await self.fidelity(f"bench-reports-{self.tag}-p00", f"bench-reports-{self.tag}-b00", subset)
            # The original method's totals for all n runs, estimated from its sample (see estimate_all).
            scale = [estimate_all(self.runs, json.loads(p.output)["per_run"], long_ms) / p.seconds for p in theirs]
            rates = [n / p.seconds for p in mine]
            base_rates = [n / (p.seconds * k) for p, k in zip(theirs, scale, strict=False)]
            ratios = [a / b for a, b in zip(rates, base_rates, strict=False)]
            self.rows.append((f"rebuild {n} runs over {self.plan.size.clusters} clusters, {where}: runs/s",
                              spread(rates), spread(base_rates) + f" (from {len(subset)} of the runs)",
                              spread(ratios, "{:.1f}x")))
            self.rows.append((f"  CPU per run, ms ({where})", spread([1000 * p.cpu_s / n for p in mine], "{:.0f}"),
                              spread([1000 * p.cpu_s * k / n for p, k in zip(theirs, scale, strict=False)], "{:.0f}"),
                              spread([p.cpu_s / (q.cpu_s * k) for p, q, k in zip(mine, theirs, scale, strict=False)], "{:.2f}x")))
            self.rows.append((f"  Prometheus CPU per run, ms ({where})",
                              spread([1000 * p.server_cpu_s / n for p in mine], "{:.0f}"),
                              spread([1000 * p.server_cpu_s * k / n for p, k in zip(theirs, scale, strict=False)], "{:.0f}"),
                              spread([p.server_cpu_s / (q.server_cpu_s * k) for p, q, k in zip(mine, theirs, scale, strict=False)], "{:.2f}x")))
            self.rows.append((f"  peak RSS, MB ({where})", spread([p.max_rss_mb for p in mine], "{:.0f}"),
                              spread([p.max_rss_mb for p in theirs], "{:.0f}"), ""))

    async def fidelity(self, product_index: str, baseline_index: str, runs: list[cluster_data.Run]) -> None:
        """How far the product's numbers are from the original method's, series by series."""
        ids = [run.uuid for run in runs]
        async with connect(self.base.es) as es:
            mine = {d["_id"]: d["_source"] for d in (await es.mget(index=product_index, ids=ids))["docs"] if d.get("found")}
            theirs = {d["_id"]: d["_source"] for d in (await es.mget(index=baseline_index, ids=ids))["docs"] if d.get("found")}
        compared, worst, count_diffs, missing = 0, 0.0, 0, 0
        methods: dict[str, int] = {}
        for uuid in ids:
            # The product's metrics are one list of series entries (report format 2), each naming its query.
            ours_by_name: dict[str, list[dict]] = {}
            for series in mine[uuid]["metrics"]:
                if series.get("status") == "ok":
                    ours_by_name.setdefault(series["name"], []).append(series)
                    if "method" in series:
                        methods[series["method"]] = methods.get(series["method"], 0) + 1
            for name, entry in theirs[uuid]["metrics"].items():
                by_labels = {json.dumps(s["labels"], sort_keys=True): s for s in ours_by_name.get(name, [])}
                for series in entry["series"]:
                    other = by_labels.get(json.dumps(series["labels"], sort_keys=True))
                    if other is None:
                        missing += 1
                        continue
                    compared += 1
                    count_diffs += other["samples"] != series["samples"]
                    for stat in ("avg", "max"):
                        if series[stat]:
                            worst = max(worst, abs(other[stat] - series[stat]) / abs(series[stat]))
        self.fidelity_line = (f"{compared:,} series of {len(ids)} runs compared: largest relative difference of avg/max "
                              f"{worst:.2g}, sample counts different: {count_diffs}, series missing: {missing}"
                              + (f"; methods: {methods}" if methods else ""))
        print(f"  fidelity: {self.fidelity_line}", flush=True)

    # -- live

    async def live(self, rate: float, proxied: bool, runs: list[cluster_data.Run]) -> None:
        where = "through the proxy" if proxied else "loopback"
        suffix = f"{'p' if proxied else 'l'}{rate:g}"
        index = await self.report_index(f"bench-reports-{self.tag}-live{suffix}", True)
        settings = self.settings(proxied, report_index=index,
                                 group=f"bench-{self.tag}-{suffix}", commit_interval_s=1.0,
                                 kafka=dataclasses.replace(self.base.kafka, topic=f"bench-runs-{self.tag}-{suffix}"),
                                 dead_letter_topic=f"bench-runs-{self.tag}-{suffix}.dead-letter")
        topics = {settings.kafka.topic: TopicSpec(3), settings.dead_letter_topic: TopicSpec(1)}
        await ensure_topics(settings.kafka, topics)
        count = int(rate * self.plan.live_seconds)
        events = [encode_event(make_event(metadata_doc(run))) for run in runs[:count]]
        published: dict[str, float] = {}
        stored: dict[str, float] = {}
        searchable: dict[str, float] = {}
        log = self.workdir / f"live-{suffix}.log"
        try:
            async with running_consumer(settings, log, "--log-level", self.log_level) as consumer, connect(settings.es) as es:
                await self._wait_assigned(settings, consumer)
                producer = AIOKafkaProducer(acks="all", linger_ms=0, **settings.kafka.client_options())
                await producer.start()
                pid = consumer.process.pid
                cpu_before, _ = proc_stat(pid)
                done = asyncio.Event()
                pollers = [asyncio.create_task(self._poll_stored(es, settings.report_index, published, stored, done)),
                           asyncio.create_task(self._poll_searchable(es, settings.report_index, published, searchable, done))]
                try:
                    started = time.perf_counter()
                    for i, event in enumerate(events):
                        due = started + i / rate
                        if due > time.perf_counter():
                            await asyncio.sleep(due - time.perf_counter())
                        published[event.key.decode()] = time.perf_counter()
                        await producer.send(settings.kafka.topic, value=event.value, key=event.key, headers=event.headers)
                    publishing = time.perf_counter() - started
                    backlog = len(published) - len(stored)
                    deadline = time.perf_counter() + 60
                    while len(searchable) < len(published) and time.perf_counter() < deadline:
                        await asyncio.sleep(0.1)
                finally:
                    done.set()
                    await asyncio.gather(*pollers, return_exceptions=True)
                    await producer.stop()
                cpu_after, rss = proc_stat(pid)
                assert await consumer.stop() == 0
        finally:
            await delete_topics(settings.kafka, list(topics))
        latencies = [stored[u] - published[u] for u in stored]
        visible = [searchable[u] - published[u] for u in searchable]
        last = max(stored.values(), default=started) - started
        self.rows.append((
            f"live, {rate:g} finished runs/s for {self.plan.live_seconds:g} s, {where}",
            f"{len(stored) / max(last, publishing):.1f} reports/s; stored p50 {pct(latencies, .5):.2f} s, "
            f"p99 {pct(latencies, .99):.2f} s; searchable p50 {pct(visible, .5):.2f} s, p99 {pct(visible, .99):.2f} s; "
            f"backlog at the end {backlog}; CPU {1000 * (cpu_after - cpu_before) / max(len(stored), 1):.0f} ms/report; "
            f"RSS {rss:.0f} MB", "", ""))
        missing = len(published) - len(searchable)
        print(f"  {self.rows[-1][0]}: {self.rows[-1][1]}" + (f"; {missing} never searchable" if missing else ""), flush=True)

    async def _wait_assigned(self, settings: Settings, consumer) -> None:
        for _ in range(240):
            if "assigned" in consumer.logs() or "consuming" in consumer.logs():
                break
            await asyncio.sleep(0.25)
        # The group settles a moment after the first assignment.
        await asyncio.sleep(1.0)

    async def _poll_stored(self, es, index: str, published: dict, seen: dict, done: asyncio.Event) -> None:
        while not done.is_set():
            pending = [u for u in published if u not in seen]
            if pending:
                response = await es.options(ignore_status=404).mget(index=index, ids=pending, realtime=True,
                                                                     source=False)
                now = time.perf_counter()
                for doc in response.body.get("docs", ()):
                    if doc.get("found"):
                        seen[doc["_id"]] = now
            await asyncio.sleep(0.02)

    async def _poll_searchable(self, es, index: str, published: dict, seen: dict, done: asyncio.Event) -> None:
        while not done.is_set():
            pending = [u for u in published if u not in seen]
            if pending:
                response = await es.options(ignore_status=404).search(
                    index=index, query={"ids": {"values": pending}}, size=len(pending), source=False)
                now = time.perf_counter()
                for hit in response.body.get("hits", {}).get("hits", ()):
                    seen[hit["_id"]] = now
            await asyncio.sleep(0.05)

    # -- started events, and memory over them

    async def started_events(self) -> None:
        index = await self.report_index(f"bench-reports-{self.tag}-started", True)
        settings = dataclasses.replace(
            self.settings(False, report_index=index), group=f"bench-{self.tag}-started",
            commit_interval_s=0.5, kafka=dataclasses.replace(self.base.kafka, topic=f"bench-runs-{self.tag}-started"),
            dead_letter_topic=f"bench-runs-{self.tag}-started.dead-letter")
        topics = {settings.kafka.topic: TopicSpec(3), settings.dead_letter_topic: TopicSpec(1)}
        await ensure_topics(settings.kafka, topics)
        partitions = [TopicPartition(settings.kafka.topic, p) for p in range(3)]
        now = int(time.time())
        total = self.plan.started
        template = encode_event(make_event(run_doc(f"st-{self.tag}-template", cluster=self.clusters[0],
                                                   benchmark="node-density", status="running", start=now - 60,
                                                   end=None), "started"))
        rss: list[tuple[int, float]] = []
        try:
            async with running_consumer(settings, self.workdir / "started.log", "--log-level", self.log_level) as consumer:
                await self._wait_assigned(settings, consumer)
                pid = consumer.process.pid
                rss.append((0, proc_stat(pid)[1]))
                producer = AIOKafkaProducer(acks=1, linger_ms=20, **settings.kafka.client_options())
                await producer.start()
                started = time.perf_counter()
                try:
                    batch = []
                    for i in range(total):
                        key = f"st-{self.tag}-{i}".encode()
                        value = template.value.replace(template.key, key)
                        batch.append(await producer.send(settings.kafka.topic, value=value, key=key, headers=template.headers))
                        if len(batch) >= 2000:
                            await asyncio.gather(*batch)
                            batch = []
                    await asyncio.gather(*batch)
                finally:
                    await producer.stop()
                produced = time.perf_counter() - started
                committed = 0
                while committed < total:
                    committed = await self._committed(settings, partitions)
                    rss.append((committed, proc_stat(pid)[1]))
                    if time.perf_counter() - started > 900:
                        raise RuntimeError(f"started events: {committed} of {total} committed after 900 s")
                    await asyncio.sleep(1.0)
                consumed = time.perf_counter() - started
                assert await consumer.stop() == 0
        finally:
            await delete_topics(settings.kafka, list(topics))
        self.rows.append((f"{total:,} started events through the loop", f"{total / consumed:,.0f} events/s "
                          f"(the producer alone: {total / produced:,.0f}/s)", "", ""))
        middle = rss[len(rss) // 2]
        self.rows.append(("  consumer RSS over them, MB", f"{rss[0][1]:.0f} at start, {middle[1]:.0f} at "
                          f"{middle[0]:,}, {rss[-1][1]:.0f} at {rss[-1][0]:,}; peak {max(r for _, r in rss):.0f}", "", ""))
        print(f"  {self.rows[-2][0]}: {self.rows[-2][1]}; {self.rows[-1][1]}", flush=True)

    async def _committed(self, settings: Settings, partitions: list[TopicPartition]) -> int:
        consumer = AIOKafkaConsumer(group_id=settings.group, enable_auto_commit=False, **settings.kafka.client_options())
        await consumer.start()
        try:
            return sum([(await consumer.committed(tp)) or 0 for tp in partitions])
        finally:
            await consumer.stop()

    # -- the table

    def table(self) -> str:
        lines = ["| scenario | product | original job's method | ratio |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows]
        if getattr(self, "fidelity_line", None):
            lines += ["", f"Fidelity (loopback, product's reports against the original method's): {self.fidelity_line}"]
        return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    plan = SMOKE if args.smoke else FULL
    plan = dataclasses.replace(plan, **{k: v for k, v in {
        "repeats": args.repeats, "baseline_runs": args.baseline_runs, "live_seconds": args.live_seconds,
        "started": args.started, "delay_ms": args.delay_ms}.items() if v is not None})
    if args.runs:
        plan = dataclasses.replace(plan, size=dataclasses.replace(plan.size, runs=args.runs))
    scenarios = set(args.scenarios.split(","))
    tag = uuids.uuid4().hex[:8]
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="perf-bench-") as folder:
        if args.keep:
            folder = tempfile.mkdtemp(prefix="perf-bench-")
            print(f"logs and data in {folder}")
        bench = Bench(plan, tag, Path(folder), args.log_level)
        try:
            await bench.prepare()
            if "rebuild" in scenarios:
                await bench.rebuild()
            if "live" in scenarios:
                offset = 0
                for rate, proxied in [(r, False) for r in plan.live_rates] + [(r, True) for r in plan.proxy_live_rates]:
                    await bench.live(rate, proxied, bench.live_runs[offset:])
                    offset += int(rate * plan.live_seconds)
            if "started" in scenarios:
                await bench.started_events()
        finally:
            await bench.cleanup()
    print(f"\nload average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; after: "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f"; {os.cpu_count()} CPUs")
    print(bench.table())
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every scenario at a tiny size (CI)")
    parser.add_argument("--runs", type=int, help="runs to rebuild (default 1000)")
    parser.add_argument("--baseline-runs", type=int, help="runs the original method rebuilds on loopback (default 150; "
                        "a third through the proxy)")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--delay-ms", type=float, help="one-way delay of the proxy (default 25)")
    parser.add_argument("--live-seconds", type=float)
    parser.add_argument("--started", type=int, help="started events (default 100,000)")
    parser.add_argument("--scenarios", default="rebuild,live,started")
    parser.add_argument("--keep", action="store_true", help="keep the consumers' logs (a folder is printed)")
    parser.add_argument("--log-level", default="WARNING", help="of the consumers (default WARNING)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
