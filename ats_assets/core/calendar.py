"""The NYSE trading calendar: sessions, open/close instants, early closes.

Built from ``exchange_calendars`` (holiday rules, ad-hoc closures, early closes and
daylight-saving changes come from the library, never from a hand list). Instants are
timezone-aware UTC; the exchange time zone only appears at the edges.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import polars as pl

EXCHANGE = "XNYS"
EXCHANGE_TZ = ZoneInfo("America/New_York")
# The calendar (and so the partitions and the simulated market's horizon) covers this span.
# Fixed rather than "today + n" so that partitions and simulated data never shift by themselves.
CALENDAR_START = date(2010, 1, 4)
CALENDAR_END = date(2035, 12, 31)


class CalendarError(ValueError):
    """A date outside the calendar or not a trading session."""


@dataclass(frozen=True)
class Session:
    """One trading session: its date and its open and close instants (UTC)."""

    day: date
    open: datetime
    close: datetime

    @property
    def minutes(self) -> int:
        """Length of the regular session in minutes (390 on a full day, 210 on an early close)."""
        return int((self.close - self.open).total_seconds() // 60)

    @property
    def is_early_close(self) -> bool:
        return self.minutes < 390


class TradingCalendar:
    """Regular sessions of one exchange between two dates."""

    def __init__(
        self, exchange: str = EXCHANGE, start: date = CALENDAR_START, end: date = CALENDAR_END
    ):
        import exchange_calendars as xcals  # pandas-heavy; built once per process via nyse_calendar()

        cal = xcals.get_calendar(exchange, start=start.isoformat(), end=end.isoformat())
        self.exchange = exchange
        self.start = start
        self.end = end
        days = [ts.date() for ts in cal.sessions]
        opens = [ts.to_pydatetime().astimezone(UTC) for ts in cal.opens]
        closes = [ts.to_pydatetime().astimezone(UTC) for ts in cal.closes]
        self._sessions = {d: Session(d, o, c) for d, o, c in zip(days, opens, closes, strict=True)}
        self._days = days
        self._index = {d: i for i, d in enumerate(days)}

    # -- lookups ---------------------------------------------------------------------------
    def _check_range(self, day: date) -> None:
        if not (self.start <= day <= self.end):
            raise CalendarError(
                f"{day} is outside the trading calendar ({self.start} .. {self.end}); "
                "pick a date inside it or widen CALENDAR_START/CALENDAR_END in ats_assets/core/calendar.py"
            )

    def is_session(self, day: date) -> bool:
        self._check_range(day)
        return day in self._sessions

    def session(self, day: date) -> Session:
        """The session on ``day``; a clear error if the exchange is closed that day."""
        self._check_range(day)
        try:
            return self._sessions[day]
        except KeyError:
            reason = "a weekend" if day.weekday() >= 5 else "an exchange holiday"
            raise CalendarError(
                f"{day} is not an {self.exchange} trading session ({reason})"
            ) from None

    def session_open(self, day: date) -> datetime:
        return self.session(day).open

    def session_close(self, day: date) -> datetime:
        return self.session(day).close

    def session_index(self, day: date) -> int:
        """Ordinal of the session within the calendar (0 = first session)."""
        self.session(day)
        return self._index[day]

    @property
    def days(self) -> list[date]:
        return list(self._days)

    def sessions_between(self, start: date, end: date) -> list[date]:
        """Session dates with ``start <= day <= end`` (both inclusive)."""
        if end < start:
            raise CalendarError(f"empty date range: {start} is after {end}")
        self._check_range(start)
        self._check_range(end)
        return self._days[bisect_left(self._days, start) : bisect_right(self._days, end)]

    def sessions_in_window(self, start: datetime, end: datetime) -> list[date]:
        """Sessions whose date, read in the window's own time zone, lies in ``[start, end)``.

        Partition windows are whole days in their time zone, so this maps a Dagster
        partition time window (of one or many partitions) to the sessions it covers.
        """
        first, last = start.date(), end.date()
        return self._days[bisect_left(self._days, first) : bisect_left(self._days, last)]

    def previous_session(self, day: date) -> date:
        """The last session strictly before ``day``."""
        self._check_range(day)
        earlier = bisect_left(self._days, day)  # the sessions before day: days[:earlier]
        if not earlier:
            raise CalendarError(f"no session before {day} in the calendar")
        return self._days[earlier - 1]

    def non_session_weekdays(self, start: date, end: date) -> list[date]:
        """Weekdays in ``[start, end]`` on which the exchange is closed (holidays, ad-hoc closures)."""
        out, day = [], start
        while day <= end:
            if day.weekday() < 5 and day not in self._sessions:
                out.append(day)
            day += timedelta(days=1)
        return out

    def bounds_frame(self, days: list[date]) -> pl.DataFrame:
        """``session``, ``session_open``, ``session_close`` (UTC) for the given session dates."""
        sessions = [self.session(d) for d in days]
        return pl.DataFrame(
            {
                "session": [s.day for s in sessions],
                "session_open": [s.open for s in sessions],
                "session_close": [s.close for s in sessions],
            },
            schema={
                "session": pl.Date,
                "session_open": pl.Datetime("us", "UTC"),
                "session_close": pl.Datetime("us", "UTC"),
            },
        )


@cache
def nyse_calendar() -> TradingCalendar:
    """The process-wide NYSE calendar (built once, ~0.15 s)."""
    return TradingCalendar()


def parse_day(text: str) -> date:
    """Parse ``YYYY-MM-DD`` with an error that says what was expected."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CalendarError(
            f"bad date {text!r}: expected YYYY-MM-DD, for example 2024-11-29"
        ) from None
