"""The trading calendar and the one trading-day partitions definition."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from ats_assets.core.calendar import CalendarError, nyse_calendar, parse_day
from ats_assets.partitions import sessions_for_window, trading_day_partitions

NY = ZoneInfo("America/New_York")


def keys_at(moment: datetime) -> list[str]:
    return trading_day_partitions.get_partition_keys(current_time=moment)


def test_independence_day_is_not_a_partition():
    assert "2024-07-04" not in keys_at(datetime(2024, 8, 1, tzinfo=UTC))
    assert not nyse_calendar().is_session(date(2024, 7, 4))


def test_good_friday_is_not_a_partition():
    assert "2024-03-29" not in keys_at(datetime(2024, 4, 15, tzinfo=UTC))
    assert "2024-03-28" in keys_at(datetime(2024, 4, 15, tzinfo=UTC))


def test_weekends_are_not_partitions():
    keys = keys_at(datetime(2024, 8, 1, tzinfo=UTC))
    assert "2024-07-06" not in keys and "2024-07-07" not in keys
    assert {"2024-07-05", "2024-07-08"} <= set(keys)


def test_day_after_thanksgiving_closes_at_one_pm_new_york():
    close = nyse_calendar().session_close(date(2024, 11, 29)).astimezone(NY)
    assert (close.hour, close.minute) == (13, 0)
    assert nyse_calendar().session(date(2024, 11, 29)).minutes == 210


def test_open_follows_daylight_saving_in_utc_but_not_in_new_york():
    cal = nyse_calendar()
    before, after = cal.session_open(date(2024, 3, 8)), cal.session_open(date(2024, 3, 11))
    assert (before.hour, after.hour) == (14, 13)  # UTC moves by an hour
    assert before.astimezone(NY).time() == after.astimezone(NY).time()  # 09:30 in New York


def test_friday_partition_exists_on_friday_evening():
    evening = datetime(2024, 7, 12, 18, 30, tzinfo=NY)
    assert keys_at(evening)[-1] == "2024-07-12"


def test_friday_partition_does_not_exist_before_the_close():
    afternoon = datetime(2024, 7, 12, 15, 0, tzinfo=NY)
    assert keys_at(afternoon)[-1] == "2024-07-11"


def test_winter_friday_partition_exists_one_hour_after_close():
    assert keys_at(datetime(2024, 12, 13, 17, 5, tzinfo=NY))[-1] == "2024-12-13"


def test_partition_keys_are_exactly_the_calendar_sessions():
    keys = keys_at(datetime(2025, 1, 1, tzinfo=UTC))
    sessions = nyse_calendar().sessions_between(date(2020, 1, 2), date(2024, 12, 31))
    assert keys == [d.isoformat() for d in sessions]


def test_partition_window_covers_its_session():
    window = trading_day_partitions.time_window_for_partition_key("2024-11-29")
    session = nyse_calendar().session(date(2024, 11, 29))
    assert window.start <= session.open and session.close <= window.end
    assert sessions_for_window(window) == [date(2024, 11, 29)]


def test_multi_partition_window_maps_to_its_sessions():
    window = trading_day_partitions.time_window_for_partition_key("2024-11-25")
    last = trading_day_partitions.time_window_for_partition_key("2024-12-02")
    from dagster import TimeWindow

    sessions = sessions_for_window(TimeWindow(window.start, last.end))
    assert sessions == nyse_calendar().sessions_between(date(2024, 11, 25), date(2024, 12, 2))
    assert date(2024, 11, 28) not in sessions


def test_a_holiday_gives_an_error_that_names_it():
    with pytest.raises(CalendarError, match="2024-07-04 is not an XNYS trading session"):
        nyse_calendar().session(date(2024, 7, 4))


def test_a_malformed_date_says_what_format_is_expected():
    with pytest.raises(CalendarError, match="expected YYYY-MM-DD"):
        parse_day("2024-13-01")
