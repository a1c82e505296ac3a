"""Evaluate the feature catalogue for sessions, on five timeframes, without look-ahead.

Sessions are computed in fixed *blocks* of ``BLOCK_SESSIONS`` consecutive sessions of the
calendar (session ordinal // 5). A block is evaluated in one vectorised pass over its sessions
plus the ``DAILY_LOOKBACK_SESSIONS`` before it (daily bars) and, on 1-minute data, the sessions
its features' warm-ups need: one for most, ``MINUTE_LOOKBACK_SESSIONS`` for the longer ones
(see :func:`minute_lookback`); the 5m/15m/1h bars of the ``MINUTE_LOOKBACK_SESSIONS``.
Because features only look backwards, a session's values depend only on its block's start and
the session itself, never on which other sessions are computed with it: day D is identical
computed alone or inside any backfill, and the extra work for look-back is a fraction of a block
rather than a copy per day.

Each timeframe's features are joined back to the 1-minute rows as of ``available_at``: the row of
the bar opening at t (known at t + 1 minute) gets a higher timeframe's values from the last bar
completed by then.
"""

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from functools import partial
from itertools import groupby

import numpy as np
import polars as pl

from ats_assets.core.calendar import nyse_calendar
from ats_assets.features.definition import TIMEFRAMES, Feature
from ats_assets.features.frames import (
    MINUTE,
    epoch_ns,
    resample,
    sessions_before,
    ticker_codes,
    ticker_enum,
)

BLOCK_SESSIONS = 5
BLOCKS_AT_ONCE = 2  # blocks computed at the same time (threads)
MINUTE_LOOKBACK_SESSIONS = 2  # the most 1-minute history a block gives a feature (minute_lookback)
SHORTEST_SESSION_MINUTES = 210  # 1-minute bars of a half day (a regular session has 390)
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


def _last_completed(
    base: pl.DataFrame, bars: pl.DataFrame, keys: tuple[np.ndarray, np.ndarray] | None = None
) -> pl.Series:
    """For each row of ``base``, the row of ``bars`` it gets: an index of polars' index type.

    That is the last bar of the row's ticker with ``available_at`` <= the row's ts + 1 minute:
    an as-of join (backward, by ticker) done as one compiled pass (``minute_kernels.as_of``)
    instead of a join, which would need both sides sorted by time and the result sorted back.
    ``bars`` must be sorted by ticker with ``available_at`` ascending within each ticker (bars
    sorted by ticker and ts are); ``base`` may be in any order. The index is null where the
    ticker has no bar complete yet (or no bars at all). ``keys``, :func:`_row_keys` of ``base``,
    saves computing them again when several timeframes join the same rows.
    """
    from ats_assets.features import minute_kernels as mk  # numba: loaded on first use

    row_ticker, bar_ticker = base["ticker"], bars["ticker"]
    tickers = row_ticker.dtype
    if not (isinstance(tickers, pl.Enum) and bar_ticker.dtype == tickers):  # the pipeline's
        row_ticker, bar_ticker = row_ticker.cast(pl.String), bar_ticker.cast(pl.String)
        tickers = ticker_enum(row_ticker, bar_ticker)
        keys = _row_keys(base.with_columns(row_ticker.cast(tickers)))
    row_code, row_time = keys or _row_keys(base)
    found, ordered = mk.as_of(
        ticker_codes(bar_ticker, tickers),
        epoch_ns(bars["available_at"]),
        len(tickers.categories) + 1,
        row_code,
        row_time,
    )
    if not ordered:
        raise ValueError("bars must be sorted by ticker, then available_at within each ticker")
    return pl.Series(np.ma.masked_array(found, mask=found < 0)).cast(pl.get_index_type())


