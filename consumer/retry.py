"""One retry policy for every server we talk to: bounded, exponential, with jitter."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_random_exponential,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int | None = 5  # None: until it works (for what must not be dropped)
    max_wait_s: float = 30.0
    first_wait_s: float = 0.5

    def retrying(self, transient: Callable[[BaseException], bool], what: str = "request") -> AsyncRetrying:
        """An ``AsyncRetrying`` that retries only what ``transient`` accepts and re-raises the last error.

        Use as ``async for attempt in policy.retrying(is_transient): with attempt: ...``.
        """

        def say(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            pause = state.next_action.sleep if state.next_action else 0.0
            of = f" of {self.attempts}" if self.attempts else ""
            # Debug only: a lasting outage is told once per interval by consumer.outage, not per attempt.
            log.debug("%s failed (attempt %d%s: %s: %s); retrying in %.1f s", what, state.attempt_number, of,
                      type(error).__name__, error, pause)

        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts) if self.attempts else stop_never,
            wait=wait_random_exponential(multiplier=self.first_wait_s, max=self.max_wait_s),
            retry=retry_if_exception(transient),
            before_sleep=say,
            reraise=True,
        )
