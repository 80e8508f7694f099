"""Notifications: a webhook (Slack-compatible JSON) called once per report whose verdict is
``regression``.

Once means once per run and verdict: ``NOTIFICATION_INDEX`` keeps one document per run (``_id`` =
uuid) with the fingerprint of the verdict it told about (:func:`consumer.verdict.verdict_fingerprint`:
the status and which numbers moved, since which run). A replay that reaches the same verdict finds
it ``sent`` and stays quiet; a verdict that changed (another number regressed) is told again. The
document is claimed before sending (created, or replaced with optimistic concurrency), so two
processes rebuilding the same run at once send one message.

Sending never blocks a report: it runs in a task of its own after the report is written, is
retried (``RETRY_ATTEMPTS``, backing off) on connection errors, timeouts, 429 and 5xx, and a
failure is logged and recorded (``status: failed``), so a later rebuild of the run tries again.
The webhook URL is a secret (Slack's carries its token): it is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import aiohttp
from elasticsearch import ConflictError

from consumer.elastic import is_transient
from consumer.report import iso
from consumer.retry import RetryPolicy
from consumer.store import Store, create_index
from producer_hooks.settings import Secret

log = logging.getLogger(__name__)

NOTIFICATION_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "uuid": {"type": "keyword"},
        "verdict_fingerprint": {"type": "keyword"},
        "status": {"type": "keyword"},  # sending, sent, failed
        "attempts": {"type": "integer"},
        "at": {"type": "date"},
        "error": {"type": "keyword", "ignore_above": 8191},
    },
}
_MAX_LISTED = 10  # numbers named in one message
_CLAIM_EXPIRES_S = 600.0


class WebhookError(Exception):
    """The webhook answered with an error status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {' '.join(text.split())[:200]}")
        self.status = status


def _transient(err: BaseException) -> bool:
    if isinstance(err, WebhookError):
        return err.status >= 500 or err.status in (408, 429)
    return isinstance(err, (aiohttp.ClientError, asyncio.TimeoutError))


def _number_line(entry: Mapping[str, Any]) -> str:
    unit = f" {entry['unit']}" if entry.get("unit") else ""
    pct = entry.get("delta_pct")
    change = f"{pct:+.1f}%" if isinstance(pct, (int, float)) else "n/a"
    return (f"• `{entry['name']}`: {entry['value']:.4g}{unit} against a median of "
            f"{entry['baseline_median']:.4g}{unit} ({change}, p={entry['p_value']:.2g})"
            if isinstance(entry.get("p_value"), float) else
            f"• `{entry['name']}`: {entry['value']:.4g}{unit} against a median of {entry['baseline_median']:.4g}{unit} ({change})")


