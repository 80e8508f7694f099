"""Where a run's event came from, and which of two events of one run is the later.

Events of one run share a key (its uuid), so they sit on one partition in the order they were
published: there the offset decides. Events compared across partitions or topics (a bare document
sent without a key), or with a document read from the metadata index, are ordered by their time
of publication. A report remembers the origin of the event it was built from, so that a write
can refuse to replace a report built from a later event (see :mod:`consumer.sink`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from producer_hooks.events import Event, format_date, parse_date


@dataclass(frozen=True)
class Origin:
    published_at: datetime  # the Kafka record's timestamp; for a metadata document, the run's end
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    # Delivered by the live consumer: the run's results are waited for from publication on.
    live: bool = False

    @classmethod
    def from_record(cls, topic: str, partition: int, offset: int, timestamp_ms: int, *, live: bool) -> Origin:
        return cls(datetime.fromtimestamp(timestamp_ms / 1000, timezone.utc), topic, partition, offset, live)

    def to_dict(self) -> dict[str, Any]:
        """As stored in a report (``live`` is how it was delivered, not where it came from)."""
        doc: dict[str, Any] = {"published_at": format_date(self.published_at)}
        if self.topic is not None:
            doc.update(topic=self.topic, partition=self.partition, offset=self.offset)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Origin:
        return cls(parse_date(doc["published_at"], "published_at"), doc.get("topic"), doc.get("partition"),
                   doc.get("offset"))


class Delivery(NamedTuple):
    """An event and where it came from: what a rebuild hands to the pipeline."""

    event: Event
    origin: Origin


def compare(a: Origin, b: Origin) -> int:
    """-1, 0 or 1 as ``a`` is an earlier, the same or a later event than ``b``."""
    if a.topic is not None and (a.topic, a.partition) == (b.topic, b.partition) and None not in (a.offset, b.offset):
        left, right = a.offset, b.offset
    else:
        left, right = round(a.published_at.timestamp() * 1000), round(b.published_at.timestamp() * 1000)
    return (left > right) - (left < right)  # type: ignore[operator]


__all__ = ["Delivery", "Origin", "compare"]
