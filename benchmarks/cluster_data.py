"""The data the performance benchmark runs on: OpenShift clusters' series, and runs on them.

Every query of the control-plane profile finds series here (about 380 per cluster): containers of
the openshift-* namespaces (CPU, working set, RSS), nodes (CPU by mode, memory, roles), the API
server's request counts and latency histograms, etcd's histograms and leader changes. They carry
the external labels a cluster's series carry in Thanos. Samples are 30 s apart (a typical scrape
interval); the profile is evaluated at a 10 s step, as the product and the original job do.

Runs start at any millisecond (as real ones do, so a window's grid is never on the epoch grid),
last 10-40 minutes (70 %), 40-120 minutes (26 %), 2-6 hours (4 %), and 1 % of them 36 hours, and
are spread over the span the series cover. Runs of one cluster overlap in time here, unlike real
ones; no method measured exploits that (each run's window is evaluated on its own grid).
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LABEL = "openshift_cluster_name"
SCRAPE_S = 30
HOUR = 3600

# namespace -> (pods, containers per pod); the container "POD" (the pause container) of each pod
# is there too: the profile's queries must leave it out.
NAMESPACES = {
    "openshift-etcd": (["etcd-master-0", "etcd-master-1", "etcd-master-2"], ["etcd", "etcd-metrics"]),
    "openshift-kube-apiserver": (["kube-apiserver-master-0", "kube-apiserver-master-1", "kube-apiserver-master-2"],
                                 ["kube-apiserver", "kube-apiserver-check-endpoints"]),
    "openshift-apiserver": (["apiserver-6d9f-a", "apiserver-6d9f-b", "apiserver-6d9f-c"], ["openshift-apiserver"]),
    "openshift-kube-controller-manager": (["kube-controller-manager-master-0", "kube-controller-manager-master-1",
                                           "kube-controller-manager-master-2"], ["kube-controller-manager"]),
    "openshift-ovn-kubernetes": (["ovnkube-control-plane-7c-a", "ovnkube-control-plane-7c-b", "ovnkube-node-a",
                                  "ovnkube-node-b"], ["ovnkube-controller", "kube-rbac-proxy"]),
    "openshift-monitoring": (["prometheus-k8s-0", "prometheus-k8s-1"], ["prometheus"]),
    "openshift-ingress": (["router-default-a", "router-default-b"], ["router"]),
    "openshift-dns": (["dns-default-a", "dns-default-b", "dns-default-c"], ["dns"]),
}
MASTERS = 3
WORKERS = 3
CPUS = 2
MODES = ("idle", "user", "system", "iowait")
RESOURCES = ("pods", "configmaps", "secrets")
VERBS = ("GET", "LIST", "POST", "PUT", "DELETE", "PATCH")
LATENCY_BUCKETS = (0.1, 0.2, 0.4, 1.0, 2.0, "+Inf")
ETCD_BUCKETS = (0.002, 0.004, 0.008, 0.016, 0.064, "+Inf")


@dataclass(frozen=True)
class Size:
    runs: int
    clusters: int
    span_h: float  # how long each cluster's series go back
    long_runs: int  # runs of 36 h among them (the rest: minutes to a few hours)
    long_h: float = 36.0


FULL = Size(runs=1000, clusters=4, span_h=40, long_runs=10)
SMOKE = Size(runs=24, clusters=4, span_h=3, long_runs=1, long_h=2.5)


@dataclass(frozen=True)
class Run:
    uuid: str
    cluster: str
    benchmark: str
    start_ms: int
    end_ms: int


def _labels(**labels: str) -> str:
    return ",".join(f'{key}="{value}"' for key, value in labels.items())


def _families(cluster: str) -> Iterator[tuple[str, str, str, float]]:
    """(metric, labels, kind, scale) of one cluster's series; kind: counter, gauge or bucket."""
    base = {LABEL: cluster, "openshift_platform": "AWS", "openshift_version": "4.17.3",
            "openshift_network_type": "OVNKubernetes"}
    for namespace, (pods, containers) in NAMESPACES.items():
        for pod in pods:
            for container in (*containers, "POD"):
                labels = _labels(**base, namespace=namespace, pod=pod, container=container, name=f"k8s_{container}")
                yield "container_cpu_usage_seconds_total", labels, "counter", 0.4
                yield "container_memory_working_set_bytes", labels, "gauge", 8e8
                yield "container_memory_rss", labels, "gauge", 6e8
    nodes = [(f"master-{i}.{cluster}.internal", "master") for i in range(MASTERS)]
    nodes += [(f"worker-{i}.{cluster}.internal", "worker") for i in range(WORKERS)]
    for node, role in nodes:
        yield "kube_node_role", _labels(**base, node=node, role=role), "constant", 1.0
        for cpu in range(CPUS):
            for mode in MODES:
                yield ("node_cpu_seconds_total", _labels(**base, instance=node, cpu=str(cpu), mode=mode),
                       "counter", 0.6 if mode == "idle" else 0.15)
        yield "node_memory_MemTotal_bytes", _labels(**base, instance=node), "constant", 32 * 2**30
        yield "node_memory_MemAvailable_bytes", _labels(**base, instance=node), "gauge", 16 * 2**30
    for resource in RESOURCES:
        for verb in (*VERBS, "WATCH"):
            for code in ("200", "404"):
                yield ("apiserver_request_total", _labels(**base, apiserver="kube-apiserver", resource=resource, verb=verb,
                                                          code=code, scope="namespace"), "counter", 5.0 if code == "200" else 0.1)
        for verb in VERBS:
            for bound in LATENCY_BUCKETS:
                yield ("apiserver_request_duration_seconds_bucket",
                       _labels(**base, apiserver="kube-apiserver", resource=resource, verb=verb, scope="namespace",
                               subresource="", le=str(bound)), "bucket", _share(bound, 0.25))
    for member in range(MASTERS):
        pod = f"etcd-master-{member}"
        for metric, scale in (("etcd_disk_backend_commit_duration_seconds_bucket", 0.008),
                              ("etcd_disk_wal_fsync_duration_seconds_bucket", 0.004),
                              ("etcd_network_peer_round_trip_time_seconds_bucket", 0.01)):
            for bound in ETCD_BUCKETS:
                yield metric, _labels(**base, pod=pod, le=str(bound)), "bucket", _share(bound, scale)
        yield "etcd_server_leader_changes_seen_total", _labels(**base, pod=pod), "counter", 0.0005


