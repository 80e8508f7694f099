"""Run metadata documents in the two schemas pipelines write, as they write them."""

from __future__ import annotations

from datetime import datetime, timezone


def snake_doc(uuid: str = "6f1b1e0e-0000-4000-8000-000000000001", **changes: object) -> dict:
    """An Airflow-era document as index.sh writes it: counts and duration as strings."""
    doc = {
        "uuid": uuid,
        "release_stream": "4.16.0-0.nightly",
        "platform": "AWS",
        "master_count": "3",
        "worker_count": "24",
        "infra_count": "3",
        "workload_count": "1",
        "total_count": "31",
        "master_type": "m6a.xlarge",
        "worker_type": "m6a.2xlarge",
        "infra_type": "r5.2xlarge",
        "workload_type": "m5.8xlarge",
        "cluster_name": "perf-416-aws",
        "cluster_version": "4.16.0-0.nightly-2024-05-01-000000",
        "network_type": "OVNKubernetes",
        "build_tag": "cluster-density-v2",
        "node_name": "airflow-worker-1",
        "job_status": "success",
        "build_url": "http://airflow.example.com/task?dag_id=aws-4.16&task_id=cluster-density-v2",
        "upstream_job": "aws-4.16",
        "upstream_job_build": "aws-4.16/scheduled__2024-05-02/cluster-density-v2",
        "execution_date": "2024-05-02T00:00:00+00:00",
        "job_duration": "2520",
        "start_date": "2024-05-02T10:00:03.123456+00:00",
        "end_date": "2024-05-02T10:42:03.123456+00:00",
        "timestamp": "2024-05-02T10:00:03.123456+00:00",
    }
    doc.update(changes)
    return doc


def camel_doc(uuid: str = "6f1b1e0e-0000-4000-8000-000000000002", **changes: object) -> dict:
    """A current-schema document, with free-form extra keys and unix timestamps beside the dates."""
    doc = {
        "ciSystem": "PROW",
        "uuid": uuid,
        "releaseStream": "4.17.0-0.nightly",
        "platform": "GCP",
        "clusterType": "self-managed",
        "benchmark": "node-density",
        "masterNodesCount": 3,
        "workerNodesCount": 120,
        "infraNodesCount": 0,
        "masterNodesType": "n2-standard-8",
        "workerNodesType": "n2-standard-4",
        "infraNodesType": "",
        "totalNodesCount": 123,
        "clusterName": "perf-417-gcp",
        "ocpVersion": "4.17.0-0.nightly-2024-06-01-000000",
        "networkType": "OVNKubernetes",
        "buildTag": "1797234567890",
        "jobStatus": "Failed",
        "buildUrl": "https://prow.example.com/view/1797234567890",
        "upstreamJob": "periodic-ci-openshift-qe-ocp-qe-perfscale-ci",
        "upstreamJobBuild": "1797234567890",
        "executionDate": "",
        "jobDuration": "3600",
        "startDate": "2024-06-02T08:00:00Z",
        "endDate": "2024-06-02T09:00:00Z",
        "startDateUnixTimestamp": "1717315200",
        "endDateUnixTimestamp": "1717318800",
        "timestamp": "2024-06-02T08:00:00Z",
        "ipsec": False,
        "fips": False,
        "computeArch": "amd64",
    }
    doc.update(changes)
    return doc


def filler(json_bytes: int, chunk: int = 30_000) -> list[str]:
    """Strings that take exactly ``json_bytes`` (at least 5) as a JSON array, each short enough for
    the report index, for documents near the size limit."""
    count = -(-(json_bytes - 1) // (chunk + 3))  # each string costs its quotes and a comma (or a bracket)
    payload = json_bytes - 3 * count - 1
    return ["x" * (payload // count + (1 if n < payload % count else 0)) for n in range(count)]


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def run_doc(uuid: str, *, cluster: str, benchmark: str, status: str, start: int, end: int | None,
            camel: bool = False) -> dict:
    """A document for one run (unix-second window; no ``end`` for a run still going), in either schema."""
    if camel:
        doc = camel_doc(uuid, clusterName=cluster, benchmark=benchmark, jobStatus=status, startDate=iso(start),
                        startDateUnixTimestamp=str(start), timestamp=iso(start))
        window = {"endDate": iso(end), "endDateUnixTimestamp": str(end), "jobDuration": str(end - start)} if end else {}
    else:
        doc = snake_doc(uuid, cluster_name=cluster, build_tag=benchmark, job_status=status, start_date=iso(start),
                        timestamp=iso(start))
        window = {"end_date": iso(end), "job_duration": str(end - start)} if end else {}
    for key in ("endDate", "endDateUnixTimestamp", "jobDuration", "end_date", "job_duration"):
        doc.pop(key, None)
    return {**doc, **window}
