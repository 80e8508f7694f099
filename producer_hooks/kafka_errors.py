"""Kafka errors sorted by what sending again would do: one classification for everything that
produces (the hooks' publisher, the consumer's dead letters).

- refused: the broker or the client refuses the message itself (too large, malformed); sending it
  again, later, fails the same way.
- unavailable: Kafka cannot take messages now (unreachable, timing out, electing a leader); the
  same message goes through once it is back.
Anything else (authorization, configuration) is neither: it fails the same way until an operator
changes something.
"""

from __future__ import annotations

import asyncio

from aiokafka.errors import (
    BrokerNotAvailableError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

REFUSED: tuple[type[KafkaError], ...] = (
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

# Not flagged retriable by aiokafka, yet only ever mean "not now": a request or a batch timed out,
# or no broker answered.
_AWAY = (KafkaTimeoutError, BrokerNotAvailableError, KafkaUnavailableError)


def refused(err: BaseException) -> bool:
    return isinstance(err, REFUSED)


def unavailable(err: BaseException) -> bool:
    if refused(err):
        return False
    if isinstance(err, (OSError, asyncio.TimeoutError, *_AWAY)):
        return True
    return isinstance(err, KafkaError) and bool(err.retriable)
