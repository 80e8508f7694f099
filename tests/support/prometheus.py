"""Time series into Prometheus, from plain Python data; Prometheus servers of a test's own (one
that wants basic auth, one that scrapes the consumer), and asking them PromQL."""

from __future__ import annotations

import asyncio
import base64
import math
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .services import REPO, services


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)  # (unix seconds, value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def openmetrics(series: Iterable[Series]) -> str:
    """OpenMetrics text: samples of one metric family together, each series in time order."""
    families: dict[str, list[Series]] = defaultdict(list)
    for one in series:
        families[one.name].append(one)
    lines = []
    for name, members in families.items():
        for one in members:
            labels = ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(one.labels.items()))
            for timestamp, value in sorted(one.samples):
                lines.append(f"{name}{{{labels}}} {_number(value)} {timestamp:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def load_series(series: Iterable[Series]) -> None:
    """Load the series into the local Prometheus (TSDB blocks, then a restart: a few seconds).
    Load everything a test module needs at once."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "series.om"
        path.write_text(openmetrics(series))
        services("load-series", str(path))


# A user and password for a Prometheus that wants HTTP basic auth, and the bcrypt hash of the
# password its web configuration holds (bcrypt, cost 4).
BASIC_AUTH_USER = "metrics-reader"
BASIC_AUTH_PASSWORD = "basic-auth-Secret-4d"
_BASIC_AUTH_HASH = "$2b$04$2JN.tJipP/GRFxkBVtn8AuonWWEPb31NCCIFHbjCRDbMTiCSXn1aC"


@contextmanager
def prometheus_with_basic_auth(folder: Path) -> Iterator[str]:
    """A Prometheus of its own (empty, on a free port) that answers only requests carrying HTTP basic
    auth for :data:`BASIC_AUTH_USER`, as a Thanos behind a basic-auth proxy does. Yields its URL."""
    (folder / "web.yml").write_text(f"basic_auth_users:\n  {BASIC_AUTH_USER}: {_BASIC_AUTH_HASH}\n")
    pair = base64.b64encode(f"{BASIC_AUTH_USER}:{BASIC_AUTH_PASSWORD}".encode()).decode()
    with _prometheus(folder, REPO / "scripts" / "prometheus.yml", f"--web.config.file={folder / 'web.yml'}",
                     headers={"Authorization": f"Basic {pair}"}) as url:
        yield url


@contextmanager
def scraping_prometheus(folder: Path, targets: Iterable[str], job: str = "report-consumer",
                        interval_s: float = 1.0) -> Iterator[str]:
    """A Prometheus of its own (on a free port) that scrapes ``targets`` (``host:port``, path
    /metrics) every ``interval_s`` as job ``job``, as an operator's Prometheus scrapes the consumer.
    Yields its URL; query it with :func:`query`."""
    listed = ", ".join(f'"{target}"' for target in targets)
    config = folder / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: {interval_s:g}s\n  scrape_timeout: {interval_s:g}s\n"
                      f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{listed}]\n")
    with _prometheus(folder, config) as url:
        yield url


async def query(url: str, promql: str) -> dict[frozenset[tuple[str, str]], float]:
    """``promql`` evaluated now by the Prometheus at ``url``: value per series (labels as a frozenset)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/v1/query", params={"query": promql}) as response:
            body = await response.json()
    assert body["status"] == "success", body
    data = body["data"]
    if data["resultType"] == "scalar":
        return {frozenset(): float(data["result"][1])}
    return {frozenset(item["metric"].items()): float(item["value"][1]) for item in data["result"]}


async def query_until(url: str, expected: dict[str, float], timeout: float = 30) -> dict[str, float | None]:
    """Ask each PromQL expression of ``expected`` (each must give one series) until all give their
    value or ``timeout`` passes; returns what they gave last (None: no series), for the test to
    compare with ``expected``. Scrapes come once per interval, so values arrive in steps."""
    deadline = time.monotonic() + timeout
    while True:
        got: dict[str, float | None] = {}
        for promql in expected:
            values = list((await query(url, promql)).values())
            assert len(values) <= 1, f"{promql} gave {len(values)} series"
            got[promql] = values[0] if values else None
        if got == expected or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


@contextmanager
def _prometheus(folder: Path, config: Path, *args: str, headers: dict[str, str] | None = None) -> Iterator[str]:
    """The Debian ``prometheus`` binary on a free port with ``config``, data in ``folder``; its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        services("up", "prometheus")  # installs it
        binary = shutil.which("prometheus")
    assert binary is not None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(folder / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", *args],
            stdout=log, stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, folder / "prometheus.log", headers or {})
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _wait_ready(url: str, process: subprocess.Popen, log: Path, headers: dict[str, str]) -> None:
    request = urllib.request.Request(f"{url}/-/ready", headers=headers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"prometheus not ready after 60 s:\n{log.read_text()[-3000:]}")
