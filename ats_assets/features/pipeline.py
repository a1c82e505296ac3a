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

import polars as pl

from ats_assets.core.calendar import nyse_calendar
from ats_assets.features.definition import TIMEFRAMES, Feature
from ats_assets.features.frames import MINUTE, resample, sessions_before

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


def _evaluate(bars: pl.DataFrame, features: Sequence[Feature], timeframe: str) -> pl.DataFrame:
    """The feature columns of ``bars`` (float32), row for row."""
    return bars.select([f.expr().cast(pl.Float32).alias(f.column(timeframe)) for f in features])


def _compute_block(
    minute: pl.DataFrame, daily: pl.DataFrame, days: Sequence[date], features: Sequence[Feature]
) -> pl.DataFrame:
    start = block_start(days[0])
    last = max(days)
    first_minute = sessions_before(start, MINUTE_LOOKBACK_SESSIONS)[0]
    first_daily = sessions_before(start, DAILY_LOOKBACK_SESSIONS)[0]
    window = minute.filter(pl.col("session").is_between(first_minute, last))  # ticker, ts order
    requested = window["session"].is_in(list(days))
    base = window.filter(requested).select(_IDS)
    # Rows in base order, re-sorted by when each row's bar is known, for the as-of joins.
    keys = (
        base.select("ticker", known_at=pl.col("ts") + MINUTE)
        .with_row_index("_pos")
        .sort("known_at")
    )
    parts = [base]
    for timeframe in TIMEFRAMES:
        chosen = [f for f in features if timeframe in f.timeframes]
        if not chosen:
            continue
        if timeframe == "1m":  # each row is its own bar: no join, same order as base
            parts.append(_evaluate(window, chosen, timeframe).filter(requested))
            continue
        if timeframe == "1d":
            bars = daily.filter(pl.col("session").is_between(first_daily, last)).sort(
                "ticker", "ts"
            )
        else:
            bars = resample(window, timeframe)
        values = pl.concat(
            [bars.select("ticker", "available_at"), _evaluate(bars, chosen, timeframe)],
            how="horizontal",
        ).sort("available_at")
        joined = keys.join_asof(
            values,
            left_on="known_at",
            right_on="available_at",
            by="ticker",
            strategy="backward",
            check_sortedness=False,  # both sides are sorted by their keys just above
        )
        parts.append(joined.sort("_pos").select([f.column(timeframe) for f in chosen]))
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
    out = pl.concat([_compute_block(minute, daily, block, features) for block in blocks])
    feature_columns = [c for c in out.columns if c not in _IDS]
    return out.with_columns(pl.col(feature_columns).fill_nan(None))


def compute_day(
    minute: pl.DataFrame, daily: pl.DataFrame, day: date, features: Sequence[Feature]
) -> pl.DataFrame:
    """Features of every 1-minute row of session ``day`` (see :func:`compute_days`)."""
    return compute_days(minute, daily, [day], features)
