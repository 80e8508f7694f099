"""Servers of the benchmarks' own: a private Prometheus, and the delay proxy in a process of its own."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivatePrometheus:
    """``prometheus`` on a free loopback port, its data under ``folder / "data"``.

    Blocks are never compacted (2 h minimum and maximum block length): compaction would run in the
    background in the middle of a measurement.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def load_and_start(self, openmetrics: Path) -> None:
        data = self.folder / "data"
        data.mkdir()
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data)],
                       check=True, capture_output=True)
        self.start()

    def start(self) -> None:
        config = self.folder / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=3650d",
             "--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h"],
            stdout=subprocess.DEVNULL, stderr=(self.folder / "prometheus.log").open("w"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"private Prometheus did not start; see {self.folder / 'prometheus.log'}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


def start_delay_proxy(delay_ms: float, targets: list[int]) -> tuple[subprocess.Popen, list[int]]:
    """benchmarks/delay_proxy.py in a process of its own (its CPU is not the measured process's);
    the process and the port standing for each target."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("delay_proxy.py")), "--delay-ms", str(delay_ms),
         *map(str, targets)], stdout=subprocess.PIPE, text=True)
    ports = []
    for _ in targets:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the delay proxy did not start")
        ports.append(int(line.split("->")[1]))
    return process, ports
