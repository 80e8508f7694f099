"""kube-burner result documents in the shapes each kube-burner version indexes, from a few parameters.

Layouts (checked against kube-burner's Go structs at those tags and documents it indexed itself):

- ``v1.9``  (v1.9.0-v1.9.5): jobSummary with ``metadata`` nested, no ``passed``; quantile documents
  carry the whole ``jobConfig``; no ``min``.
- ``v1.10`` (v1.9.7-v1.10.4): jobSummary with ``passed`` and churn timestamps (Go's zero time when
  there was no churn); quantile documents name **no job** at all.
- ``v1.11`` (v1.10.5-v1.11.x): cluster metadata merged at the jobSummary's top level; quantile
  documents carry ``jobName`` (still no ``min``).
- ``v2``: six pod conditions, ``min``, integer ``elapsedTime``; incremental-load jobs (v2.5+).

A jobSummary never has ``jobName``. Timestamps are RFC 3339 with up to 9 fraction digits (Go's
RFC3339Nano: trailing zeros dropped). A job named ``garbage-collection`` is written as kube-burner
writes its gcMetrics phase: jobConfig ``{name, gc, churnConfig}`` and no latencies.

:func:`kube_burner_run` also returns what the run did (:class:`JobTruth`), so tests can check a
report against the input even where the documents do not say which job they belong to.
"""

from __future__ import annotations

import random
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

