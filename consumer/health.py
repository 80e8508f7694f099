"""`report-consumer run --http-port N`: /healthz, /readyz and /metrics, for a process manager.

- ``/healthz`` (liveness): 200 while the process can do its work. 503 only when the consume loop has
  not polled for :data:`STALL_S` seconds although Kafka answers: the loop is stuck for a reason of
  its own, and restarting the process is the cure. A loop held up by Kafka being away is waiting,
  not stuck (a restart would not help), so it stays alive.
- ``/readyz`` (readiness): 200 once the process is in its group and polling, and Elasticsearch and
  Thanos answer: no outage is recorded (runs waiting for a server) and the last probe of each server
  succeeded. The probes (:data:`PROBE_EVERY_S`) let an idle consumer notice an outage too. 503
  otherwise, with a JSON body that says, per server, what is not ready.
- ``/metrics``: :meth:`consumer.telemetry.Telemetry.exposition`.

The rules are pure functions of a :class:`~consumer.telemetry.Telemetry` and the time, so they are
tested without a server; :func:`serving` is the I/O around them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
from aiohttp import web

from consumer.elastic import connect
from consumer.preflight import Fatal
from consumer.retry import RetryPolicy
from consumer.settings import Settings
from consumer.telemetry import Telemetry
from consumer.thanos import Thanos
from producer_hooks.kafka_check import check_connection
from producer_hooks.redaction import Redactor

log = logging.getLogger(__name__)

PROBE_EVERY_S = 3.0  # with the timeout below, an outage shows within 10 s even when a server hangs
PROBE_TIMEOUT_S = 5.0
# The loop polls at least once a second; a poll older than this means it is not consuming now.
POLL_STALE_S = 15.0
# Liveness: a loop that has not polled for this long while Kafka answers is stuck.
STALL_S = 120.0
# A probe answer older than this says nothing about now (the prober itself is stuck).
PROBE_STALE_S = 30.0

KAFKA, ELASTICSEARCH, THANOS = "Kafka", "Elasticsearch", "Thanos"


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def _probe_check(telemetry: Telemetry, server: str, now: float) -> Check:
    if server in telemetry.in_outage():
        return Check(False, f"runs are waiting for {server} (outage in progress)")
    probe = telemetry.probes.get(server)
    if probe is None:
        return Check(False, "not probed yet")
    if now - probe.at > PROBE_STALE_S:
        return Check(False, f"last probed {now - probe.at:.0f} s ago")
    return Check(probe.ok, probe.detail)


def readiness(telemetry: Telemetry, now: float) -> dict[str, Check]:
    """Per server, whether the process is ready as far as it is concerned."""
    kafka = _probe_check(telemetry, KAFKA, now)
    if telemetry.phase != "consuming":
        kafka = Check(False, telemetry.phase)
    elif telemetry.assignment is None:
        kafka = Check(False, "joining the consumer group")
    elif telemetry.polled_at is None or now - telemetry.polled_at > POLL_STALE_S:
        kafka = Check(False, "not polling" if telemetry.polled_at is None
                      else f"last polled {now - telemetry.polled_at:.0f} s ago")
    elif kafka.ok:
        count = len(telemetry.assignment)
        kafka = Check(True, f"{count} partitions assigned" if count
                      else "in the group, no partition assigned (more members than partitions)")
    return {KAFKA: kafka, ELASTICSEARCH: _probe_check(telemetry, ELASTICSEARCH, now),
            THANOS: _probe_check(telemetry, THANOS, now)}


def liveness(telemetry: Telemetry, now: float) -> Check:
    """Whether the process should be left running (see the module's docstring)."""
    if telemetry.phase != "consuming":
        return Check(True, telemetry.phase)
    since = now - (telemetry.polled_at if telemetry.polled_at is not None else now)
    if since <= STALL_S:
        return Check(True, "consuming")
    kafka = telemetry.probes.get(KAFKA)
    if kafka is not None and not kafka.ok:
        return Check(True, f"waiting for Kafka (last polled {since:.0f} s ago)")
    return Check(False, f"the consume loop has not polled for {since:.0f} s although Kafka answers")


# -- probes ----------------------------------------------------------------------------------------


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


async def _probe(telemetry: Telemetry, server: str, attempt: Callable[[], Awaitable[str]], redact: Redactor) -> None:
    try:
        detail = await asyncio.wait_for(attempt(), PROBE_TIMEOUT_S)
    except asyncio.CancelledError:
        raise
    except asyncio.TimeoutError:
        ok, detail = False, f"no answer within {PROBE_TIMEOUT_S:g} s"
    except Exception as err:  # noqa: BLE001 - whatever the reason, the server is not usable now
        ok, detail = False, f"failed: {redact(_describe(err))}"
    else:
        ok = True
    was = telemetry.probes.get(server)
    if was is not None and was.ok != ok:
        log.info("%s %s", server, "answers again" if ok else f"does not answer the health probe ({detail})")
    telemetry.probed(server, ok, detail)


async def _probe_forever(settings: Settings, telemetry: Telemetry) -> None:
    redact = Redactor.of(settings.secrets())
    quick = dataclasses.replace(settings.thanos, timeout_s=min(settings.thanos.timeout_s, PROBE_TIMEOUT_S))
    es = connect(dataclasses.replace(settings.es, timeout_s=min(settings.es.timeout_s, PROBE_TIMEOUT_S)))
    try:
        async with Thanos(quick, RetryPolicy(attempts=1)) as thanos:
            async def kafka() -> str:
                await check_connection(settings.kafka, timeout_s=PROBE_TIMEOUT_S)
                return "answers"

            async def elasticsearch() -> str:
                # A request `run` itself has the rights for; `GET /` may need others (and the
                # minimal distribution the tests run does not serve it).
                exists = await es.indices.exists(index=settings.report_index)
                return "answers" if exists else f"answers; index {settings.report_index} missing"

            async def thanos_() -> str:
                await thanos.instant("vector(1)", datetime.now(timezone.utc))
                return "answers"

            async def every(server: str, attempt: Callable[[], Awaitable[str]]) -> None:
                while True:  # each server on its own: one that hangs delays no other's verdict
                    await _probe(telemetry, server, attempt, redact)
                    await asyncio.sleep(PROBE_EVERY_S)

            await asyncio.gather(every(KAFKA, kafka), every(ELASTICSEARCH, elasticsearch), every(THANOS, thanos_))
    finally:
        await es.close()


# -- the server ------------------------------------------------------------------------------------


def _json(body: dict, ok: bool) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=200 if ok else 503, content_type="application/json")