def _share(bound: float | str, typical: float) -> float:
    """The share of observations at or under ``bound`` (a rough log-normal around ``typical``)."""
    if bound == "+Inf":
        return 1.0
    ratio = float(bound) / typical
    return min(1.0, ratio / (1 + ratio))


BLOCK_S = 2 * HOUR  # promtool's block length: one file per block, so blocks never overlap


def load_blocks(data: Path, clusters: list[str], start_s: int, end_s: int, seed: int = 1) -> int:
    """Every cluster's series from ``start_s`` to ``end_s`` into TSDB blocks under ``data``,
    two hours of OpenMetrics text at a time; the number of samples."""
    rng = random.Random(seed)
    series = []  # [head, kind, scale, state]
    for metric in dict.fromkeys(m for m, *_ in _families("x")):  # families grouped, as OpenMetrics wants
        for cluster in clusters:
            for name, labels, kind, scale in _families(cluster):
                if name == metric:
                    state = rng.uniform(0, 1e4) if kind == "counter" else 0.0 if kind == "bucket" else scale * rng.uniform(0.5, 1.5)
                    series.append([f"{metric}{{{labels}}} ", kind, scale, state])
    samples = 0
    text = data.parent / "slice.om"
    first = start_s // SCRAPE_S * SCRAPE_S
    for block in range(start_s // BLOCK_S * BLOCK_S, end_s + 1, BLOCK_S):
        times = range(max(first, block), min(end_s, block + BLOCK_S - 1) + 1, SCRAPE_S)
        with text.open("w") as out:
            for one in series:
                head, kind, scale, state = one
                lines = []
                if kind == "counter":
                    for t in times:
                        state += scale * SCRAPE_S * rng.uniform(0.5, 1.5)
                        lines.append(f"{head}{state:.3f} {t}\n")
                elif kind == "bucket":  # cumulative counts: the same request stream, split by bucket
                    for t in times:
                        state += round(200 * scale * rng.uniform(0.8, 1.2))
                        lines.append(f"{head}{state:.0f} {t}\n")
                elif kind == "gauge":
                    lines.extend(f"{head}{state * rng.uniform(0.9, 1.1):.0f} {t}\n" for t in times)
                else:  # constant
                    lines.extend(f"{head}{scale:.0f} {t}\n" for t in times)
                one[3] = state
                out.writelines(lines)
                samples += len(lines)
            out.write("# EOF\n")
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(text), str(data)],
                       check=True, capture_output=True)
    text.unlink()
    return samples


def make_runs(size: Size, clusters: list[str], span_start_s: int, span_end_s: int, tag: str,
              seed: int = 2) -> list[Run]:
    """``size.runs`` runs over ``clusters`` in turn, inside the span (10 minutes in: irate needs
    history), starting at random milliseconds; ``size.long_runs`` of them last ``size.long_h``."""
    rng = random.Random(seed)
    benchmarks = ("node-density", "cluster-density-v2", "node-density-cni")
    first_ms, last_ms = (span_start_s + 600) * 1000, span_end_s * 1000
    longest = min(size.long_h * HOUR * 1000, last_ms - first_ms)
    runs = []
    long_every = size.runs // size.long_runs if size.long_runs else 0
    for i in range(size.runs):
        if long_every and i % long_every == long_every // 2:
            duration = int(longest) - rng.randint(0, 60_000)
        else:
            pick = rng.random()  # most kube-burner runs take minutes; some hours
            minutes = rng.uniform(10, 40) if pick < 0.7 else rng.uniform(40, 120) if pick < 0.96 else rng.uniform(120, 360)
            duration = min(int(minutes * 60_000) + rng.randint(0, 999), int(longest))
        start = rng.randint(first_ms, last_ms - duration)
        runs.append(Run(f"{tag}-{i:05d}", clusters[i % len(clusters)], benchmarks[i % len(benchmarks)], start,
                        start + duration))
    return runs
