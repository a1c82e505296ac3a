"""Bars arriving one minute at a time into a :class:`~live.backtest.panel.MinutePanel`.

The session's panel is allocated for the whole session (every minute from the open to the close,
every ticker of the universe) and filled with NaN; :meth:`BarFeed.deliver` writes row ``i`` when
bar ``i`` has arrived, so nothing after ``i`` is ever visible to the engine.

- :class:`ReplayFeed`: the bars of a past session (from the warehouse), as they were.
- :class:`PollingFeed`: the last minute's bars fetched from a market-data source
  (``bars(symbols, start, end)`` returning a frame with ticker, ts, open, high, low, close,
  volume), after the clock says the minute is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from live.backtest.panel import MinutePanel

PRICE_FIELDS = ("open", "high", "low", "close", "volume", "spread_bps")


def empty_panel(template: MinutePanel) -> MinutePanel:
    """A panel with ``template``'s rows and tickers and no bars yet."""
    blank = {name: np.full(template.shape, np.nan) for name in PRICE_FIELDS}
    blank["volume"] = np.zeros(template.shape)
    return replace(template, **blank)


def session_grid(
    tickers: list[str], day: date, session_open: datetime, session_close: datetime
) -> MinutePanel:
    """An empty panel with one row per minute of the session (UTC bar open times)."""
    minutes = int((session_close - session_open).total_seconds() // 60)
    ts = [session_open + timedelta(minutes=i) for i in range(minutes)]
    shape = (minutes, len(tickers))
    return MinutePanel(
        tickers=list(tickers),
        ts=ts,
        session=[day] * minutes,
        session_end=np.arange(minutes) == minutes - 1,
        minutes_to_close=np.array([(session_close - t).total_seconds() / 60 - 1 for t in ts]),
        **{name: np.full(shape, np.nan) for name in PRICE_FIELDS if name != "volume"},
        volume=np.zeros(shape),
    )


class ReplayFeed:
    """Replays ``source`` (a complete panel of the session) into an empty copy, row by row."""

    def __init__(self, source: MinutePanel) -> None:
        self.source = source
        self.panel = empty_panel(source)

    def __len__(self) -> int:
        return self.source.shape[0]

    def deliver(self, i: int) -> None:
        for name in PRICE_FIELDS:
            getattr(self.panel, name)[i] = getattr(self.source, name)[i]


class PollingFeed:
    """Fetches each minute's bars when it is complete; missing tickers stay NaN (no trade)."""

    def __init__(self, panel: MinutePanel, fetch: Callable[..., pl.DataFrame]) -> None:
        self.panel = panel
        self.fetch = fetch
        self.column = panel.column()

    def __len__(self) -> int:
        return self.panel.shape[0]

    def deliver(self, i: int) -> None:
        start = self.panel.ts[i]
        bars = self.fetch(self.panel.tickers, start, start + timedelta(minutes=1))
        bars = bars.filter(pl.col("ts") == start)
        if bars.is_empty():
            return
        cols = np.array([self.column[t] for t in bars["ticker"]])
        for name in PRICE_FIELDS[:5]:
            getattr(self.panel, name)[i, cols] = bars[name].cast(pl.Float64).to_numpy()
