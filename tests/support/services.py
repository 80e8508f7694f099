"""The local servers, through the same script the README and CI use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "services"


def services(*args: str) -> str:
    if external():
        import pytest

        pytest.skip("stops or loads the native servers; not available with PERF_REPORTS_EXTERNAL_SERVICES=1")
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/services {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def service_env() -> dict[str, str]:
    """The settings `scripts/services env` prints, as a dict (not applied to os.environ)."""
    env = {}
    for line in services("env").splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def external() -> bool:
    """PERF_REPORTS_EXTERNAL_SERVICES=1: the servers are already running (e.g. docker compose),
    reached through the environment's own settings; the tests then start and stop nothing."""
    return os.environ.get("PERF_REPORTS_EXTERNAL_SERVICES") == "1"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections to it are refused at once)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def store() -> str:
    """Which store the tests run against: ``elasticsearch`` (default) or ``opensearch``
    (PERF_REPORTS_STORE=opensearch)."""
    return os.environ.get("PERF_REPORTS_STORE", "elasticsearch")
