"""Minute bars as a panel: one row per minute of the sessions, one column per ticker (numpy).

The backtest's event loop reads row ``i`` of each array; a ticker without a bar in a minute has
NaN prices and zero volume there (it cannot fill, and its last close stays its mark).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import polars as pl


@dataclass
class MinutePanel:
    tickers: list[str]
    ts: list[datetime]  # bar open times (UTC), ascending
    session: list[date]  # the session of each row
    session_end: np.ndarray  # bool per row: the session's last bar
    minutes_to_close: np.ndarray  # per row: minutes from the bar's close to the session close
    open: np.ndarray  # (rows, tickers) dollars
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # shares
    spread_bps: np.ndarray  # quoted spread; NaN where unknown

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape

    def column(self) -> dict[str, int]:
        return {t: j for j, t in enumerate(self.tickers)}

    def rows_of(self, day: date) -> range:
        first = self.session.index(day)
        last = len(self.session) - 1 - self.session[::-1].index(day)
        return range(first, last + 1)

    def sessions(self) -> list[date]:
        return list(dict.fromkeys(self.session))


def minute_panel(
    bars: pl.DataFrame,
    session_close: dict[date, datetime],
    spread: pl.DataFrame | None = None,
    tickers: list[str] | None = None,
) -> MinutePanel:
    """Build the panel from 1-minute ``bars`` (ticker, ts, session, open, high, low, close, volume).

    ``session_close`` gives each session's close instant (early closes included); rows are the
    union of the bars' minutes. ``spread`` (ticker, ts, spread_bps) is joined where given."""
    tickers = sorted(bars["ticker"].unique().to_list()) if tickers is None else list(tickers)
    frame = bars.filter(pl.col("ticker").is_in(tickers))
    if spread is not None:
        frame = frame.join(
            spread.select("ticker", "ts", "spread_bps"), on=["ticker", "ts"], how="left"
        )
    else:
        frame = frame.with_columns(spread_bps=pl.lit(None, dtype=pl.Float64))
    times = frame.select("ts", "session").unique().sort("ts").with_row_index("row")
    ts = times["ts"].to_list()
    sessions = times["session"].to_list()
    shape = (len(ts), len(tickers))
    cols = pl.DataFrame({"ticker": tickers, "col": np.arange(len(tickers))})
    frame = frame.join(times.select("ts", "row"), on="ts").join(cols, on="ticker")
    r = frame["row"].to_numpy().astype(np.int64)
    c = frame["col"].to_numpy()
    arrays = {}
    for name in ("open", "high", "low", "close", "volume", "spread_bps"):
        values = np.full(shape, np.nan)
        values[r, c] = frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        arrays[name] = values
    arrays["volume"] = np.nan_to_num(arrays["volume"], nan=0.0)
    session_end = np.array(
        [i == len(sessions) - 1 or sessions[i + 1] != s for i, s in enumerate(sessions)]
    )
    closes = [session_close[s] for s in sessions]
    minutes_to_close = np.array(
        [(c - t).total_seconds() / 60 - 1 for t, c in zip(ts, closes, strict=True)]
    )
    return MinutePanel(
        tickers=tickers,
        ts=ts,
        session=sessions,
        session_end=session_end,
        minutes_to_close=minutes_to_close,
        **arrays,
    )


def signal_panel(panel: MinutePanel, predictions: pl.DataFrame):
    """Predictions (ticker, ts, expected_bps, confidence, cost_bps) as arrays aligned to ``panel``.

    A prediction at ``ts`` is the model's output on the close of the bar that opened at ``ts``
    (its features use bars completed by then), so the engine reads it on that bar's close."""
    from live.engine.strategy import SignalPanel

    signals = SignalPanel.empty(*panel.shape)
    rows = pl.DataFrame({"ts": panel.ts, "row": np.arange(len(panel.ts))}).with_columns(
        pl.col("ts").cast(predictions.schema["ts"])
    )
    cols = pl.DataFrame({"ticker": panel.tickers, "col": np.arange(len(panel.tickers))})
    placed = predictions.join(rows, on="ts", how="inner").join(cols, on="ticker", how="inner")
    r, c = placed["row"].to_numpy(), placed["col"].to_numpy()
    for name in ("expected_bps", "confidence", "cost_bps"):
        getattr(signals, name)[r, c] = placed[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return signals
