"""Summarising a run's window: client-side (chunked query_range) vs server-side (subquery) aggregation.

    python benchmarks/thanos_window.py [--repeats 5] [--series 10,100] [--hours 1,6,40]

Starts a private Prometheus (``prometheus`` and ``promtool`` on PATH) on a free port with a data
folder in a temporary directory, loads counters for 100 series over 40 h at 10 s, and for each
window length and series count times, in the same process, alternating:

- client: ``Thanos.summarize(Q, start, end)``: ``query_range`` in chunks of <= 11,000 points,
  avg/max/count folded client-side (the product's path);
- server: ``sum_over_time``, ``max_over_time`` and ``count_over_time`` of ``(Q')[w:10s]`` in one
  instant query, ``Q'`` shifted onto the window's own grid (benchmarks/promql_shift.py).

with ``Q = irate(bench_cpu_seconds_total{...}[2m])``. It prints the median of each, the ratio
server/client, and whether the per-series values agree, for a window starting on a multiple of the
step and for one starting 3 s later.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import promql_shift  # noqa: E402
from servers import PrivatePrometheus  # noqa: E402

from consumer.profiles import render  # noqa: E402
from consumer.retry import RetryPolicy  # noqa: E402
from consumer.settings import ThanosSettings  # noqa: E402
from consumer.thanos import Thanos, to_ms  # noqa: E402

STEP = 10
LABEL = "openshift_cluster_name"
CLUSTER = "bench"
MAX_SERIES = 100
MAX_HOURS = 40


def write_openmetrics(path: Path, start: int, end: int) -> None:
    """Counters with random increments, from five minutes before ``start`` (irate needs history)."""
    rng = random.Random(1)
    with path.open("w") as out:
        for i in range(MAX_SERIES):
            labels = f'{LABEL}="{CLUSTER}",pod="pod-{i:03d}",first10="{"yes" if i < 10 else "no"}"'
            value = 0.0
            lines = []
            for t in range(start - 300, end + 1, STEP):
                value += rng.uniform(0, 20)
                lines.append(f"bench_cpu_seconds_total{{{labels}}} {value:.3f} {t}\n")
            out.writelines(lines)
        out.write("# EOF\n")


Summary = dict[str, tuple[float, float, int]]  # pod -> (avg, max, count)


async def client_side(thanos: Thanos, query: str, start: datetime, end: datetime) -> Summary:
    result = await thanos.summarize(query, start, end)
    return {s.labels["pod"]: (s.avg, s.max, s.samples) for s in result.series}


async def server_side(thanos: Thanos, query: str, start: datetime, end: datetime) -> Summary:
    """sum/max/count_over_time of the query shifted onto the window's own grid, in one request."""
    grid = promql_shift.grid(to_ms(start), to_ms(end), STEP * 1000)
    expression = promql_shift.window_sum_max_count(query, [grid], at=False)
    rows = await thanos.instant(expression, datetime.fromtimestamp(grid.eval_ms / 1000, tz=timezone.utc))
    stats: dict[str, dict[str, float]] = {}
    for labels, value in rows:
        stats.setdefault(labels["pod"], {})[labels[promql_shift.STAT_LABEL][0]] = value
    return {pod: (s["s"] / s["c"], s["m"], int(s["c"])) for pod, s in stats.items()}


def avg_gap(a: Summary, b: Summary) -> float:
    """The largest relative difference of a series' average between two summaries."""
    return max(abs(a[k][0] - b[k][0]) / abs(a[k][0]) for k in a.keys() & b.keys())


def agree(a: Summary, b: Summary) -> bool:
    return a.keys() == b.keys() and all(
        a[k][2] == b[k][2] and math.isclose(a[k][0], b[k][0], rel_tol=1e-9) and math.isclose(a[k][1], b[k][1], rel_tol=1e-9)
        for k in a
    )


async def measure(url: str, base: int, hours: list[int], series: list[int], repeats: int) -> list[str]:
    rows = [f"{'window':>7} {'series':>6} {'client s':>9} {'server s':>9} {'server/client':>13}  agree(aligned)  start+3s: agree, max avg gap"]
    settings = ThanosSettings(url=url, timeout_s=300)
    async with Thanos(settings, RetryPolicy(attempts=1)) as thanos:
        for h in hours:
            for n in series:
                selector = '$cluster,first10="yes"' if n == 10 else "$cluster"
                query = render(f"irate(bench_cpu_seconds_total{{{selector}}}[2m])", LABEL, CLUSTER)
                start = datetime.fromtimestamp(base, tz=timezone.utc)
                end = datetime.fromtimestamp(base + h * 3600, tz=timezone.utc)
                client_times, server_times = [], []
                for _ in range(repeats):  # alternate so drift in the machine's load hits both alike
                    t = time.perf_counter()
                    client = await client_side(thanos, query, start, end)
                    client_times.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    server = await server_side(thanos, query, start, end)
                    server_times.append(time.perf_counter() - t)
                assert len(client) == n, (len(client), n)
                shifted = [datetime.fromtimestamp(base + 3 + x, tz=timezone.utc) for x in (0, h * 3600)]
                pair = await client_side(thanos, query, *shifted), await server_side(thanos, query, *shifted)
                c, s = statistics.median(client_times), statistics.median(server_times)
                rows.append(f"{h:>6}h {n:>6} {c:>9.3f} {s:>9.3f} {s / c:>13.2f}  {str(agree(client, server)):>14}  {str(agree(*pair)):>15}, {avg_gap(*pair):.1%}")
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--series", default="10,100", help="comma-separated, each 10 or 100")
    parser.add_argument("--hours", default="1,6,40", help="comma-separated window lengths, at most 40")
    args = parser.parse_args()
    hours = [int(h) for h in args.hours.split(",")]
    series = [int(n) for n in args.series.split(",")]
    if max(hours) > MAX_HOURS or not set(series) <= {10, MAX_SERIES}:
        parser.error(f"windows up to {MAX_HOURS} h, series counts 10 or {MAX_SERIES}")
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        sys.exit("thanos_window: prometheus and promtool must be on PATH (apt-get install prometheus)")
    base = (int(time.time()) - 3 * 86400) // 3600 * 3600  # on the step, in the past
    with tempfile.TemporaryDirectory(prefix="thanos-window-") as folder:
        server = PrivatePrometheus(Path(folder))
        openmetrics = Path(folder) / "series.om"
        t = time.perf_counter()
        write_openmetrics(openmetrics, base, base + MAX_HOURS * 3600)
        try:
            server.load_and_start(openmetrics)
            os.unlink(openmetrics)
            print(f"loaded {MAX_SERIES} series x {MAX_HOURS} h at {STEP} s in {time.perf_counter() - t:.0f} s; "
                  f"median of {args.repeats}, Prometheus {server.url}", flush=True)
            rows = asyncio.run(measure(server.url, base, hours, series, args.repeats))
        finally:
            server.stop()
    print("\n".join(["", *rows]))
    print("\nThe choice these numbers inform is recorded at the top of consumer/thanos.py.")


if __name__ == "__main__":
    main()
