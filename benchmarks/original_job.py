"""The retired report job's method, re-implemented for comparison (README of /work/shared, section 3).

    ES_SERVER=... THANOS_URL=... METADATA_INDEX=... RESULTS_INDEX=... REPORT_INDEX=... \\
        python benchmarks/original_job.py UUIDS_FILE

One run after another, synchronously, as the hourly job did: search the metadata index for the run,
search the kube-burner results by uuid (jobSummary and podLatencyQuantilesMeasurement), then for
every query of the control-plane profile (the same queries the product asks) one ``query_range``
from the run's start to its end at a 10 s step, mean and maximum per series folded here from the
JSON answer, and index the report under the run's uuid. Kept connections (one Elasticsearch
client, one HTTP pool), the standard library's JSON, as the job used.

HTTP as the job's ``requests`` session sent it: ``Accept-Encoding: gzip, deflate`` (requests' default;
``ORIGINAL_JOB_ENCODING=identity`` asks for plain answers instead).

Two kindnesses the job did not have, so that both sides compute the same numbers: windows past
11,000 points are asked in chunks (the job failed past ~30.5 h), and non-finite points are skipped.
Prints one JSON line: runs built, seconds taken, and the seconds of each run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import urllib3
from elasticsearch import Elasticsearch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumer.profiles import CONTROL_PLANE, load_profiles  # noqa: E402

STEP_MS = 10_000
MAX_POINTS = 11_000
CLUSTER_LABEL = "openshift_cluster_name"
ENCODING = os.environ.get("ORIGINAL_JOB_ENCODING", "gzip, deflate")


def epoch_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def query_range(http: urllib3.PoolManager, url: str, query: str, start_ms: int, end_ms: int) -> dict:
    """Mean, maximum and count per series of ``query`` at ``start + k * 10 s``."""
    totals: dict[tuple, list[float]] = {}
    last = start_ms + (end_ms - start_ms) // STEP_MS * STEP_MS
    chunk = start_ms
    while chunk <= last:
        chunk_end = min(chunk + (MAX_POINTS - 1) * STEP_MS, last)
        response = http.request("POST", f"{url}/api/v1/query_range", fields={
            "query": query, "start": seconds(chunk), "end": seconds(chunk_end), "step": "10"}, encode_multipart=False,
            headers={"Accept-Encoding": ENCODING})
        if response.status != 200:
            raise RuntimeError(f"query_range {response.status}: {response.data[:200]!r}")
        for series in json.loads(response.data)["data"]["result"]:
            key = tuple(sorted(series["metric"].items()))
            total = totals.setdefault(key, [0.0, 0, -math.inf])
            for _, raw in series["values"]:
                value = float(raw)
                if math.isfinite(value):
                    total[0] += value
                    total[1] += 1
                    total[2] = max(total[2], value)
        chunk = chunk_end + STEP_MS
    return {"series": [{"labels": dict(key), "avg": total / count, "max": peak, "samples": count}
                       for key, (total, count, peak) in sorted(totals.items()) if count]}


def build(es: Elasticsearch, http: urllib3.PoolManager, env: dict[str, str], queries: list, uuid: str) -> None:
    hits = es.search(index=env["METADATA_INDEX"], query={"term": {"uuid.keyword": uuid}}, size=1)["hits"]["hits"]
    metadata = hits[0]["_source"]
    results: dict = {}
    found = es.search(index=env["RESULTS_INDEX"], size=10_000, query={"bool": {"filter": [
        {"term": {"uuid.keyword": uuid}},
        {"terms": {"metricName.keyword": ["jobSummary", "podLatencyQuantilesMeasurement"]}}]}})
    for hit in found["hits"]["hits"]:
        doc = hit["_source"]
        if doc["metricName"] == "jobSummary":
            results["jobSummary"] = doc  # later jobs overwrote earlier ones
        else:
            results.setdefault("podLatencyQuantiles", {})[doc["quantileName"]] = {
                k: doc[k] for k in ("P99", "P95", "P50", "max", "avg") if k in doc}
    start, end = epoch_ms(metadata["start_date"]), epoch_ms(metadata["end_date"])
    cluster = metadata["cluster_name"]
    metrics = {query.name: query_range(http, env["THANOS_URL"], query.render(CLUSTER_LABEL, cluster), start, end)
               for query in queries}
    report = {"uuid": uuid, "benchmark": metadata.get("build_tag"), "metadata": metadata, "results": results,
              "metrics": metrics, "timestamp": datetime.now().isoformat()}
    es.index(index=env["REPORT_INDEX"], id=uuid, document=report)


def main() -> None:
    uuids = Path(sys.argv[1]).read_text().split()
    env = dict(os.environ)
    queries = list(load_profiles()[CONTROL_PLANE].queries)
    es = Elasticsearch(env["ES_SERVER"], request_timeout=300)
    http = urllib3.PoolManager(maxsize=1, timeout=urllib3.Timeout(total=300))
    started = time.perf_counter()
    per_run = {}
    for uuid in uuids:
        began = time.perf_counter()
        build(es, http, env, queries, uuid)
        per_run[uuid] = time.perf_counter() - began
    print(json.dumps({"runs": len(uuids), "seconds": time.perf_counter() - started, "per_run": per_run}))


if __name__ == "__main__":
    main()
