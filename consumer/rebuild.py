"""Rebuilding many reports at once: the engine behind `replay` and `backfill`.

Both commands gather the finished runs of a span, then hand them here: each goes through the same
:class:`~consumer.pipeline.Pipeline` as the live consumer, under the same concurrency limit, with
progress shown as it goes and a summary at the end.

Where a rebuild's time goes, and what was not done about it (benchmarks/perf.py's data, control-
plane profile, one run of 15-60 minutes at a time on loopback / through a 50 ms round trip):

    results search  4-13 ms / 57-92 ms    19 query_range  250-680 ms / 360-940 ms    write (get + index)  10-25 ms / 115-176 ms

Prometheus evaluating the queries is the cost (about 0.24 s of its CPU per run-hour of window for
the 19 queries; 7 s for a 36 h run), and it cannot be shared between runs exactly: each run is
evaluated on its own grid, ``start + k * step``, and runs start at any millisecond, so two runs'
grids have no point in common. One ``query_range`` over the span of many runs of a cluster, sliced
per run, would evaluate other points than each run's (exact only for runs whose starts are a whole
number of steps apart, which real runs never are); and since a cluster's runs follow one another
rather than overlap, it would not evaluate fewer points either: it would only save requests,
which cost little next to the evaluation. Summarising several runs' windows in one request on the
server (``@`` per window) is exact, but triple the evaluation (see consumer/thanos.py).
Batching the writes (``_bulk``) would save 10-25 ms of Elasticsearch work per run on loopback,
under 5 % of a run; through a slow link the write's round trips overlap with the other runs in
flight. So a rebuild is the live pipeline, run ``MAX_IN_FLIGHT`` at a time; its speed-up over the
original job's method comes from overlapping round trips and using every core, not from asking less.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from consumer.origin import Delivery
from consumer.pipeline import Pipeline
from consumer.report import REPORT_FORMAT_VERSION
from consumer.sink import stored_versions

log = logging.getLogger(__name__)


@dataclass
class Summary:
    seen: int = 0  # events or documents read
    runs: int = 0  # distinct finished runs among them
    skipped: Counter[str] = field(default_factory=Counter)  # why runs were not rebuilt
    outcomes: Counter[str] = field(default_factory=Counter)  # created / updated / unchanged
    failed: dict[str, str] = field(default_factory=dict)  # uuid -> reason

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] += count

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self, command: str = "replay") -> list[str]:
        """The summary; ``command`` (replay or backfill) is what the hint for failed runs suggests."""
        built = sum(self.outcomes.values())
        lines = [
            f"read: {self.seen}",
            f"finished runs: {self.runs}",
            f"reports written: {self.outcomes['created'] + self.outcomes['updated']} "
            f"(created {self.outcomes['created']}, updated {self.outcomes['updated']})",
            f"unchanged: {self.outcomes['unchanged']}",
        ]
        if self.outcomes["superseded"]:
            lines.append(f"superseded (a report from a later event of the run stands): {self.outcomes['superseded']}")
        lines += [
            f"built: {built}",
        ]
        lines += [f"skipped ({reason}): {count}" for reason, count in sorted(self.skipped.items())]
        lines.append(f"failed: {len(self.failed)}")
        lines += [f"  {uuid}: {reason}" for uuid, reason in sorted(self.failed.items())]
        if self.failed:
            lines.append(f"once the cause is fixed, rebuild the failed runs with: report-consumer {command} "
                         + " ".join(f"--uuid {uuid}" for uuid in sorted(self.failed)[:20]))
        return lines


class Progress:
    """Runs done / total, rate and ETA: one rewritten line on a terminal, a log line now and then
    otherwise (so CI logs and files stay readable)."""

    def __init__(self, total: int, label: str, stream: TextIO = sys.stderr, every_s: float = 10.0) -> None:
        self.total = total
        self.label = label
        self.stream = stream
        self.tty = stream.isatty()
        self.every_s = every_s
        self.done = 0
        self.started = time.monotonic()
        self._last = float("-inf")  # the first run done is always shown

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_text = "?" if eta == float("inf") else f"{eta:.0f} s"
        return f"{self.label}: {self.done}/{self.total} runs, {rate:.1f}/s, ETA {eta_text}"

    def advance(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.tty:
            if now - self._last >= 0.1 or self.done == self.total:
                print(f"\r{self.line()}\x1b[K", end="", file=self.stream, flush=True)
                self._last = now
        elif now - self._last >= self.every_s or self.done == self.total:
            log.info("%s", self.line())
            self._last = now

    def close(self) -> None:
        if self.tty and self.total:
            print(file=self.stream, flush=True)


async def stale_only(pipeline: Pipeline, runs: Mapping[str, Delivery]) -> dict[str, Delivery]:
    """The runs whose report is missing or was built by another report format or profile version."""
    stored = await stored_versions(pipeline.es, pipeline.settings.report_index, list(runs), pipeline.settings.retry)
    stale = {}
    for uuid, found in runs.items():
        block = stored.get(uuid)
        wanted = [{"name": p.name, "version": p.version} for p in pipeline.profiles_for(found.event.run.benchmark)]
        if block is None or block.get("format_version") != REPORT_FORMAT_VERSION or block.get("profiles") != wanted:
            stale[uuid] = found
    return stale


async def rebuild(pipeline: Pipeline, deliveries: Iterable[Delivery], summary: Summary, *, label: str,
                  stream: TextIO = sys.stderr) -> Summary:
    """Build the report of every event, at most ``max_in_flight`` at once; record outcomes.

    A server's outage is waited out (the pipeline's), so a rebuild survives one too."""
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    for delivery in deliveries:
        queue.put_nowait(delivery)
    progress = Progress(queue.qsize(), label, stream)

    async def work() -> None:
        while True:
            try:
                event, origin = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                outcome = await pipeline.process(event, origin)
                summary.outcomes[outcome.write.value] += 1
            except Exception as err:  # the run's own failure: note it, go on with the others
                log.warning("report of %s not built: %s: %s", event.run.uuid, type(err).__name__, err)
                summary.failed[event.run.uuid] = f"{type(err).__name__}: {err}"
            progress.advance()

    workers = [asyncio.create_task(work()) for _ in range(min(pipeline.settings.max_in_flight, queue.qsize()))]
    try:
        await asyncio.gather(*workers)
    finally:
        for worker in workers:
            worker.cancel()
        progress.close()
    return summary
