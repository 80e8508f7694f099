"""The consumer's /healthz, /readyz and /metrics, read as a process manager or a scraper reads them."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from .consumer import ConsumerProcess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def get(port: int, path: str) -> tuple[int, dict]:
    """GET http://127.0.0.1:PORT/PATH: status and JSON body; (0, {}) when nothing answers."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                return response.status, orjson.loads(await response.read())
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return 0, {}


async def scrape(port: int) -> Samples:
    """Every sample /metrics exposes, by (name, labels)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def wait_for_status(port: int, path: str, status: int, timeout: float,
                          consumer: ConsumerProcess | None = None) -> dict:
    """Poll PATH until it answers ``status``; its body. Fails with the last answer after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: tuple[int, dict] = (0, {})
    while time.monotonic() < deadline:
        last = await get(port, path)
        if last[0] == status:
            return last[1]
        if consumer is not None and consumer.process.returncode is not None:
            raise AssertionError(f"consumer exited with {consumer.process.returncode}:\n{consumer.logs()[-5000:]}")
        await asyncio.sleep(0.25)
    logs = consumer.logs()[-3000:] if consumer else ""
    raise AssertionError(f"{path} still answers {last} after {timeout} s, not {status}\n{logs}")
