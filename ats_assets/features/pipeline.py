"""Evaluate the feature catalogue for sessions, on five timeframes, without look-ahead.

Sessions are computed in fixed *blocks* of ``BLOCK_SESSIONS`` consecutive sessions of the
calendar (session ordinal // 5). A block is evaluated in one vectorised pass over its sessions
plus the ``MINUTE_LOOKBACK_SESSIONS`` before it (1-minute data) and the
``DAILY_LOOKBACK_SESSIONS`` before it (daily bars). Because features only look backwards, a
session's values depend only on its block's start and the session itself, never on which other
sessions are computed with it: day D is identical computed alone or inside any backfill, and the
extra work for look-back is a fraction of a block rather than a copy per day.

Each timeframe's features are joined back to the 1-minute rows as of ``available_at``: the row of
the bar opening at t (known at t + 1 minute) gets a higher timeframe's values from the last bar
completed by then.
"""

from collections.abc import Sequence
from datetime import date
from itertools import groupby

import numpy as np
import polars as pl

from ats_assets.core.calendar import nyse_calendar
from ats_assets.features.definition import TIMEFRAMES, Feature
from ats_assets.features.frames import MINUTE, resample, sessions_before, ticker_enum

BLOCK_SESSIONS = 5
MINUTE_LOOKBACK_SESSIONS = 2  # 1-minute history before a block (relative volume, warm-ups)
DAILY_LOOKBACK_SESSIONS = 40  # daily indicators (SMA 20, ADX 14 ...) warm up on these
# The most 1-minute / daily history one session can need: its block's earlier sessions too.
MINUTE_HISTORY_SESSIONS = MINUTE_LOOKBACK_SESSIONS + BLOCK_SESSIONS - 1
DAILY_HISTORY_SESSIONS = DAILY_LOOKBACK_SESSIONS + BLOCK_SESSIONS - 1
_IDS = ("session", "ticker", "ts")


def block_start(day: date) -> date:
    """The first session of ``day``'s block."""
    calendar = nyse_calendar()
    index = calendar.session_index(day)
    return calendar.days[index - index % BLOCK_SESSIONS]


def _evaluate(bars: pl.DataFrame, columns: list[pl.Expr]) -> pl.DataFrame:
    """The feature ``columns`` (float32 expressions) over ``bars``, row for row, NaN as null."""
    return bars.select(columns).fill_nan(None)


def _last_completed(base: pl.DataFrame, bars: pl.DataFrame) -> pl.Series:
    """For each row of ``base``, the row of ``bars`` it gets: an index of polars' index type.

    That is the last bar of the row's ticker with ``available_at`` <= the row's ts + 1 minute:
    an as-of join (backward, by ticker) done as one binary search instead of a join, which
    would need both sides sorted by time and the result sorted back. Each ticker's bars must be
    one run of rows in ``available_at`` order (bars sorted by ticker and ts are); ``base`` may
    be in any order. A time becomes its rank among the bars' distinct ``available_at`` and a
    ticker its run number in ``bars``, so (run, rank) makes one int64 key sorted like ``bars``.
    The index is null where the ticker has no bar complete yet (or no bars at all).
    """
    available_at = bars["available_at"].cast(base["ts"].dtype).to_physical().to_numpy()
    known_at = (base["ts"] + MINUTE).to_physical().to_numpy()
    times = np.unique(available_at)
    width = len(times) + 1
    runs = bars["ticker"].rle()
    run_of = dict(zip(runs.struct.field("value"), range(len(runs)), strict=True))
    bar_run = np.repeat(np.arange(len(runs)), runs.struct.field("len").to_numpy())
    bar_keys = bar_run * width + np.searchsorted(times, available_at) + 1
    tickers = base["ticker"].rle()
    row_run = np.repeat(
        np.array([run_of.get(t, -1) for t in tickers.struct.field("value")], dtype=np.int64),
        tickers.struct.field("len").to_numpy(),
    )
    row_keys = row_run * width + np.searchsorted(times, known_at, side="right")
    found = np.searchsorted(bar_keys, row_keys, side="right") - 1
    owner = np.append(bar_run, -1)[found]  # the found bar's run (found = -1 reads the -1)
    unmatched = (found < 0) | (owner != row_run)
    return pl.Series(np.ma.masked_array(found, mask=unmatched)).cast(pl.get_index_type())


