"""Events stamped in the future are refused, the past never is; FOREWARN_MAX_CLOCK_SKEW_MS sets how far is too far."""

from __future__ import annotations

import pytest

from schemas.codec import parse_timestamp_ms
from streams.settings import Settings, SettingsError
from streams.skew import FUTURE_TIMESTAMP, future_timestamp

NOW = parse_timestamp_ms("2026-12-05T10:00:00Z")
FIVE_MINUTES = 300_000


def test_a_year_ahead_is_refused_with_both_times_and_the_setting_named():
    message = future_timestamp(parse_timestamp_ms("2027-12-05T10:00:00Z"), NOW, FIVE_MINUTES)
    assert message == ("event time 2027-12-05T10:00:00Z is 365 days ahead of wall time 2026-12-05T10:00:00Z "
                       "(FOREWARN_MAX_CLOCK_SKEW_MS=300000)")


def test_up_to_the_allowed_skew_is_fine_and_one_millisecond_more_is_not():
    assert future_timestamp(NOW + FIVE_MINUTES, NOW, FIVE_MINUTES) is None
    message = future_timestamp(NOW + FIVE_MINUTES + 1, NOW, FIVE_MINUTES)
    # Just past the limit must not read as exactly the limit.
    assert message is not None and "is 5 minutes 0.001 seconds ahead" in message


@pytest.mark.parametrize("age_ms", [0, 1, FIVE_MINUTES + 1, 365 * 86_400_000, NOW])
def test_any_time_in_the_past_is_fine_so_history_can_be_replayed(age_ms):
    assert future_timestamp(NOW - age_ms, NOW, FIVE_MINUTES) is None


def test_with_no_skew_allowed_any_future_time_is_refused():
    assert future_timestamp(NOW, NOW, 0) is None
    assert "is 0.001 seconds ahead" in future_timestamp(NOW + 1, NOW, 0)


@pytest.mark.parametrize("ahead_ms, words", [
    (90_000, "1 minute 30 seconds"), (3 * 3_600_000 + 1, "3 hours"), (2 * 86_400_000, "2 days"),
])
def test_how_far_ahead_is_said_in_units_people_read(ahead_ms, words):
    assert f"is {words} ahead" in future_timestamp(NOW + ahead_ms, NOW, 0)


def test_the_reason_is_the_dead_letter_token():
    assert FUTURE_TIMESTAMP == "future-timestamp"


def test_the_allowed_skew_defaults_to_five_minutes_and_is_read_from_the_environment():
    assert Settings().max_clock_skew_ms == Settings.from_env({}).max_clock_skew_ms == FIVE_MINUTES
    assert Settings.from_env({"FOREWARN_MAX_CLOCK_SKEW_MS": "60000"}).max_clock_skew_ms == 60_000
    assert Settings.from_env({"FOREWARN_MAX_CLOCK_SKEW_MS": "0"}).max_clock_skew_ms == 0


@pytest.mark.parametrize("raw, words", [("5m", "expected a whole number of milliseconds from 0 to"),
                                        ("-1", "expected a whole number of milliseconds from 0 to")])
def test_a_bad_allowed_skew_stops_the_command_naming_the_variable(raw, words):
    with pytest.raises(SettingsError, match=f"FOREWARN_MAX_CLOCK_SKEW_MS='{raw}': {words}"):
        Settings.from_env({"FOREWARN_MAX_CLOCK_SKEW_MS": raw})
