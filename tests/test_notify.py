"""Regression notifications: a real HTTP server receives the webhook once per regression, through
the pipeline every command uses; a replay of the same verdict sends nothing, a webhook that is down
never holds a report back."""

from __future__ import annotations

import dataclasses
import random
from contextlib import asynccontextmanager

from aiohttp import web

from consumer.pipeline import Pipeline
from consumer.settings import Settings
from consumer.sink import WriteOutcome
from producer_hooks.events import make_event
from producer_hooks.settings import Secret
from tests.support.es import index_docs
from tests.support.kubeburner import kube_burner_run
from tests.support.verdicts import P99, Levels, hours_ago, report_of, run_metadata, store


@asynccontextmanager
async def webhook(fail_first: int = 0):
    """A local webhook receiver on a free port: (its URL, the JSON bodies it accepted, all requests)."""
    accepted: list[dict] = []
    requests: list[dict] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        requests.append(body)
        if len(requests) <= fail_first:
            return web.Response(status=503, text="try later")
        accepted.append(body)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/services/T000/B000/token", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/services/T000/B000/token", accepted, requests
    finally:
        await runner.cleanup()


async def regressed_run(es, settings: Settings, uuid: str) -> dict:
    """A finished run whose kube-burner results are indexed, and 30 comparable runs before it with a
    Ready P99 25% lower: its report's verdict is a regression of P99 alone."""
    start = hours_ago(3)
    run = kube_burner_run(uuid, start, {"node-density": 600}, cluster="perf-verdicts")
    await index_docs(es, settings.results_index, run.docs)
    job = run.jobs[0]
    rng = random.Random(uuid)
    history = []
    for i in range(30):
        levels = Levels(job.latency["Ready"]["P99"] / 1.25, job.latency["Ready"]["P50"], float(job.elapsed), 0.8)
        noisy = Levels(*(value * (1 + rng.uniform(-0.03, 0.03)) for value in dataclasses.astuple(levels)))
        history.append(report_of(f"{uuid}-h{i:02d}", hours_ago(200 - i), noisy))
    await store(es, settings, history)
    return run_metadata(uuid, start)


async def test_a_regression_is_sent_once_retried_and_not_again_on_replay(es, settings: Settings, unique):
    doc = await regressed_run(es, settings, f"{unique}-run")
    async with webhook(fail_first=1) as (url, accepted, requests):
        notifying = dataclasses.replace(settings, webhook_url=Secret(url))
        async with Pipeline.open(notifying) as pipeline:
            outcome = await pipeline.process(make_event(doc))
        assert outcome.write is WriteOutcome.CREATED
        # Closing the pipeline waited for the notification: refused once (503), then delivered.
        assert len(requests) == 2 and len(accepted) == 1
        [body] = accepted
        assert isinstance(body["text"], str) and body["blocks"][0]["type"] == "header"
        assert doc["uuid"] in body["text"] and P99 in body["text"]
        assert [moved["name"] for moved in body["regressions"]] == [P99]
        assert body["links"]["cluster"].startswith("https://grafana.example.com/d/ocp-performance/")
        assert body["links"]["build"] == doc["build_url"]

        async with Pipeline.open(notifying) as pipeline:  # a replay: same event, same verdict
            outcome = await pipeline.process(make_event(doc))
        assert outcome.write is WriteOutcome.UNCHANGED
        assert len(requests) == 2 and len(accepted) == 1

    stored = (await es.get(index=settings.report_index, id=doc["uuid"]))["_source"]
    assert stored["verdict"]["status"] == "regression" and stored["verdict"]["regressions"] == [P99]
    record = (await es.get(index=settings.notifications_index, id=doc["uuid"]))["_source"]
    assert (record["status"], record["attempts"], record["verdict_fingerprint"]) == ("sent", 2, stored["verdict"]["fingerprint"])
    await es.indices.delete(index=settings.notifications_index)


async def test_a_webhook_that_is_down_never_holds_a_report_back(es, settings: Settings, unique, caplog):
    doc = await regressed_run(es, settings, f"{unique}-down")
    async with webhook() as (url, _, _):
        pass  # the port is closed again: nothing listens there
    down = dataclasses.replace(settings, webhook_url=Secret(url), retry_attempts=2, retry_max_wait_s=0.5)
    async with Pipeline.open(down) as pipeline:
        outcome = await pipeline.process(make_event(doc))
        assert outcome.write is WriteOutcome.CREATED  # written before any attempt to notify ended
    record = (await es.get(index=settings.notifications_index, id=doc["uuid"]))["_source"]
    assert record["status"] == "failed" and record["attempts"] == 2
    assert f"could not notify the regression of run {doc['uuid']} after 2 attempts" in caplog.text
    assert "token" not in caplog.text  # the webhook URL is a secret
    await es.indices.delete(index=settings.notifications_index)
