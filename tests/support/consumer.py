"""The consumer as users run it: `report-consumer run` in a process of its own, configured by
environment variables, stopped by a signal (or killed)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from elasticsearch import AsyncElasticsearch

from consumer.settings import Settings


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes `report-consumer` read exactly ``settings``."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "RUNS_TOPIC": settings.kafka.topic,
        "REPORT_GROUP": settings.group,
        "DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "ES_SERVER": settings.es.url,
        "STORE": settings.es.store or "auto",
        "THANOS_URL": settings.thanos.url,
        "REPORT_INDEX": settings.report_index,
        "RESULTS_INDEX": settings.results_index,
        "METADATA_INDEX": settings.metadata_index,
        "RESULTS_DEADLINE": str(settings.results_deadline_s),
        "RETRY_ATTEMPTS": str(settings.retry_attempts),
        "RETRY_MAX_WAIT": str(settings.retry_max_wait_s),
        "COMMIT_INTERVAL": str(settings.commit_interval_s),
        "DRAIN_TIMEOUT": str(settings.drain_timeout_s),
        "MAX_IN_FLIGHT": str(settings.max_in_flight),
        "THANOS_STEP": str(settings.thanos.step_s),
    }
    if settings.grafana_url:
        env["GRAFANA_URL"] = settings.grafana_url
    if settings.profile_dir:
        env["PROFILE_DIR"] = str(settings.profile_dir)
    if settings.comparison_dir:
        env["COMPARISON_DIR"] = str(settings.comparison_dir)
    env["BENCHMARK_PROFILES"] = ";".join(f"{glob}={'+'.join(names)}" for glob, names in settings.benchmark_profiles)
    env.update(extra)
    return env


class ConsumerProcess:
    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    async def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as a process manager would; returns the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def run_cli(settings: Settings, *args: str, timeout: float = 300) -> tuple[int, str]:
    """`report-consumer ARGS` as a user runs it, to the end; its exit code and standard output
    (standard error is printed when it fails, for pytest to show)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer.cli", *args, env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    if process.returncode != 0:
        print(err.decode()[-5000:])
    return process.returncode, out.decode()


@dataclass(frozen=True)
class Completed:
    code: int
    out: str
    err: str


async def command(module: str, *args: str, env: dict[str, str], timeout: float = 120, stdin: bytes | None = None) -> Completed:
    """``python -m MODULE ARGS`` (``consumer.cli``, ``producer_hooks.cli``) with exactly ``env``, to
    the end: everything a user would see of it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


@asynccontextmanager
async def running_consumer(settings: Settings, log: Path, *args: str, run_args: Sequence[str] = (), **extra_env: str):
    """`report-consumer ARGS run RUN_ARGS` in a subprocess; killed at exit if still running."""
    with open(log, "ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "consumer.cli", *args, "run", *run_args,
            env=settings_env(settings, **extra_env), stdout=out, stderr=out,
        )
    consumer = ConsumerProcess(process, log)
    try:
        yield consumer
    finally:
        await consumer.kill()


async def wait_for_reports(es: AsyncElasticsearch, index: str, uuids: set[str], timeout: float,
                           consumer: ConsumerProcess | None = None, at_least: int | None = None) -> dict[str, dict]:
    """The reports of ``uuids`` (each with its ``_version``), once ``at_least`` of them (default: all)
    exist, or fail with what is missing after ``timeout`` seconds."""
    wanted = len(uuids) if at_least is None else at_least
    deadline = time.monotonic() + timeout
    found: dict[str, dict] = {}
    while time.monotonic() < deadline:
        if await es.indices.exists(index=index):
            response = await es.mget(index=index, ids=sorted(uuids), realtime=True)
            found = {doc["_id"]: {**doc["_source"], "_version": doc["_version"]} for doc in response["docs"] if doc.get("found")}
            if len(found) >= wanted:
                return found
        if consumer is not None and consumer.process.returncode is not None:
            raise AssertionError(f"consumer exited with {consumer.process.returncode}:\n{consumer.logs()[-5000:]}")
        await asyncio.sleep(0.5)
    logs = consumer.logs()[-5000:] if consumer else ""
    raise AssertionError(f"reports missing after {timeout} s: {sorted(uuids - set(found))}\n{logs}")