def _row_keys(base: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`_last_completed` matches ``base``'s rows on (``ticker`` an Enum): the ticker's
    code and the time the row's bar completes (ts + 1 minute) in nanoseconds."""
    return ticker_codes(base["ticker"], base["ticker"].dtype), epoch_ns(base["ts"] + MINUTE)


def minute_lookback(feature: Feature) -> int:
    """Sessions of 1-minute history a block gives ``feature`` on 1m: enough for its warm-up
    even when they are half days (one for up to ``SHORTEST_SESSION_MINUTES`` bars), at least one
    (recursive filters such as EMA and ADX then start 210 bars or more before the block), at most
    ``MINUTE_LOOKBACK_SESSIONS``."""
    sessions = -(-feature.warmup_bars // SHORTEST_SESSION_MINUTES)
    return min(MINUTE_LOOKBACK_SESSIONS, max(1, sessions))


def _evaluate_minutes(
    minute: pl.DataFrame, start: date, days: list[date], groups: dict[int, list[pl.Expr]]
) -> pl.DataFrame:
    """The 1m feature expressions of ``groups`` (by sessions of look-back) for ``days``, rows in
    ``minute``'s order: each group on its own look-back and only the columns it reads, so the
    many features that need one session of history do not carry a second one."""
    parts = []
    for sessions, exprs in groups.items():
        first = sessions_before(start, sessions)[0]
        read = {"session", *(name for e in exprs for name in e.meta.root_names())}
        window = minute.select(c for c in minute.columns if c in read)
        window = window.filter(pl.col("session").is_between(first, days[-1]))
        parts.append(_evaluate(window, exprs).filter(window["session"].is_in(days)))
    return pl.concat(parts, how="horizontal")


def _compute_block(
    minute: pl.DataFrame,
    intraday: dict[str, pl.DataFrame],
    daily: pl.DataFrame,
    days: list[date],
    columns: dict[str, list[pl.Expr]],
    minute_groups: dict[int, list[pl.Expr]],
) -> pl.DataFrame:
    """The feature ``columns`` of each timeframe for ``days``, sessions of one block.

    ``intraday`` holds the 5m / 15m / 1h bars of ``minute``, ``minute_groups`` the 1m features
    by their look-back (see :func:`compute_days`).
    """
    start = block_start(days[0])
    first_minute = sessions_before(start, MINUTE_LOOKBACK_SESSIONS)[0]
    first_daily = sessions_before(start, DAILY_LOOKBACK_SESSIONS)[0]
    base = minute.select(_IDS).filter(pl.col("session").is_in(days))  # ticker, ts order
    parts = [base.with_columns(pl.col("ticker").cast(pl.String))]  # the Enum stays internal
    keys = _row_keys(base)  # once for the four timeframes joined back
    for timeframe, exprs in columns.items():
        if not exprs:
            continue
        if timeframe == "1m":  # each row is its own bar: no join, same order as base
            evaluated = _evaluate_minutes(minute, start, days, minute_groups)
            parts.append(evaluated.select(e.meta.output_name() for e in exprs))
            continue
        if timeframe == "1d":
            bars = daily.filter(pl.col("session").is_between(first_daily, days[-1]))
            bars = bars.sort("ticker", "ts")
        else:
            bars = intraday[timeframe].filter(pl.col("session").is_between(first_minute, days[-1]))
        rows = _last_completed(base, bars, keys)
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
    minute_groups: dict[int, list[pl.Expr]] = {}
    for f, expr in built:
        if "1m" in f.timeframes:
            minute_groups.setdefault(minute_lookback(f), []).append(expr.alias(f.column("1m")))
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
    # The three resamplings in threads: their compiled passes release the GIL (1 core idle else).
    wanted = [tf for tf in TIMEFRAMES if tf not in ("1m", "1d") and columns[tf]]
    with ThreadPoolExecutor(max(1, min(len(wanted), os.cpu_count() or 1))) as pool:
        intraday = dict(zip(wanted, pool.map(partial(resample, minute), wanted), strict=True))

    # Two blocks at a time: one block's serial stretches (Python between the selects, filters,
    # the kernels' GIL-held wrappers) overlap the other's parallel work. On the 2-core machine
    # features took 4-12% less time in six alternating pairs, for one more block's temporaries.
    def compute(block: list[date]) -> pl.DataFrame:
        return _compute_block(minute, intraday, daily, block, columns, minute_groups)

    with ThreadPoolExecutor(max(1, min(BLOCKS_AT_ONCE, len(blocks)))) as pool:
        return pl.concat(list(pool.map(compute, blocks)))  # in block order


def compute_day(
    minute: pl.DataFrame, daily: pl.DataFrame, day: date, features: Sequence[Feature]
) -> pl.DataFrame:
    """Features of every 1-minute row of session ``day`` (see :func:`compute_days`)."""
    return compute_days(minute, daily, [day], features)
