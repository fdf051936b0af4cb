"""The worker clock follows event time, waits for partitions that are behind, and flows on when idle."""

from streams.clock import WorkerClock

A, B = ("orders", 0), ("inventory", 0)


def test_unknown_partitions_hold_the_clock_until_they_report():
    clock = WorkerClock()
    clock.assign([A, B])
    clock.observe(A, 5_000, behind=False)
    assert clock.now(wall_ms=1_000_000) is None  # B may still hold older events
    clock.report_lag(B, behind=False)
    assert clock.now(wall_ms=1_000_000) == 5_000


def test_a_behind_partition_holds_the_clock_at_its_last_event_time():
    clock = WorkerClock()
    clock.assign([A, B])
    clock.observe(A, 90_000, behind=False)  # A is read to its end first
    clock.observe(B, 10_000, behind=True)  # B is read later and still has a backlog
    assert clock.now(wall_ms=0) == 10_000
    # Wall time passing does not move a held clock: replays finish no deadline early.
    assert clock.now(wall_ms=3_600_000) == 10_000
    clock.observe(B, 40_000, behind=True)
    assert clock.now(wall_ms=3_600_001) == 40_000
    clock.observe(B, 60_000, behind=False)
    assert clock.now(wall_ms=3_600_002) == 90_000


def test_caught_up_idle_partitions_do_not_hold_the_clock_and_time_flows_with_the_wall():
    clock = WorkerClock()
    clock.assign([A, B])
    clock.report_lag(B, behind=False)  # B is empty and idle
    clock.observe(A, 100_000, behind=False)
    assert clock.now(wall_ms=1_000) == 100_000
    # Nothing new arrives: an idle stream still reaches its deadlines.
    assert clock.now(wall_ms=61_000) == 160_000


def test_events_ahead_of_the_flowing_clock_move_it_forward():
    clock = WorkerClock()
    clock.assign([A])
    clock.observe(A, 100_000, behind=False)
    assert clock.now(wall_ms=0) == 100_000
    clock.observe(A, 500_000, behind=False)
    assert clock.now(wall_ms=1_000) == 500_000
    assert clock.now(wall_ms=2_000) == 501_000


def test_the_clock_never_goes_backwards_for_late_events():
    clock = WorkerClock()
    clock.assign([A])
    clock.observe(A, 100_000, behind=False)
    assert clock.now(wall_ms=0) == 100_000
    clock.observe(A, 20_000, behind=False)  # a late event
    assert clock.now(wall_ms=0) == 100_000
    clock.observe(A, 120_000, behind=True)
    clock.report_lag(B, behind=True)  # a newly reporting partition that is behind with no events read
    assert clock.now(wall_ms=10) == 100_000


def test_no_reading_before_the_first_event_so_a_replay_of_older_events_starts_from_them():
    clock = WorkerClock()
    assert clock.now(wall_ms=1_000_000) is None
    clock.assign(["a"])
    clock.report_lag("a", behind=False)
    assert clock.now(wall_ms=1_000_000) is None
    clock.observe("a", 5_000, behind=False)
    assert clock.now(wall_ms=1_000_000) == 5_000


def test_window_cutoff_is_the_clock_minus_allowed_lateness():
    clock = WorkerClock(allowed_lateness_ms=600_000)
    clock.assign([A])
    clock.observe(A, 1_000_000, behind=False)
    assert clock.window_cutoff(wall_ms=0) == 400_000


def test_revoked_partitions_stop_holding_the_clock():
    clock = WorkerClock()
    clock.assign([A, B])
    clock.observe(A, 50_000, behind=False)
    clock.revoke([B])
    assert clock.now(wall_ms=0) == 50_000


def test_sync_assignment_drops_revoked_and_adds_new_partitions_as_behind():
    clock = WorkerClock()
    clock.assign([A])
    clock.observe(A, 10_000, behind=False)
    clock.sync_assignment([B])
    assert clock.behind_count() == 1  # B is new: unknown lag holds the clock
    assert clock.now(wall_ms=0) is None
    clock.report_lag(B, behind=False)
    assert clock.now(wall_ms=0) is None  # nothing read on B, nothing behind: still no reading


def test_read_up_to_and_watermark_of_a_partition():
    clock = WorkerClock()
    assert clock.read_up_to(A) is None and clock.watermark_of(A) is None
    clock.assign([A, B])
    assert clock.read_up_to(A) is None  # behind, nothing read
    clock.observe(A, 5_000, behind=True)
    assert clock.read_up_to(A) == 5_000
    assert clock.watermark_of(A) == 4_999  # its own output may still be on its way
    clock.observe(A, 6_000, behind=False)
    clock.report_lag(B, behind=False)
    from streams.clock import CAUGHT_UP
    assert clock.read_up_to(A) == CAUGHT_UP
    assert clock.watermark_of(A) == CAUGHT_UP


def test_a_worker_restarted_on_idle_partitions_reads_the_clock_as_if_it_had_run_all_along():
    clock = WorkerClock()
    clock.assign([A, B])
    clock.report_lag(A, behind=False)
    clock.report_lag(B, behind=False)
    assert clock.needs_seed(A) and clock.needs_seed(B)
    assert clock.now(wall_ms=500_000) is None
    # A's last event (event time 100 s) was written at wall time 200 s; B's is older.
    clock.seed(A, 100_000, written_wall=200_000)
    clock.seed(B, 40_000, written_wall=150_000)
    assert not clock.needs_seed(A)
    # 300 s of wall time have passed since A's event was written: so has the clock, so a
    # deadline that fell while no worker ran is due at once.
    assert clock.now(wall_ms=500_000) == 400_000
    assert clock.now(wall_ms=501_000) == 401_000


def test_a_seed_never_overrides_what_was_read():
    clock = WorkerClock()
    clock.assign([A])
    clock.observe(A, 90_000, behind=False)
    assert not clock.needs_seed(A)
    clock.seed(A, 10_000, written_wall=0)
    assert clock.now(wall_ms=1_000_000) == 90_000  # anchored at its first reading, not at the seed


def test_a_partition_still_behind_is_not_seeded():
    clock = WorkerClock()
    clock.assign([A])
    assert not clock.needs_seed(A)  # lag unknown: its events will be read, not guessed
    clock.report_lag(A, behind=True)
    assert not clock.needs_seed(A)
