"""How much building runs concurrently buys: reports per second at MAX_IN_FLIGHT=1 against higher
limits, measured in the same process on the local servers (`scripts/services up` first).

    python benchmarks/build_concurrency.py [--runs 40] [--limits 1,4,8] [--repeats 3]

Each build is what `run`, `replay` and `backfill` do for one run: read its kube-burner results from
Elasticsearch, summarise every control-plane query over its window from Prometheus, write the
report. A pass builds every run once (all reports new); a second pass builds them again, which
finds every report unchanged and writes nothing. Limits are measured alternately, median of the
repeats, and reported as a speed-up over MAX_IN_FLIGHT=1: a ratio on one machine in one run, not
an absolute time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import random
import statistics
import sys
import time
import uuid as uuids
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumer.elastic import connect  # noqa: E402
from consumer.origin import Delivery, Origin  # noqa: E402
from consumer.pipeline import Pipeline  # noqa: E402
from consumer.rebuild import Summary, rebuild  # noqa: E402
from consumer.settings import Settings  # noqa: E402
from producer_hooks.events import make_event  # noqa: E402
from tests.support.es import index_docs  # noqa: E402
from tests.support.kubeburner import run_documents  # noqa: E402
from tests.support.metadata import run_doc  # noqa: E402
from tests.support.openshift import cluster_series  # noqa: E402
from tests.support.prometheus import load_series  # noqa: E402
from tests.support.services import service_env  # noqa: E402

STEP = 30


async def build_all(settings: Settings, events: list, limit: int) -> tuple[float, Summary]:
    summary = Summary()
    async with Pipeline.open(dataclasses.replace(settings, max_in_flight=limit)) as pipeline:
        started = time.perf_counter()
        await rebuild(pipeline, events, summary, label="bench", stream=io.StringIO())
        return time.perf_counter() - started, summary


async def main(args: argparse.Namespace) -> None:
    tag = uuids.uuid4().hex[:8]
    base = Settings.from_env({**service_env()})
    settings = dataclasses.replace(base, results_index=f"ripsaw-kube-burner-bench-{tag}", results_deadline_s=0)
    cluster = f"bench-{tag}"
    now = int(time.time()) // STEP * STEP
    rng = random.Random(tag)
    print(f"loading series for {cluster} and results of {args.runs} runs", flush=True)
    await asyncio.to_thread(load_series, cluster_series(cluster, now - 4 * 3600, now, STEP, rng))
    events = []
    docs = []
    for i in range(args.runs):
        start = now - 4 * 3600 + rng.randint(0, 3 * 3600)
        uuid = f"{tag}-{i:03d}"
        event = make_event(run_doc(uuid, cluster=cluster, benchmark="node-density", status="success",
                                   start=start, end=start + 1800))
        events.append(Delivery(event, Origin(published_at=event.run.end)))
        docs += run_documents(uuid, datetime.fromtimestamp(start, timezone.utc), {"node-density": 50})
    async with connect(settings.es) as es:
        await index_docs(es, settings.results_index, docs)

    new: dict[int, list[float]] = {limit: [] for limit in args.limits}
    unchanged: dict[int, list[float]] = {limit: [] for limit in args.limits}
    try:
        for repeat in range(args.repeats):
            for limit in args.limits:
                index = f"bench-reports-{tag}-{repeat}-{limit}"
                run_settings = dataclasses.replace(settings, report_index=index)
                seconds, summary = await build_all(run_settings, events, limit)
                assert summary.outcomes["created"] == args.runs and summary.ok, summary.lines()
                new[limit].append(seconds)
                seconds, summary = await build_all(run_settings, events, limit)
                assert summary.outcomes["unchanged"] == args.runs, summary.lines()
                unchanged[limit].append(seconds)
                print(f"  repeat {repeat + 1}, MAX_IN_FLIGHT={limit}: new {new[limit][-1]:.2f} s, "
                      f"unchanged {unchanged[limit][-1]:.2f} s", flush=True)
    finally:
        async with connect(settings.es) as es:
            await es.options(ignore_status=404).indices.delete(index=f"bench-reports-{tag}-*,{settings.results_index}")

    baseline_new = statistics.median(new[args.limits[0]])
    baseline_unchanged = statistics.median(unchanged[args.limits[0]])
    print(f"\n{args.runs} runs, control-plane profile, median of {args.repeats}")
    print("MAX_IN_FLIGHT  new reports/s  speed-up  unchanged reports/s  speed-up")
    for limit in args.limits:
        n, u = statistics.median(new[limit]), statistics.median(unchanged[limit])
        print(f"{limit:>13}  {args.runs / n:>13.1f}  {baseline_new / n:>8.2f}  {args.runs / u:>19.1f}  {baseline_unchanged / u:>8.2f}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--limits", type=lambda text: [int(x) for x in text.split(",")], default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
