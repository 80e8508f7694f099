"""Committable offsets while runs finish out of order."""

from consumer.tracker import OffsetTracker


def test_commit_stops_at_the_oldest_run_still_in_flight():
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.start("p0", offset)
    tracker.finish("p0", 12)
    tracker.finish("p0", 13)
    assert tracker.to_commit() == {"p0": 10}
    tracker.finish("p0", 10)
    assert tracker.to_commit() == {"p0": 11}
    tracker.finish("p0", 11)
    assert tracker.to_commit() == {"p0": 14}
    assert tracker.in_flight() == 0


def test_nothing_to_commit_twice_once_committed():
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.start("p0", 0)
    tracker.finish("p0", 0)
    tracker.committed(tracker.to_commit())
    assert tracker.to_commit() == {}
    tracker.start("p0", 1)
    assert tracker.to_commit() == {}  # offset 1 still in flight: 1 was the committable point already
    tracker.finish("p0", 1)
    assert tracker.to_commit() == {"p0": 2}


def test_partitions_are_tracked_apart():
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.start("p0", 5)
    tracker.start("p1", 7)
    tracker.finish("p1", 7)
    assert tracker.to_commit() == {"p0": 5, "p1": 8}
    assert tracker.in_flight("p0") == 1 and tracker.in_flight("p1") == 0


def test_a_revoked_partition_is_forgotten_and_late_finishes_are_ignored():
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.start("p0", 3)
    tracker.forget(["p0"])
    tracker.finish("p0", 3)
    assert tracker.to_commit() == {}
    assert tracker.in_flight() == 0
