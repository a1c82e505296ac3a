"""The one trading-day partitions definition: one partition per NYSE session.

Imported by every daily asset. Weekends and exchange holidays are excluded (holidays come
from the calendar library, never from a hand list).

Why the windows are expressed at UTC+2: a Dagster time partition exists once its window has
ended, and the key is the window's start date. With midnight-to-midnight windows in New York,
Friday's partition would only exist at Saturday 00:00, and a Monday-to-Friday cron would stretch
Friday's window to Monday. Windows from 00:00 to 24:00 at UTC+2 (no daylight saving) end at
18:00 New York time in summer and 17:00 in winter: every session's partition appears the same
evening, one to two hours after the regular close (16:00, or 13:00 on an early close), and its
window covers the whole session. A Saturday tick closes Friday's window and is itself excluded.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg

from ats_assets.core.calendar import CALENDAR_END, nyse_calendar

PARTITION_TIMEZONE = "Etc/GMT-2"  # POSIX sign convention: this is UTC+2
HISTORY_START = date(2020, 1, 2)
_SATURDAY_TICK = "0 0 * * 6"


def _holiday_exclusions() -> list[datetime]:
    tz = ZoneInfo(PARTITION_TIMEZONE)
    holidays = nyse_calendar().non_session_weekdays(HISTORY_START, CALENDAR_END)
    return [datetime(d.year, d.month, d.day, tzinfo=tz) for d in holidays]


trading_day_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-6",
    timezone=PARTITION_TIMEZONE,
    fmt="%Y-%m-%d",
    start=datetime(HISTORY_START.year, HISTORY_START.month, HISTORY_START.day),
    end=datetime(CALENDAR_END.year, CALENDAR_END.month, CALENDAR_END.day),
    exclusions=[_SATURDAY_TICK, *_holiday_exclusions()],
)

# The live job's sessions: the same days, but today's partition exists from midnight, so the
# schedule can start the session that is about to trade (end_offset=1).
live_day_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-6",
    timezone=PARTITION_TIMEZONE,
    fmt="%Y-%m-%d",
    start=datetime(HISTORY_START.year, HISTORY_START.month, HISTORY_START.day),
    end=datetime(CALENDAR_END.year, CALENDAR_END.month, CALENDAR_END.day),
    exclusions=[_SATURDAY_TICK, *_holiday_exclusions()],
    end_offset=1,
)


# Weekly model partitions: a week's key is its Monday; its window (Monday 00:00 to the next Monday,
# UTC+2) covers that week's sessions, so a week's partition exists once the weekend starts.
weekly_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1",
    timezone=PARTITION_TIMEZONE,
    fmt="%Y-%m-%d",
    start=datetime(2020, 1, 6),
    end=datetime(CALENDAR_END.year, CALENDAR_END.month, CALENDAR_END.day),
)


def sessions_for_window(window: dg.TimeWindow) -> list[date]:
    """Sessions covered by a partition time window (one partition or a backfill range)."""
    return nyse_calendar().sessions_in_window(window.start, window.end)
