"""When the next bar may be read: a replay at a chosen speed, or the wall clock.

A bar opening at ``t`` is complete at ``t + 1 minute``. :class:`ReplayClock` maps market time to
wall time at ``speed`` (60: a market minute per second; 0: as fast as possible) from the first
bar it is asked about; :class:`WallClock` waits until the bar has closed plus ``delay_s`` (the
data vendor's publication lag).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

MINUTE = timedelta(minutes=1)


class ReplayClock:
    def __init__(
        self,
        speed: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise ValueError(f"replay speed must be >= 0 (0 = as fast as possible), not {speed}")
        self.speed = speed
        self.sleep = sleep
        self.monotonic = monotonic
        self._origin: tuple[datetime, float] | None = None

    def wait_for_bar(self, bar_open: datetime) -> None:
        if self.speed == 0:
            return
        ready = bar_open + MINUTE
        if self._origin is None:
            self._origin = (ready, self.monotonic())
            return
        market0, wall0 = self._origin
        due = wall0 + (ready - market0).total_seconds() / self.speed
        delay = due - self.monotonic()
        if delay > 0:
            self.sleep(delay)

    def now(self) -> datetime | None:
        return None  # replay: market time is the bar's


class WallClock:
    def __init__(
        self,
        delay_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.delay_s = delay_s
        self.sleep = sleep
        self._now = now

    def wait_for_bar(self, bar_open: datetime) -> None:
        due = bar_open + MINUTE + timedelta(seconds=self.delay_s)
        delay = (due - self._now()).total_seconds()
        if delay > 0:
            self.sleep(delay)

    def now(self) -> datetime:
        return self._now()
