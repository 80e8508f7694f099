"""Outages: a server that is away is weather, not a property of the run, so the run waits.

Elasticsearch, Thanos or Kafka being unreachable, answering 5xx or 429, timing out or refusing our
credentials fails every run the same way until it ends (or until an operator fixes a setting).
Such a run is neither reported partial nor dead-lettered: :meth:`Outages.ride_out` tries it again
with capped exponential backoff for as long as the outage lasts (or up to an optional limit), and
every build waiting on the same server shares one log line per interval instead of one per attempt.

What is not an outage propagates at once: those failures belong to the run (an invalid event, a
report the index refuses) and go to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import aiohttp
from aiokafka.errors import KafkaError
from elasticsearch import ApiError

from consumer.elastic import is_transient
from consumer.thanos import QueryError, ThanosError
from producer_hooks.kafka_check import KafkaUnreachable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Elasticsearch answers that no retry fixes for this run, but a fixed setting does.
_ES_SETTINGS_STATUSES = frozenset({401, 403})


class OutageLimitExceeded(Exception):
    """A server stayed away longer than the operator's ``OUTAGE_LIMIT``."""


def server_of(err: BaseException) -> str | None:
    """Which server an error says is unavailable, or None when the error is the run's own."""
    if isinstance(err, QueryError):
        return None  # the server answered: this query is wrong
    if isinstance(err, (ThanosError, aiohttp.ClientError)):
        return "Thanos"
    if is_transient(err):
        return "Elasticsearch"
    if isinstance(err, ApiError) and err.meta.status in _ES_SETTINGS_STATUSES:
        return "Elasticsearch"
    if isinstance(err, KafkaUnreachable) or (isinstance(err, KafkaError) and getattr(err, "retriable", False)):
        return "Kafka"
    return None


class OutageObserver(Protocol):
    """Told of outages as they happen (see :class:`consumer.telemetry.Telemetry`); ``now`` is loop time."""

    def outage_started(self, server: str, now: float) -> None: ...

    def outage_retried(self, server: str) -> None: ...

    def outage_ended(self, server: str, now: float) -> None: ...


@dataclass
class _Outage:
    since: float
    logged: float
    waiting: int = 0
    error: str = ""


@dataclass
class Outages:
    """Shared by every build of a process. ``limit_s`` (0: none) bounds how long one run waits."""

    limit_s: float = 0.0
    max_wait_s: float = 30.0
    first_wait_s: float = 1.0
    log_every_s: float = 30.0
    observer: OutageObserver | None = None
    _current: dict[str, _Outage] = field(default_factory=dict)

    def unavailable(self) -> list[str]:
        """The servers currently in an outage."""
        return sorted(self._current)

    async def ride_out(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """``await attempt()`` until it succeeds or fails for a reason of its own."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        wait = self.first_wait_s
        server: str | None = None
        succeeded = False
        try:
            while True:
                try:
                    result = await attempt()
                except Exception as err:
                    now_server = server_of(err)
                    if now_server is None:
                        raise
                    if server != now_server:
                        if server is not None:
                            self._leave(server, loop.time(), recovered=False)
                        server = now_server
                        self._join(server, err, loop.time())
                    else:
                        self._still(server, err, loop.time())
                    if self.limit_s and loop.time() - started >= self.limit_s:
                        raise OutageLimitExceeded(
                            f"{server} unavailable for more than OUTAGE_LIMIT={self.limit_s:g} s while {what}: "
                            f"{_describe(err)}"
                        ) from err
                    if self.observer is not None:
                        self.observer.outage_retried(server)
                    await asyncio.sleep(random.uniform(wait / 2, wait))
                    wait = min(wait * 2, self.max_wait_s)
                else:
                    succeeded = True
                    return result
        finally:
            if server is not None:
                self._leave(server, loop.time(), recovered=succeeded)

    def _join(self, server: str, err: BaseException, now: float) -> None:
        outage = self._current.get(server)
        if outage is None:
            outage = self._current[server] = _Outage(since=now, logged=now, error=_describe(err))
            log.warning("%s unavailable (%s); runs wait and are retried until it is back", server, outage.error)
            if self.observer is not None:
                self.observer.outage_started(server, now)
        outage.waiting += 1

    def _still(self, server: str, err: BaseException, now: float) -> None:
        outage = self._current[server]
        outage.error = _describe(err)
        if now - outage.logged >= self.log_every_s:
            outage.logged = now
            log.warning("%s unavailable for %.0f s (%s); %d runs waiting", server, now - outage.since,
                        outage.error, outage.waiting)

    def _leave(self, server: str, now: float, *, recovered: bool) -> None:
        outage = self._current.get(server)
        if outage is None:
            return
        outage.waiting -= 1
        if outage.waiting <= 0:
            del self._current[server]
            if self.observer is not None:
                self.observer.outage_ended(server, now)
            if recovered:
                log.warning("%s available again after %.0f s", server, now - outage.since)


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


__all__ = ["OutageLimitExceeded", "OutageObserver", "Outages", "server_of"]
