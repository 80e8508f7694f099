"""Reading records so that no record's bytes can stop the consumer.

aiokafka parses fetched bytes lazily, inside ``getmany``. Bytes it cannot parse (a header name that
is not UTF-8, which Kafka allows and librdkafka-based clients send; a compression codec it has no
library for; a batch that fails its CRC) raise out of ``getmany``, and raise again on every later
call at the same position: a consumer that lets the error through never gets past that record.

How aiokafka 0.14 behaves, which this module is built on (tests/test_poison_records.py checks it):

- The error surfaces while one partition's buffered records are handed out. Records already handed
  out in the same call for *other* partitions are dropped with the error, though their positions
  have moved on. So :class:`RecordReader` reads each partition on its own (``getmany(tp)``): an
  error then names its partition and takes no other partition's records with it.
- The failing partition's position stays at the first record not handed out (records before the bad
  one in that call are fetched again). Re-reading it one record at a time until the error recurs
  finds the exact offset aiokafka cannot read.
- A batch is parsed from its start, so once one of its records cannot be read, neither can the rest
  of the batch (and a CRC or codec failure spoils all of it). The batch's last offset comes from its
  header, read raw (:func:`read_raw`); the reader seeks past it.

Each offset aiokafka could not hand out becomes an :class:`Unreadable` marker, in offset order among
the partition's records, so a caller accounts for every offset: parks it, counts it, commits past it.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CorruptRecordException, IllegalStateError, KafkaError, UnsupportedCodecError, for_code
from aiokafka.protocol.fetch import FetchRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unreadable:
    """An offset whose record aiokafka cannot parse; it names where the bytes are, for kcat."""

    topic: str
    partition: int
    offset: int
    reason: str

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


Item: TypeAlias = "ConsumerRecord | Unreadable"


def is_record_error(err: BaseException) -> bool:
    """Whether ``getmany`` raised while parsing fetched bytes, rather than because of the group,
    the broker or a closed consumer. aiokafka's pure-Python parser wraps its failures in
    CorruptRecordException; its C parser and the codecs raise their own (UnicodeDecodeError,
    zlib.error, ...), none of them a KafkaError."""
    if isinstance(err, (CorruptRecordException, UnsupportedCodecError)):
        return True
    return isinstance(err, Exception) and not isinstance(err, KafkaError)


class RecordReader:
    """``getmany`` over an :class:`AIOKafkaConsumer` that no record's bytes can make raise.

    Returns, per partition and in offset order, records and :class:`Unreadable` markers; after a
    marker the consumer's position is past the offsets it names.
    """

    def __init__(self, consumer: AIOKafkaConsumer, client_options: Mapping[str, Any]) -> None:
        self.consumer = consumer
        self.client_options = dict(client_options)  # for the raw read of a batch header

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Item]]:
        paused = self.consumer.paused()
        readable = [tp for tp in (partitions or self.consumer.assignment()) if tp not in paused]
        if not readable:
            return await self._poll(partitions, timeout_ms)
        budget = max_records or sys.maxsize
        batch: dict[TopicPartition, list[Item]] = {}
        try:
            await self._drain(readable, budget, timeout_ms, batch)
            if not batch and timeout_ms:
                await self._first(readable, timeout_ms, batch)
                if batch:
                    await self._drain(readable, budget - sum(map(len, batch.values())), timeout_ms, batch)
        except BaseException:
            self._rewind(batch)  # handed out by aiokafka, never returned: read them again next time
            raise
        return batch

    async def _poll(self, partitions: tuple[TopicPartition, ...], timeout_ms: int) -> dict[TopicPartition, list[Item]]:
        """Everything is paused (or nothing assigned yet): still a poll, so the group keeps us and
        its errors surface. It takes at most one record (from a partition assigned meanwhile), so an
        error here drops nothing; that partition is read on its own next time."""
        try:
            batch = await self.consumer.getmany(*partitions, timeout_ms=0, max_records=1)
        except Exception as err:
            if not is_record_error(err):
                raise
            batch = {}
        if not batch and timeout_ms:
            await asyncio.sleep(timeout_ms / 1000)
        return dict(batch)

    async def _drain(self, partitions: list[TopicPartition], budget: int, timeout_ms: int,
                     batch: dict[TopicPartition, list[Item]]) -> None:
        """Add what is already fetched to ``batch``, partition by partition, without waiting."""
        for tp in partitions:
            if budget <= 0:
                break
            try:
                got = (await self.consumer.getmany(tp, timeout_ms=0, max_records=budget)).get(tp, [])
            except Exception as err:
                if not is_record_error(err):
                    raise
                got = await self._read_past(tp, err, budget, timeout_ms)
            if got:
                batch.setdefault(tp, []).extend(got)
            budget -= len(got)

    async def _first(self, partitions: list[TopicPartition], timeout_ms: int,
                     batch: dict[TopicPartition, list[Item]]) -> None:
        """Wait until some partition has a record: one wait per partition, so that an error names
        its partition; each takes at most one record, and a wait still pending has taken none."""
        waits = {tp: asyncio.ensure_future(self.consumer.getmany(tp, timeout_ms=timeout_ms, max_records=1))
                 for tp in partitions}
        try:
            await asyncio.wait(waits.values(), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits.values():
                wait.cancel()
            await asyncio.gather(*waits.values(), return_exceptions=True)
        failed = []
        for tp, wait in waits.items():  # what was handed out first, so that no error can lose it
            if wait.cancelled():
                continue
            if wait.exception() is None:
                if wait.result().get(tp):
                    batch[tp] = list(wait.result()[tp])
            else:
                failed.append((tp, wait.exception()))
        for tp, err in failed:
            if not is_record_error(err):
                raise err
            got = await self._read_past(tp, err, 1, timeout_ms)
            if got:
                batch[tp] = got

    def _rewind(self, batch: dict[TopicPartition, list[Item]]) -> None:
        for tp, items in batch.items():
            try:
                self.consumer.seek(tp, items[0].offset)
            except IllegalStateError:  # no longer assigned: nothing of it is ours to read again
                pass

    async def _read_past(self, tp: TopicPartition, err: BaseException, budget: int, timeout_ms: int) -> list[Item]:
        """Re-read ``tp`` one record at a time until the error recurs, then step over what cannot be
        read. Stops early (the next call reads on) when the error does not recur in time."""
        log.warning("a record of %s[%d] cannot be read (%s: %s); reading the partition record by record to find it",
                    tp.topic, tp.partition, type(err).__name__, err)
        items: list[Item] = []
        try:
            while len(items) < budget:
                position = await self.consumer.position(tp)
                try:
                    got = await self.consumer.getmany(tp, timeout_ms=max(timeout_ms, 500), max_records=1)
                except Exception as again:
                    if not is_record_error(again):
                        raise
                    return items + await self._step_over(tp, position, again)
                if not got.get(tp):
                    break  # a passing fault, or a slow broker: the next call reads on
                items += got[tp]
        except IllegalStateError:  # the partition was revoked meanwhile: it is no longer ours to read
            pass
        return items

    async def _step_over(self, tp: TopicPartition, position: int, err: BaseException) -> list[Unreadable]:
        span = await batch_span(self.client_options, tp, position)
        if span is None:  # the header could not be read: skip this offset; the next call finds the rest
            first, last = position, position
        else:
            first, last = max(span[0], position), span[1]
        reason = f"{type(err).__name__}: {err}"
        if last > first:
            reason += f" (aiokafka reads none of its batch, offsets {span[0]}-{span[1]}, from offset {first} on)"  # type: ignore[index]
        self.consumer.seek(tp, last + 1)
        offsets = f"offsets {first}-{last}" if last > first else f"offset {first}"
        log.warning("%s[%d]: %s cannot be read (%s); consumption goes on from offset %d",
                    tp.topic, tp.partition, offsets, reason, last + 1)
        return [Unreadable(tp.topic, tp.partition, offset, reason) for offset in range(first, last + 1)]


# -- the one place that reads raw bytes -------------------------------------------------------------

# Every entry of a fetched record set starts with its offset (int64) and length (int32); the magic
# byte is at 16. In a v2 batch (magic 2) the last offset delta (int32) is at 23; in v0/v1 an entry's
# offset is that of its last record (a compressed wrapper's inner records end there).
_ENTRY = struct.Struct(">qi")
_LAST_OFFSET_DELTA = struct.Struct(">i")


def first_batch_span(data: bytes, offset: int) -> tuple[int, int] | None:
    """(first, last) offsets of the first batch in ``data`` that holds ``offset`` or lies past it."""
    pos = 0
    while pos + 27 <= len(data):
        base, length = _ENTRY.unpack_from(data, pos)
        if data[pos + 16] >= 2:
            first, last = base, base + _LAST_OFFSET_DELTA.unpack_from(data, pos + 23)[0]
        else:
            first, last = min(base, offset), base
        if last >= offset:
            return first, last
        pos += _ENTRY.size + length
    return None


async def batch_span(client_options: Mapping[str, Any], tp: TopicPartition, offset: int) -> tuple[int, int] | None:
    """The first and last offsets of the record batch that holds ``offset``; None if unknown."""
    try:
        data = await read_raw(client_options, tp, offset)
    except Exception as err:  # noqa: BLE001 - the caller falls back to stepping one offset
        log.warning("cannot read the batch header at %s[%d]@%d: %s: %s", tp.topic, tp.partition, offset,
                    type(err).__name__, err)
        return None
    return first_batch_span(data, offset)


async def read_raw(client_options: Mapping[str, Any], tp: TopicPartition, offset: int, max_bytes: int = 1,
                   timeout_s: float = 30.0) -> bytes:
    """The partition's record batches from the one holding ``offset``, as the broker stores them.

    aiokafka has no public call for this, so this adapts to its internals, here only: a Fetch
    request built with ``aiokafka.protocol.fetch.FetchRequest``, sent by a client of our own, and
    its response read as aiokafka's fetcher reads it (records last in each partition's tuple).
    Brokers always return at least the whole first batch (KIP-74), even past ``max_bytes``.
    """
    client = AIOKafkaClient(**client_options)

    async def read() -> bytes:
        await client.bootstrap()
        await client.add_topic(tp.topic)
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            raise LookupError(f"no leader for {tp.topic}[{tp.partition}]")
        request = FetchRequest(0, 1, max_bytes, 0, [(tp.topic, [(tp.partition, offset, max_bytes)])])
        response = await client.send(leader, request)
        for _topic, partitions in response.topics:
            for partition, error_code, _highwater, *rest in partitions:
                if partition == tp.partition:
                    if error_code:
                        raise for_code(error_code)(f"fetching {tp.topic}[{tp.partition}]@{offset}")
                    return bytes(rest[-1])
        raise LookupError(f"{tp.topic}[{tp.partition}] missing from the fetch response")

    try:
        return await asyncio.wait_for(read(), timeout_s)
    finally:
        await client.close()