LAYOUTS = ("v1.9", "v1.10", "v1.11", "v2")
CONDITIONS_V1 = ("PodScheduled", "Initialized", "ContainersReady", "Ready")
CONDITIONS_V2 = CONDITIONS_V1 + ("PodReadyToStartContainers", "ContainersStarted")
VERSIONS = {"v1.9": "v1.9.5@4c9c3f43", "v1.10": "v1.10.4@0f5a1bd6", "v1.11": "v1.11.3@2f0e4d1c", "v2": "v2.7.3@9091baef"}
GC_JOB = "garbage-collection"
SECOND = 10**9
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339_nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: up to 9 fraction digits, trailing zeros (and a bare dot) dropped."""
    seconds, nanos = divmod(ns, SECOND)
    text = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class JobTruth:
    """One job (or incremental step, or the summaries around the steps) as the run did it."""

    name: str
    phase: str  # job, before, step, after, gc
    start: str
    end: str
    elapsed: float | int
    iterations: int | None
    step: int | None = None
    step_id: str | None = None
    latency: dict[str, dict[str, int]] = field(default_factory=dict)  # condition -> stats


@dataclass
class KubeBurnerRun:
    docs: list[dict]
    jobs: list[JobTruth]  # in run order


def kube_burner_run(uuid: str, start: datetime, jobs: dict[str, int], *, cluster: str = "perf-cluster",
                    seed: int = 0, layout: str = "v2", incremental: dict[str, int] | None = None) -> KubeBurnerRun:
    """The documents one run of ``jobs`` (name -> iterations) indexes in ``layout``, plus per-pod
    latencies and a metric document that a reader must ignore. ``incremental`` (v2 only): job name
    -> number of steps, for jobs run with incrementalLoad."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {LAYOUTS}")
    incremental = incremental or {}
    if incremental and layout != "v2":
        raise ValueError("incrementalLoad exists from kube-burner v2.5")
    rng = random.Random(f"{uuid}-{seed}-{layout}")
    cluster_md = {"platform": "AWS", "ocpVersion": "4.17.3", "ocpMajorVersion": "4.17", "k8sVersion": "v1.30.5",
                  "masterNodesType": "m6a.xlarge", "workerNodesType": "m6a.2xlarge", "masterNodesCount": 3,
                  "workerNodesCount": 24, "totalNodes": 30, "sdnType": "OVNKubernetes", "clusterName": cluster,
                  "workloadFlags": {"gc": True, "churn": False}}
    conditions = CONDITIONS_V2 if layout == "v2" else CONDITIONS_V1
    run = KubeBurnerRun([], [])
    moment = int(start.timestamp()) * SECOND + start.microsecond * 1000 + rng.randrange(SECOND)

    def summary(name: str, begin: int, end: int, config: dict, **extra: object) -> dict:
        elapsed: float | int = round((end - begin) / SECOND) if layout == "v2" else (end - begin) / SECOND
        doc: dict = {"timestamp": rfc3339_nano(begin), "endTimestamp": rfc3339_nano(end)}
        if layout in ("v1.10", "v1.11"):
            doc.update(churnStartTimestamp=GO_ZERO_TIME, churnEndTimestamp=GO_ZERO_TIME)
        doc.update(elapsedTime=elapsed, uuid=uuid, **extra, metricName="jobSummary", jobConfig=config,
                   version=VERSIONS[layout])
        if layout != "v1.9":
            doc["passed"] = True
        if layout in ("v1.9", "v1.10"):
            doc["metadata"] = dict(cluster_md)
        else:
            doc.update(cluster_md)
        return doc

    def quantile_set(name: str, config: dict, at: int, step_uuid: str | None = None) -> dict[str, dict[str, int]]:
        stats_by_condition = {}
        for condition in conditions:
            p50 = rng.randint(100, 2000)
            stats = {"P99": p50 * 3 + rng.randint(0, 99), "P95": p50 * 2 + rng.randint(0, 99), "P50": p50,
                     "max": p50 * 4 + rng.randint(0, 999), "avg": p50 + rng.randint(0, 50)}
            if layout == "v2":
                stats["min"] = rng.randint(1, 99)
            metadata = {"clusterName": cluster, "platform": "AWS"}
            if step_uuid:
                metadata["incrementalLoadUUID"] = step_uuid
            doc = {"quantileName": condition, "uuid": uuid, **stats, "timestamp": rfc3339_nano(at + rng.randrange(1000)),
                   "metricName": "podLatencyQuantilesMeasurement"}
            if layout == "v1.9":
                doc["jobConfig"] = config
            elif layout in ("v1.11", "v2"):
                doc["jobName"] = name
            doc["metadata"] = metadata
            run.docs.append(doc)
            stats_by_condition[condition] = stats
        # Per-pod latencies and a metric: other documents of the run.
        for pod in range(2):
            run.docs.append({"uuid": uuid, "metricName": "podLatencyMeasurement", "jobName": name,
                             "timestamp": rfc3339_nano(at), "podName": f"{name}-{pod}", "nodeName": "worker-1",
                             "namespace": name, "podReadyLatency": rng.randint(100, 5000)})
        run.docs.append({"uuid": uuid, "metricName": "containerCPU", "jobName": name, "timestamp": rfc3339_nano(at),
                         "value": rng.random(), "labels": {"namespace": "openshift-etcd"}, "query": "irate(...)"})
        return stats_by_condition

    for name, iterations in jobs.items():
        if name == GC_JOB:
            begin, end = moment, moment + rng.randint(20, 120) * SECOND + rng.randrange(SECOND)
            doc = summary(name, begin, end, {"name": GC_JOB, "gc": False, "churnConfig": {}})
            run.docs.append(doc)
            run.jobs.append(JobTruth(name, "gc", doc["timestamp"], doc["endTimestamp"], doc["elapsedTime"], None))
            moment = end + rng.randint(1, 5) * SECOND
            continue
        config = {"jobIterations": iterations, "jobIterationDelay": 0, "name": name, "jobType": "create",
                  "qps": 20, "burst": 20, "namespace": name, "maxWaitTimeout": 14_400 * SECOND, "podWait": False,
                  "waitWhenFinished": True, "cleanup": True, "namespacedIterations": True,
                  "iterationsPerNamespace": 1}
        if layout == "v2":
            config.update(gc=True, churnConfig={}, measurements=[{"name": "podLatency"}])
        steps = incremental.get(name, 0)
        if not steps:
            begin = moment
            end = begin + rng.randint(60, 900) * SECOND + rng.randrange(SECOND)
            at = end + rng.randint(50, 900) * 10**6  # the measurement stops right after the job's end
            latency = quantile_set(name, config, at)
            doc = summary(name, begin, end, config)
            run.docs.append(doc)
            run.jobs.append(JobTruth(name, "job", doc["timestamp"], doc["endTimestamp"], doc["elapsedTime"],
                                     iterations, latency=latency))
            moment = at + rng.randint(2, 20) * SECOND  # indexing, jobPause: then the next job starts
            continue
        # incrementalLoad: a summary before the steps, one per step (cumulative iterations), one after.
        config["incrementalLoad"] = {"minIterations": iterations // steps, "maxIterations": iterations,
                                     "pattern": {"type": "linear", "linear": {"stepSize": iterations // steps}}}
        job_start = moment
        moment += rng.randint(5, 30) * SECOND
        before_index = len(run.docs)
        step_truths = []
        for step in range(1, steps + 1):
            step_uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
            begin = moment
            end = begin + rng.randint(60, 600) * SECOND + rng.randrange(SECOND)
            cumulative = iterations * step // steps
            step_config = {**config, "jobIterations": cumulative}
            latency = quantile_set(name, step_config, end - rng.randint(1, 5) * SECOND, step_uuid)
            doc = summary(name, begin, end, step_config, incrementalLoadUUID=step_uuid)
            run.docs.append(doc)
            step_truths.append(JobTruth(name, "step", doc["timestamp"], doc["endTimestamp"], doc["elapsedTime"],
                                        cumulative, step=step, step_id=step_uuid, latency=latency))
            moment = end + rng.randint(1, 10) * SECOND
        first_step_start = int(_ns(step_truths[0].start))
        before = summary(name, job_start, first_step_start, config)
        run.docs.insert(before_index, before)
        job_end = moment + rng.randint(5, 60) * SECOND
        after = summary(name, int(_ns(step_truths[-1].end)), job_end, config)
        run.docs.append(after)
        run.jobs.append(JobTruth(name, "before", before["timestamp"], before["endTimestamp"], before["elapsedTime"],
                                 iterations))
        run.jobs.extend(step_truths)
        run.jobs.append(JobTruth(name, "after", after["timestamp"], after["endTimestamp"], after["elapsedTime"],
                                 iterations))
        moment = job_end + rng.randint(2, 20) * SECOND
    return run


def _ns(text: str) -> int:
    date, _, rest = text.rstrip("Z").partition(".")
    seconds = int(datetime.strptime(date, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
    return seconds * SECOND + int(rest.ljust(9, "0") if rest else 0)


def run_documents(uuid: str, start: datetime, jobs: dict[str, int], *, cluster: str = "perf-cluster",
                  seed: int = 0, layout: str = "v2", incremental: dict[str, int] | None = None) -> list[dict]:
    """The documents of :func:`kube_burner_run`, in the order kube-burner indexes them: a job's
    jobSummary after its measurements (the reader takes a searchable jobSummary to mean the rest is)."""
    docs = kube_burner_run(uuid, start, jobs, cluster=cluster, seed=seed, layout=layout, incremental=incremental).docs
    return sorted(docs, key=lambda doc: doc.get("metricName") == "jobSummary")


_COMPARED = ("name", "phase", "step", "step_id", "start_date", "end_date", "elapsed_s", "iterations", "latency_ms")


def expected_jobs(run: KubeBurnerRun) -> list[dict]:
    """The report's ``jobs`` for ``run`` as a user checks them (see :func:`compared`), in run order,
    from what the run did."""
    out = []
    for job in run.jobs:
        entry = {"name": job.name, "phase": job.phase, "step": job.step, "step_id": job.step_id,
                 "start_date": job.start, "end_date": job.end, "elapsed_s": job.elapsed,
                 "iterations": job.iterations, "latency_ms": job.latency or None}
        out.append({k: v for k, v in entry.items() if v is not None})
    return out


def compared(jobs: list[dict]) -> list[dict]:
    """The part of report job entries that :func:`expected_jobs` predicts."""
    return [{k: job[k] for k in _COMPARED if k in job} for job in jobs]
