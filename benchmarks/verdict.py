"""What a verdict costs: import time, and CPU per report at 50 runs of comparable history.

    python benchmarks/verdict.py [--history 50] [--reports 20] [--otava-python /tmp/otava-venv/bin/python]

A report with the default comparison rule's numbers for one job (Ready P99, P50, elapsed) and six
control-plane namespaces (podCPU and podMemory, avg and max): 27 judged numbers, each judged
against 50 comparable runs with +-3% noise; half the reports regress one number by 25%. Measured:

- ``import consumer.verdict`` in a fresh interpreter that has the Elasticsearch client loaded (as
  the consumer has anyway): numpy and the verdict's modules, best of 3;
- CPU (process time) of :func:`consumer.verdict.judge` per report, and of decoding the history's
  search response (what the client parses), per report;
- with ``--otava-python``, an interpreter where ``apache-otava`` is installed: its import time and
  the CPU of ``otava.analysis.compute_change_points`` on the very same series, and whether it finds
  the same change points.

Measurements on this 2-core machine while other work loaded it (load average 6; 2026-11, Python
3.11, numpy 2.4), several runs: import 0.14-0.4 s; judge 17-37 ms of CPU per report (0.6-1.4 ms
per number, the change points about 0.7 ms of it), decoding the history 2-3 ms: within the 50 ms
budget. apache-otava 0.8 under the same load: import 1.1-1.6 s, 1.3-2.0 ms of CPU per number for
the change points alone (34-55 ms per report), and the same change points on all 540 series.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NAMESPACES = ("openshift-etcd", "openshift-kube-apiserver", "openshift-apiserver", "openshift-kube-controller-manager",
              "openshift-kube-scheduler", "openshift-ovn-kubernetes")


def report(uuid: str, start: datetime, rng: random.Random, worse: float = 1.0) -> dict:
    def noisy(base: float) -> float:
        return base * (1 + rng.uniform(-0.03, 0.03))

    metrics = []
    for name, base in (("podCPU", 0.8), ("podMemory", 2.0e9)):
        for namespace in NAMESPACES:
            avg = noisy(base)
            metrics.append({"name": name, "profile": "control-plane", "status": "ok", "unit": "cores",
                            "labels": {"namespace": namespace}, "avg": avg, "max": noisy(2 * base), "samples": 190})
    return {"uuid": uuid, "benchmark": "node-density", "job_status": "success", "start_date": start.isoformat(),
            "openshift_platform": "AWS", "worker_count": 24,
            "jobs": [{"name": "node-density", "phase": "job", "elapsed_s": noisy(1800),
                      "latency_ms": {"Ready": {"P99": noisy(4000) * worse, "P50": noisy(1500)}}},
                     {"name": "garbage-collection", "phase": "gc", "elapsed_s": 30}],
            "metrics": metrics}


def import_time(python: str, module: str, preload: str = "") -> float:
    """Best of 3: seconds to import ``module`` in a fresh interpreter (after ``preload``, untimed)."""
    code = f"{preload}\nimport time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    root = str(Path(__file__).resolve().parent.parent)
    return min(float(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                                    env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"}).stdout) for _ in range(3))


OTAVA = """
import json, sys, time
started = time.perf_counter()
from otava.analysis import compute_change_points
imported = time.perf_counter() - started
series = json.load(sys.stdin)
cpu = time.process_time()
found = [[int(point.index) for point in compute_change_points(values, window_len=50, max_pvalue=0.001)[0]]
         for values in series]
print(json.dumps({"import_s": imported, "cpu_s": time.process_time() - cpu, "found": found}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--otava-python", help="a Python with apache-otava installed, to compare with")
    args = parser.parse_args()

    from consumer.comparisons import load_rules, numbers_of, rule_for, values_of
    from consumer.edivisive import change_points
    from consumer.verdict import judge

    rule = rule_for("node-density", load_rules())
    assert rule is not None
    rng = random.Random(7)
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    cases = []
    for n in range(args.reports):
        history = [report(f"r{n}-{i}", now - timedelta(hours=args.history + 1 - i), rng) for i in range(args.history)]
        current = report(f"r{n}-now", now, rng, worse=1.25 if n % 2 else 1.0)
        response = json.dumps({"hits": {"hits": [{"_source": run} for run in reversed(history)]}}).encode()
        cases.append((current, history, response))
    numbers = len(numbers_of(cases[0][0], rule))

    started = time.process_time()
    verdicts = [judge(current, history, [], rule) for current, history, _ in cases]
    judge_ms = (time.process_time() - started) / len(cases) * 1000
    started = time.process_time()
    for _, _, response in cases:
        json.loads(response)
    decode_ms = (time.process_time() - started) / len(cases) * 1000
    regressions = sum(verdict["status"] == "regression" for verdict in verdicts)

    print(f"{numbers} judged numbers per report, {args.history} runs of history, {len(cases)} reports "
          f"({regressions} regressions found, {len(cases) // 2} made)")
    # What the consumer has loaded anyway (the Elasticsearch client, the report) is not the verdict's.
    preload = "import consumer.elastic, consumer.report, consumer.sink"
    print(f"import consumer.verdict:   {import_time(sys.executable, 'consumer.verdict', preload) * 1000:7.0f} ms "
          "(beyond what the consumer imports anyway; numpy included)")
    print(f"judge, CPU per report:     {judge_ms:7.1f} ms ({judge_ms / numbers:.2f} ms per number)")
    print(f"history decode per report: {decode_ms:7.1f} ms")
    print(f"total per report:          {judge_ms + decode_ms:7.1f} ms (budget 50 ms)")

    if args.otava_python:
        series = []
        for current, history, _ in cases:
            mine = numbers_of(current, rule)
            theirs = [values_of(run, rule) for run in history]
            series += [[found[name] for found in theirs] + [number.value] for name, number in mine.items()]
        started = time.process_time()
        ours = [[point.index for point in change_points(values)] for values in series]
        ours_ms = (time.process_time() - started) / len(cases) * 1000
        result = json.loads(subprocess.run([args.otava_python, "-c", OTAVA], input=json.dumps(series), text=True,
                                           capture_output=True, check=True).stdout)
        same = sum(a == b for a, b in zip(ours, result["found"], strict=False))
        print(f"consumer.edivisive, CPU per report (change points only): {ours_ms:.1f} ms "
              f"({ours_ms * len(cases) / len(series):.2f} ms per number)")
        print(f"apache-otava import:       {result['import_s'] * 1000:7.0f} ms")
        print(f"apache-otava, CPU per report (change points only): {result['cpu_s'] / len(cases) * 1000:.1f} ms "
              f"({result['cpu_s'] / len(series) * 1000:.2f} ms per number)")
        print(f"same change points as apache-otava: {same} of {len(series)} series")


if __name__ == "__main__":
    main()
