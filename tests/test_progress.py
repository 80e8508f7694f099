"""What a person sees while replay or backfill runs, and the summary at the end."""

from __future__ import annotations

import io
import logging

from consumer.rebuild import Progress, Summary


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_rewritten_line_with_done_total_rate_and_eta():
    screen = Terminal()
    progress = Progress(total=3, label="replay", stream=screen)
    for _ in range(3):
        progress.advance()
    progress.close()
    frames = [frame for frame in screen.getvalue().split("\r") if frame]
    assert frames[-1].startswith("replay: 3/3 runs, ") and "/s, ETA 0 s" in frames[-1]
    assert screen.getvalue().endswith("\n") and screen.getvalue().count("\n") == 1


def test_logs_get_plain_lines_not_control_characters(caplog):
    stream = io.StringIO()
    progress = Progress(total=2, label="backfill", stream=stream, every_s=3600)
    with caplog.at_level(logging.INFO, logger="consumer.rebuild"):
        progress.advance()
        progress.advance()
    assert stream.getvalue() == ""
    assert [record.getMessage().split(",")[0] for record in caplog.records] == ["backfill: 1/2 runs", "backfill: 2/2 runs"]


def test_the_summary_counts_outcomes_skips_and_failures_with_reasons():
    summary = Summary(seen=7, runs=4)
    summary.outcomes.update({"created": 2, "unchanged": 1})
    summary.skip("status not terminal", 3)
    summary.failed["u-4"] = "ThanosUnavailable: connection refused"
    lines = summary.lines()
    assert "read: 7" in lines and "finished runs: 4" in lines
    assert "reports written: 2 (created 2, updated 0)" in lines and "unchanged: 1" in lines
    assert "skipped (status not terminal): 3" in lines
    assert lines[-3:-1] == ["failed: 1", "  u-4: ThanosUnavailable: connection refused"]
    assert lines[-1].endswith("report-consumer replay --uuid u-4")
    assert not summary.ok