def message(report: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook's JSON body: Slack's ``text`` (shown by every client) and ``blocks``."""
    verdict = report.get("verdict") or {}
    moved = [entry for entry in verdict.get("numbers", ()) if entry.get("status") == "regression"]
    run = (f"{report.get('benchmark')} on {report.get('openshift_cluster_name')} "
           f"({report.get('openshift_platform')}, OpenShift {report.get('openshift_cluster_version')}, "
           f"{report.get('worker_count')} workers)")
    title = f"Regression: {run}, run {report.get('uuid')}"
    lines = [_number_line(entry) for entry in moved[:_MAX_LISTED]]
    if len(moved) > _MAX_LISTED:
        lines.append(f"• … and {len(moved) - _MAX_LISTED} more")
    links = {key: url for key, url in (report.get("links") or {}).items() if isinstance(url, str)}
    if report.get("build_url"):
        links = {"build": report["build_url"], **links}
    link_text = " · ".join(f"<{url}|{key}>" for key, url in links.items())
    text = "\n".join([title, *lines, *(["links: " + " ".join(links.values())] if links else [])])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*{len(moved)} number(s) moved* against {verdict.get('history_runs')} comparable runs "
            f"({verdict.get('rule')}):\n" + "\n".join(lines))[:3000]}},
    ]
    if link_text:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link_text[:3000]}]})
    return {"text": text, "blocks": blocks,
            # Not Slack's: for other receivers, the facts without parsing text.
            "run": {"uuid": report.get("uuid"), "benchmark": report.get("benchmark"),
                    "cluster": report.get("openshift_cluster_name"), "start_date": report.get("start_date"),
                    "end_date": report.get("end_date")},
            "regressions": [{key: entry.get(key) for key in ("name", "value", "unit", "baseline_median", "delta",
                                                             "delta_pct", "p_value", "since")} for entry in moved],
            "links": links}


def _stale(record: Mapping[str, Any], now: datetime) -> bool:
    """A claim left by a process that stopped while sending: taken over after a while."""
    try:
        claimed = datetime.fromisoformat(str(record.get("at")).replace("Z", "+00:00"))
    except ValueError:
        return True
    return (now - claimed).total_seconds() > _CLAIM_EXPIRES_S


class Notifier:
    """Sends regression notifications in the background; :meth:`close` waits for them (bounded)."""

    def __init__(self, es: Store, index: str, url: Secret | None, *, timeout_s: float = 10.0,
                 retry: RetryPolicy | None = None) -> None:
        self.es = es
        self.index = index
        self.url = url
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None

    def after_write(self, report: Mapping[str, Any]) -> None:
        """Called once the report is stored: tell about a regression, in a task of its own."""
        verdict = report.get("verdict") or {}
        if self.url is None or verdict.get("status") != "regression":
            return
        task = asyncio.get_running_loop().create_task(self._notify(report))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, timeout_s: float = 30.0) -> None:
        if self._tasks:
            done, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("%d regression notifications still being sent at exit were abandoned", len(pending))
        if self._session is not None:
            await self._session.close()

    async def _notify(self, report: Mapping[str, Any]) -> None:
        uuid = str(report.get("uuid"))
        fingerprint = report["verdict"].get("fingerprint")
        try:
            claim = await self._claim(uuid, fingerprint)
            if claim is None:
                return
            attempts = 0
            try:
                async for attempt in self.retry.retrying(_transient, f"notifying the regression of {uuid}"):
                    with attempt:
                        attempts += 1
                        await self._post(message(report))
            except Exception as err:  # noqa: BLE001 - a notification never fails a report
                log.error("could not notify the regression of run %s after %d attempts: %s", uuid, attempts,
                          f"{type(err).__name__}: {err}")
                await self._record(uuid, fingerprint, "failed", attempts, str(err))
                return
            log.info("notified the regression of run %s (%s)", uuid, ", ".join(report["verdict"].get("regressions", ())))
            await self._record(uuid, fingerprint, "sent", attempts)
        except Exception as err:  # noqa: BLE001 - the notification index away: told, never raised
            log.error("regression notification of run %s: %s: %s", uuid, type(err).__name__, err)

    async def _post(self, body: dict[str, Any]) -> None:
        assert self.url is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        async with self._session.post(self.url.reveal(), json=body) as response:
            if response.status >= 300:
                raise WebhookError(response.status, await response.text())

    async def _claim(self, uuid: str, fingerprint: str) -> dict[str, Any] | None:
        """Take the run's notification for this verdict, or None when it was sent (or is being sent)."""
        async for attempt in self.retry.retrying(is_transient, f"reading the notification of {uuid}"):
            with attempt:
                stored = (await self.es.options(ignore_status=404).get(index=self.index, id=uuid)).body
        source = stored.get("_source") if stored.get("found") else None
        now = datetime.now(timezone.utc)
        if source is not None and source.get("verdict_fingerprint") == fingerprint and (
                source.get("status") == "sent" or (source.get("status") == "sending" and not _stale(source, now))):
            return None
        document = {"uuid": uuid, "verdict_fingerprint": fingerprint, "status": "sending", "attempts": 0,
                    "at": iso(now)}
        try:
            if source is None:
                await self._create_index()
                await self.es.index(index=self.index, id=uuid, document=document, op_type="create")
            else:
                await self.es.index(index=self.index, id=uuid, document=document,
                                    if_seq_no=stored["_seq_no"], if_primary_term=stored["_primary_term"])
        except ConflictError:
            return None  # another process claimed it first
        return document

    async def _record(self, uuid: str, fingerprint: str, status: str, attempts: int, error: str | None = None) -> None:
        document = {"uuid": uuid, "verdict_fingerprint": fingerprint, "status": status, "attempts": attempts,
                    "at": iso(datetime.now(timezone.utc)), **({"error": error[:8000]} if error else {})}
        async for attempt in self.retry.retrying(is_transient, f"recording the notification of {uuid}"):
            with attempt:
                await self.es.index(index=self.index, id=uuid, document=document)

    async def _create_index(self) -> None:
        await create_index(self.es, self.index, NOTIFICATION_MAPPING)


__all__ = ["NOTIFICATION_MAPPING", "Notifier", "WebhookError", "message"]
