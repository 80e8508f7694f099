"""kube-burner result documents, as kube-burner (v1.11+) indexes them, from a few parameters."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

QUANTILES = ("PodScheduled", "Initialized", "ContainersReady", "Ready")


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_documents(uuid: str, start: datetime, jobs: dict[str, int], *, cluster: str = "perf-cluster",
                  seed: int = 0, legacy: bool = False) -> list[dict]:
    """jobSummary and podLatencyQuantilesMeasurement documents of one run, one per job (``jobs``:
    name -> iterations), plus per-pod latencies and a metric document that a reader must ignore.
    ``legacy`` writes the pre-1.11 shape: no ``jobName``, the job named in ``jobConfig``."""
    rng = random.Random(f"{uuid}-{seed}")
    docs: list[dict] = []
    moment = start
    for job, iterations in jobs.items():
        elapsed = rng.randint(60, 900)
        end = moment + timedelta(seconds=elapsed)
        summary = {
            "uuid": uuid,
            "metricName": "jobSummary",
            "timestamp": iso(moment),
            "endTimestamp": iso(end),
            "elapsedTime": float(elapsed),
            "passed": True,
            "executionErrors": "",
            "version": "1.11.2@abcdef",
            "jobConfig": {"name": job, "jobType": "create", "jobIterations": iterations, "qps": 20,
                          "burst": 20, "namespace": job, "churnPercent": 10},
        }
        if not legacy:
            summary.update(jobName=job, platform="AWS", ocpVersion="4.17.3", ocpMajorVersion="4.17",
                           k8sVersion="v1.30.5", masterNodesType="m6a.xlarge", workerNodesType="m6a.2xlarge",
                           masterNodesCount=3, workerNodesCount=24, totalNodes=30, sdnType="OVNKubernetes",
                           clusterName=cluster)
        docs.append(summary)
        for quantile in QUANTILES:
            p50 = rng.randint(100, 2000)
            doc = {
                "uuid": uuid,
                "metricName": "podLatencyQuantilesMeasurement",
                "quantileName": quantile,
                "timestamp": iso(end),
                "P99": p50 * 3 + rng.randint(0, 99),
                "P95": p50 * 2 + rng.randint(0, 99),
                "P50": p50,
                "max": p50 * 4 + rng.randint(0, 999),
                "avg": p50 + rng.randint(0, 50),
                "min": rng.randint(1, 99),
                "metadata": {"clusterName": cluster},
            }
            if legacy:
                doc["jobConfig"] = {"name": job}
            else:
                doc["jobName"] = job
            docs.append(doc)
        for pod in range(3):
            docs.append({"uuid": uuid, "metricName": "podLatencyMeasurement", "jobName": job,
                         "timestamp": iso(end), "podName": f"{job}-{pod}", "nodeName": "worker-1",
                         "namespace": job, "podReadyLatency": rng.randint(100, 5000)})
        docs.append({"uuid": uuid, "metricName": "containerCPU", "jobName": job, "timestamp": iso(end),
                     "value": rng.random(), "labels": {"namespace": "openshift-etcd"}, "query": "irate(...)"})
        moment = end
    return docs
