"""The product on this machine, end to end, with sample runs (run it through `scripts/demo`).

1. creates the topics and the report index (`report-consumer init`);
2. loads sample kube-burner results into Elasticsearch and cluster metrics into Prometheus for two
   clusters, as the benchmarks and Thanos would have them;
3. starts `report-consumer run`;
4. publishes each sample run's started and finished events with `report-hook publish`, the way a
   pipeline's shell step does (both metadata schemas);
5. waits for the reports and prints them, then stops the consumer with SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid as uuids
from datetime import datetime, timezone
from pathlib import Path

from elasticsearch import AsyncElasticsearch

from consumer.elastic import connect
from consumer.settings import Settings
from consumer.views import render_show
from tests.support.es import index_docs
from tests.support.kubeburner import run_documents
from tests.support.openshift import cluster_series
from tests.support.prometheus import load_series

REPO = Path(__file__).resolve().parent.parent
STEP = 30
RESULTS_INDEX = "ripsaw-kube-burner"  # what kube-burner writes to; RESULTS_INDEX reads ripsaw-kube-burner*
CLUSTERS = ("perf-aws-418", "perf-gcp-417")


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def sample_runs(now: int) -> list[dict]:
    """Four runs on two clusters, in the two metadata schemas pipelines write."""
    def iso(t: int) -> str:
        return datetime.fromtimestamp(t, timezone.utc).isoformat()

    runs = []
    for cluster, benchmark, offset, jobs in (
        (CLUSTERS[0], "cluster-density-v2", 7200, {"cluster-density-v2": 120}),
        (CLUSTERS[0], "node-density-heavy", 4200, {"node-density-heavy": 60, "garbage-collection": 1}),
        (CLUSTERS[1], "node-density-cni", 5400, {"node-density-cni": 200}),
        (CLUSTERS[1], "cluster-density-v2", 2400, {"cluster-density-v2": 90}),
    ):
        start, end = now - offset, now - offset + 1800
        uuid = str(uuids.uuid4())
        if cluster == CLUSTERS[0]:
            doc = {"uuid": uuid, "cluster_name": cluster, "cluster_version": "4.18.3", "platform": "AWS",
                   "network_type": "OVNKubernetes", "build_tag": benchmark, "master_count": "3", "worker_count": "24",
                   "master_type": "m6a.xlarge", "worker_type": "m6a.2xlarge", "release_stream": "4.18.0-0.nightly",
                   "build_url": f"https://airflow.example.com/dags/perf/{uuid}", "start_date": iso(start), "end_date": iso(end)}
            status_key = "job_status"
        else:
            doc = {"uuid": uuid, "clusterName": cluster, "ocpVersion": "4.17.12", "platform": "GCP",
                   "networkType": "OVNKubernetes", "benchmark": benchmark, "ciSystem": "PROW", "masterNodesCount": 3,
                   "workerNodesCount": 60, "buildUrl": f"https://prow.example.com/{uuid}",
                   "startDate": iso(start), "endDate": iso(end)}
            status_key = "jobStatus"
        runs.append({"doc": doc, "status_key": status_key, "jobs": jobs, "start": start, "cluster": cluster})
    return runs


def publish(doc: dict, env: dict[str, str]) -> None:
    """`report-hook publish -`, as a pipeline's shell step calls it."""
    result = subprocess.run([sys.executable, "-m", "producer_hooks.cli", "publish", "-"], input=json.dumps(doc),
                            text=True, env=env, capture_output=True)
    if result.returncode != 0 or result.stderr.strip():
        say(f"report-hook: {result.stderr.strip() or result.returncode}")


async def main() -> int:
    env = {**os.environ, "GRAFANA_URL": os.environ.get("GRAFANA_URL", "http://localhost:3000")}
    settings = Settings.from_env(env)
    cli = [sys.executable, "-m", "consumer.cli"]
    subprocess.run([*cli, "init"], env=env, check=True)

    now = int(time.time()) // STEP * STEP
    rng = random.Random()
    say("loading cluster metrics into Prometheus (the Thanos stand-in) for " + ", ".join(CLUSTERS))
    await asyncio.to_thread(load_series, [s for c in CLUSTERS for s in cluster_series(c, now - 3 * 3600, now, STEP, rng)])
    runs = sample_runs(now)
    say(f"indexing kube-burner results of {len(runs)} sample runs into {RESULTS_INDEX}")
    async with connect(settings.es) as es:
        docs = [d for run in runs for d in run_documents(run["doc"]["uuid"], datetime.fromtimestamp(run["start"], timezone.utc),
                                                          run["jobs"], cluster=run["cluster"], seed=rng.random())]
        await index_docs(es, RESULTS_INDEX, docs)

        log = REPO / ".services" / "demo-consumer.log"
        log.parent.mkdir(exist_ok=True)
        say(f"starting report-consumer run (log: {log})")
        with open(log, "ab") as out:
            consumer = subprocess.Popen([*cli, "run"], env=env, stdout=out, stderr=out)
        try:
            for run in runs:
                say(f"publishing {run['doc'].get('build_tag') or run['doc'].get('benchmark')} on {run['cluster']}: started, finished")
                publish({**run["doc"], run["status_key"]: "running"}, env)
                publish({**run["doc"], run["status_key"]: "success"}, env)
            reports = await wait_for_reports(es, settings.report_index, [run["doc"]["uuid"] for run in runs], consumer, log)
        finally:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(timeout=60)
    for report in reports:
        show(report)
    say(f"{len(reports)} reports in index {settings.report_index} at {settings.es.url}; full documents: "
        f"curl '{settings.es.url}/{settings.report_index}/_doc/<uuid>?pretty'")
    return 0


async def wait_for_reports(es: AsyncElasticsearch, index: str, wanted: list[str], consumer: subprocess.Popen,
                           log: Path) -> list[dict]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if consumer.poll() is not None:
            raise SystemExit(f"demo: the consumer stopped ({consumer.returncode}); see {log}")
        if await es.indices.exists(index=index):
            docs = (await es.mget(index=index, ids=wanted))["docs"]
            found = [doc["_source"] for doc in docs if doc.get("found")]
            if len(found) == len(wanted):
                return found
        await asyncio.sleep(1)
    raise SystemExit(f"demo: reports did not arrive within 180 s; see {log}")


def show(report: dict) -> None:
    print()
    print(render_show(report))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
