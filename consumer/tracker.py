"""Which offsets may be committed while runs are built concurrently.

Records of a partition arrive in offset order but finish in any order. Committing offset N tells
the group "everything before N is done", so the committable offset of a partition is the lowest
offset still in flight, or one past the last offset seen when nothing is. A crash then repeats work
that was in flight, and never skips it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")  # a partition handle, e.g. aiokafka's TopicPartition


@dataclass
class PartitionOffsets:
    order: deque[int] = field(default_factory=deque)  # started offsets, oldest first; done ones trail
    in_flight: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the last offset seen
    committed: int | None = None

    def start(self, offset: int) -> None:
        self.order.append(offset)
        self.in_flight.add(offset)
        self.next_offset = offset + 1

    def finish(self, offset: int) -> None:
        self.in_flight.discard(offset)
        while self.order and self.order[0] not in self.in_flight:
            self.order.popleft()

    def committable(self) -> int | None:
        if self.order:
            return self.order[0]
        return self.next_offset


class OffsetTracker(Generic[P]):
    def __init__(self) -> None:
        self._partitions: dict[P, PartitionOffsets] = {}

    def start(self, partition: P, offset: int) -> None:
        self._partitions.setdefault(partition, PartitionOffsets()).start(offset)

    def finish(self, partition: P, offset: int) -> None:
        offsets = self._partitions.get(partition)
        if offsets is not None:  # a partition revoked meanwhile is no longer ours to commit
            offsets.finish(offset)

    def in_flight(self, partition: P | None = None) -> int:
        if partition is not None:
            offsets = self._partitions.get(partition)
            return len(offsets.in_flight) if offsets else 0
        return sum(len(offsets.in_flight) for offsets in self._partitions.values())

    def done_up_to(self, partition: P) -> int | None:
        """The offset before which every record of ``partition`` is done (what a commit would
        write); None for a partition nothing was read from yet."""
        offsets = self._partitions.get(partition)
        return offsets.committable() if offsets is not None else None

    def to_commit(self) -> dict[P, int]:
        """Offsets that moved since the last :meth:`committed` call."""
        result = {}
        for partition, offsets in self._partitions.items():
            offset = offsets.committable()
            if offset is not None and offset != offsets.committed:
                result[partition] = offset
        return result

    def committed(self, offsets: dict[P, int]) -> None:
        for partition, offset in offsets.items():
            if partition in self._partitions:
                self._partitions[partition].committed = offset

    def forget(self, partitions: list[P]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)