def application(telemetry: Telemetry) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        check = liveness(telemetry, telemetry.now())
        return _json({"alive": check.ok, "detail": check.detail}, check.ok)

    async def readyz(request: web.Request) -> web.Response:
        checks = readiness(telemetry, telemetry.now())
        ready = all(check.ok for check in checks.values())
        return _json({"ready": ready, "phase": telemetry.phase,
                      "checks": {server.lower(): dataclasses.asdict(check) for server, check in checks.items()}}, ready)

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = telemetry.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


@asynccontextmanager
async def serving(settings: Settings, telemetry: Telemetry) -> AsyncIterator[None]:
    """Serve the endpoints on ``HTTP_HOST:HTTP_PORT`` and probe the servers, for the duration;
    nothing at all when the port is 0. A port that cannot be bound is :class:`Fatal`."""
    if not settings.http_port:
        yield
        return
    runner = web.AppRunner(application(telemetry), access_log=None)  # a scrape a second is not news
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        try:
            await site.start()
        except OSError as err:
            reason = os.strerror(err.errno).lower() if err.errno else str(err)
            raise Fatal(f"cannot serve HTTP on {settings.http_host}:{settings.http_port} ({reason}); "
                        "choose another HTTP_PORT (or --http-port) or HTTP_HOST") from None
        log.info("serving /healthz, /readyz and /metrics on http://%s:%d", settings.http_host, settings.http_port)
        probes = asyncio.create_task(_probe_forever(settings, telemetry))
        try:
            yield
        finally:
            probes.cancel()
            await asyncio.gather(probes, return_exceptions=True)
    finally:
        await runner.cleanup()
