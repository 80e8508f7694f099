"""The hooks install alone: a wheel of the project, installed without extras into a fresh venv,
gives a working `report-hook` and none of the consumer's stack; `report-consumer` says which extra
it needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.metadata import snake_doc

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=600, **kwargs)


def test_the_hooks_install_alone_and_the_consumer_names_its_extra(tmp_path: Path):
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path / "dist", REPO)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("perf_reports-*.whl")

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr[-3000:]

    packages = {line.split("==")[0].lower() for line in run(venv / "bin" / "python", "-m", "pip", "freeze").stdout.split()}
    assert {"aiokafka", "orjson"} <= packages
    assert not packages & {"elasticsearch", "opensearch-py", "aiohttp", "tenacity", "pyyaml", "numpy"}, packages

    helped = run(venv / "bin" / "report-hook", "--help")
    assert helped.returncode == 0 and "publish" in helped.stdout
    document = tmp_path / "doc.json"
    document.write_text(json.dumps(snake_doc(start_date="2024-05-02T10:00:00Z", end_date="2024-05-02T10:40:00Z")))
    dry = run(venv / "bin" / "report-hook", "publish", "--dry-run", document)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["value"]["run"]["uuid"] == snake_doc()["uuid"]

    consumer = run(venv / "bin" / "report-consumer", "--help")
    assert consumer.returncode == 2
    assert "perf-reports[consumer]" in consumer.stderr and "Traceback" not in consumer.stderr
