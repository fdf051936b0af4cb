"""The worker's watch for input partitions whose commit is stuck although everything was read."""

from streams.runtime.faust_fixes import CommitStallWatch

TP = ("inventory", 3)


def test_a_commit_behind_a_fully_read_partition_for_the_whole_patience_is_stalled():
    watch = CommitStallWatch(patience_ms=30_000)
    assert not watch.stalled(TP, committed=100, position=458, highwater=458, unacked=False, now_ms=0)
    assert not watch.stalled(TP, committed=100, position=458, highwater=458, unacked=False, now_ms=29_999)
    assert watch.stalled(TP, committed=100, position=458, highwater=458, unacked=False, now_ms=30_000)
    # Once reported, the watch starts over.
    assert not watch.stalled(TP, committed=100, position=458, highwater=458, unacked=False, now_ms=30_001)


def test_a_moving_commit_unread_messages_or_pending_acks_are_not_a_stall():
    watch = CommitStallWatch(patience_ms=30_000)
    watch.stalled(TP, committed=100, position=458, highwater=458, unacked=False, now_ms=0)
    assert not watch.stalled(TP, committed=200, position=458, highwater=458, unacked=False, now_ms=40_000)
    assert not watch.stalled(TP, committed=200, position=458, highwater=458, unacked=False, now_ms=69_999)
    watch = CommitStallWatch(patience_ms=30_000)
    watch.stalled(TP, committed=100, position=400, highwater=458, unacked=False, now_ms=0)  # still reading
    assert not watch.stalled(TP, committed=100, position=400, highwater=458, unacked=False, now_ms=60_000)
    watch.stalled(TP, committed=100, position=458, highwater=458, unacked=True, now_ms=0)  # being processed
    assert not watch.stalled(TP, committed=100, position=458, highwater=458, unacked=True, now_ms=60_000)
    # Caught up and committed: nothing to do, however long it stays so.
    watch.stalled(TP, committed=458, position=458, highwater=458, unacked=False, now_ms=0)
    assert not watch.stalled(TP, committed=458, position=458, highwater=458, unacked=False, now_ms=60_000)
    assert not watch.stalled(TP, committed=None, position=458, highwater=458, unacked=False, now_ms=90_000)
