"""The performance benchmark keeps working: benchmarks/perf.py at its smoke size, as a user runs it.

It times nothing here (CI machines vary); it checks that every scenario ran and printed its row,
and that the product's numbers equal the original method's on the same runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from consumer.settings import Settings
from tests.support.services import REPO, external


@pytest.mark.timeout(600)
def test_the_benchmark_runs_every_scenario_at_its_smoke_size(service_settings: Settings):
    if external():
        pytest.skip("starts a Prometheus of its own next to the local servers")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "perf.py"), "--smoke"],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr[-5000:] + result.stdout[-3000:]
    table = result.stdout[result.stdout.index("| scenario |"):]
    for row in ("rebuild 24 runs over 4 clusters, loopback: runs/s", "through the proxy (50 ms round trip): runs/s",
                "CPU per run, ms", "Prometheus CPU per run, ms", "live, 5 finished runs/s for 4 s, loopback",
                "live, 5 finished runs/s for 4 s, through the proxy", "2,000 started events through the loop",
                "consumer RSS over them, MB"):
        assert row in table, row
    fidelity = re.search(r"(\d+) series of (\d+) runs compared: largest relative difference of avg/max (\S+), "
                         r"sample counts different: (\d+), series missing: (\d+)", table)
    assert fidelity is not None, table
    series, runs, difference, counts, missing = fidelity.groups()
    assert int(series) > 100 and int(runs) == 6
    assert float(difference) < 1e-9 and (counts, missing) == ("0", "0")