def _compute_block(
    minute: pl.DataFrame,
    intraday: dict[str, pl.DataFrame],
    daily: pl.DataFrame,
    days: list[date],
    columns: dict[str, list[pl.Expr]],
) -> pl.DataFrame:
    """The feature ``columns`` of each timeframe for ``days``, sessions of one block.

    ``intraday`` holds the 5m / 15m / 1h bars of ``minute`` (see :func:`compute_days`).
    """
    start = block_start(days[0])
    first_minute = sessions_before(start, MINUTE_LOOKBACK_SESSIONS)[0]
    first_daily = sessions_before(start, DAILY_LOOKBACK_SESSIONS)[0]
    window = minute.filter(pl.col("session").is_between(first_minute, days[-1]))  # ticker, ts order
    requested = window["session"].is_in(days)
    base = window.select(_IDS).filter(requested)
    parts = [base.with_columns(pl.col("ticker").cast(pl.String))]  # the Enum stays internal
    for timeframe, exprs in columns.items():
        if not exprs:
            continue
        if timeframe == "1m":  # each row is its own bar: no join, same order as base
            parts.append(_evaluate(window, exprs).filter(requested))
            continue
        if timeframe == "1d":
            bars = daily.filter(pl.col("session").is_between(first_daily, days[-1]))
            bars = bars.sort("ticker", "ts")
        else:
            bars = intraday[timeframe].filter(pl.col("session").is_between(first_minute, days[-1]))
        rows = _last_completed(base, bars)
        # Indexing with a Series of the index type is a plain gather (half the time of a
        # select of gathers); a null index gives a null row.
        parts.append(_evaluate(bars, exprs)[rows])
    return pl.concat(parts, how="horizontal")


def compute_days(
    minute: pl.DataFrame, daily: pl.DataFrame, days: Sequence[date], features: Sequence[Feature]
) -> pl.DataFrame:
    """Features of every 1-minute row of the sessions ``days``.

    Rows come block by block (blocks in time order), each block sorted by ticker and ts.

    ``minute`` is the minute frame (``frames.minute_frame``, sorted by ticker and ts) and
    ``daily`` the 1d bars (``frames.resample(..., "1d")``), both covering
    ``MINUTE_HISTORY_SESSIONS`` / ``DAILY_HISTORY_SESSIONS`` before the earliest day; other rows
    do not influence the result.
    """
    blocks = [list(group) for _, group in groupby(sorted(set(days)), key=block_start)]
    spans = [
        (sessions_before(block_start(block[0]), MINUTE_LOOKBACK_SESSIONS)[0], block[-1])
        for block in blocks
    ]
    built = [(f, f.expr().cast(pl.Float32)) for f in features]  # once, for every block
    columns = {
        timeframe: [
            expr.alias(f.column(timeframe)) for f, expr in built if timeframe in f.timeframes
        ]
        for timeframe in TIMEFRAMES
    }
    # The 1-minute rows that some block reads, in one chunk (many chunks slow the group-bys and
    # make every NumPy view of a column a copy), and their bars: a bar lies within one session,
    # so it is the same whichever sessions are resampled with it, and each timeframe is
    # resampled once rather than once per block with its look-back. While computing, tickers
    # are an Enum of the sorted tickers: its codes keep the frames' order, and the indicator
    # kernels take a ticker's codes as its segment instead of a pass over the strings (about
    # 2 ms per indicator on 150 tickers x 20 sessions).
    tickers = ticker_enum(minute["ticker"], daily["ticker"])
    minute = (
        minute.filter(pl.any_horizontal([pl.col("session").is_between(*span) for span in spans]))
        .with_columns(pl.col("ticker").cast(tickers))
        .rechunk()
    )
    daily = daily.with_columns(pl.col("ticker").cast(tickers))
    intraday = {
        tf: resample(minute, tf) for tf in TIMEFRAMES if tf not in ("1m", "1d") and columns[tf]
    }
    return pl.concat([_compute_block(minute, intraday, daily, block, columns) for block in blocks])


def compute_day(
    minute: pl.DataFrame, daily: pl.DataFrame, day: date, features: Sequence[Feature]
) -> pl.DataFrame:
    """Features of every 1-minute row of session ``day`` (see :func:`compute_days`)."""
    return compute_days(minute, daily, [day], features)
