"""One retry policy for every server we talk to: bounded, exponential, with jitter."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, before_sleep_log, retry_if_exception, stop_after_attempt, wait_random_exponential

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    max_wait_s: float = 30.0
    first_wait_s: float = 0.5

    def retrying(self, transient: Callable[[BaseException], bool]) -> AsyncRetrying:
        """An ``AsyncRetrying`` that retries only what ``transient`` accepts and re-raises the last error.

        Use as ``async for attempt in policy.retrying(is_transient): with attempt: ...``.
        """
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self.first_wait_s, max=self.max_wait_s),
            retry=retry_if_exception(transient),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )
