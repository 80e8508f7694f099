"""Time series into Prometheus, from plain Python data."""

from __future__ import annotations

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
    binary = shutil.which("prometheus")
    if binary is None:
        services("up", "prometheus")  # installs it
        binary = shutil.which("prometheus")
    assert binary is not None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (folder / "web.yml").write_text(f"basic_auth_users:\n  {BASIC_AUTH_USER}: {_BASIC_AUTH_HASH}\n")
    with open(folder / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={REPO / 'scripts' / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={folder / 'web.yml'}"],
            stdout=log, stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, folder / "prometheus.log")
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    pair = base64.b64encode(f"{BASIC_AUTH_USER}:{BASIC_AUTH_PASSWORD}".encode()).decode()
    request = urllib.request.Request(f"{url}/-/ready", headers={"Authorization": f"Basic {pair}"})
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
