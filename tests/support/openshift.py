"""Series an OpenShift cluster exposes to Thanos, enough for the control-plane profile's original
four queries (podCPU, podMemory, masterCPU, masterMemoryUsage): counters that grow, gauges that wander."""

from __future__ import annotations

import random

from .prometheus import Series


def cluster_series(cluster: str, start: int, end: int, step: int, rng: random.Random) -> list[Series]:
    """The series the original job's four control-plane queries read, for one cluster."""
    series: list[Series] = []
    times = range(start, end + 1, step)
    base = {"openshift_cluster_name": cluster}
    for namespace in ("openshift-etcd", "openshift-kube-apiserver", "openshift-ovn-kubernetes"):
        for pod in range(2):
            labels = {**base, "namespace": namespace, "pod": f"{namespace[10:]}-{pod}", "container": "main", "name": f"k8s_{pod}"}
            rate, total, cpu = rng.uniform(0.2, 1.5), 0.0, []
            for _ in times:
                total += rate * step * rng.uniform(0.6, 1.4)
                cpu.append(total)
            series.append(Series("container_cpu_usage_seconds_total", labels, list(zip(times, cpu, strict=False))))
            memory = rng.uniform(3e8, 2e9)
            series.append(Series("container_memory_working_set_bytes", labels,
                                 [(t, memory * rng.uniform(0.9, 1.1)) for t in times]))
    for master in range(3):
        node = f"master-{master}.{cluster}.internal"
        series.append(Series("kube_node_role", {**base, "node": node, "role": "master"}, [(t, 1.0) for t in times]))
        for mode, share in (("user", 0.9), ("system", 0.4), ("idle", 2.5)):
            counter, values = 0.0, []
            for _ in times:
                counter += share * step * rng.uniform(0.7, 1.3)
                values.append(counter)
            series.append(Series("node_cpu_seconds_total", {**base, "instance": node, "cpu": "0", "mode": mode},
                                 list(zip(times, values, strict=False))))
        total = 32 * 2**30
        series.append(Series("node_memory_MemTotal_bytes", {**base, "instance": node}, [(t, total) for t in times]))
        series.append(Series("node_memory_MemAvailable_bytes", {**base, "instance": node},
                             [(t, total * rng.uniform(0.4, 0.6)) for t in times]))
    return series
