"""Which tickers to trade and on which bar timeframe: the active list, the focus list, the timeframe.

The active list (``MAX_ACTIVE_TICKERS``) is chosen once before the session from daily bars of the
sessions before it; the focus list (``FOCUS_UNIVERSE_SIZE``) is chosen from the active list with
the models' recent confidence added. Scores are means of percentile ranks, so no one statistic's
scale (dollars, fractions) dominates.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

STAT_COLUMNS = ("dollar_volume", "volatility", "price", "sessions")


def selection_stats(daily_bars: pl.DataFrame, as_of: date, lookback: int = 20) -> pl.DataFrame:
    """Per ticker, statistics of its last ``lookback`` sessions strictly before ``as_of``.

    ``daily_bars``: ticker, session (date), open, high, low, close (dollars), volume (shares).
    Returns ticker, ``dollar_volume`` (median close * volume, dollars), ``volatility`` (mean true
    range / close, a fraction), ``price`` (last close, dollars) and ``sessions`` (count).
    The session ``as_of`` itself is excluded: it is the one being traded.
    """
    if lookback < 1:
        raise ValueError(f"lookback must be at least one session, got {lookback}")
    prev_close = pl.col("close").shift(1).over("ticker")
    # max_horizontal skips nulls, so a ticker's first session has the plain high-low range
    true_range = pl.max_horizontal(
        pl.col("high") - pl.col("low"),
        (pl.col("high") - prev_close).abs(),
        (pl.col("low") - prev_close).abs(),
    )
    position_from_end = pl.int_range(pl.len(), 0, -1).over("ticker")
    return (
        daily_bars.lazy()
        .filter(pl.col("session") < as_of)
        .sort("ticker", "session")
        # the true range is taken before the window is cut, so its first session has a prior close
        .with_columns(true_range=true_range)
        .filter(position_from_end <= lookback)
        .group_by("ticker")
        .agg(
            dollar_volume=(pl.col("close") * pl.col("volume")).median(),
            volatility=(pl.col("true_range") / pl.col("close")).mean(),
            price=pl.col("close").sort_by("session").last(),
            sessions=pl.len().cast(pl.Int64),
        )
        .sort("ticker")
        .collect()
    )


def _rank(column: str) -> pl.Expr:
    """1 = lowest value, ties share their mean rank; divided by the count it is a percentile."""
    return pl.col(column).rank("average")


def _top(scored: pl.DataFrame, score: str, rank: str, n: int) -> pl.DataFrame:
    """The ``n`` best by ``score`` (ties by ticker), numbered 1.. in ``rank``."""
    return (
        scored.sort([score, "ticker"], descending=[True, False])
        .head(n)
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(rank))
    )


def select_active(
    stats: pl.DataFrame, n: int, min_price: float = 5.0, min_dollar_volume: float = 1e6
) -> pl.DataFrame:
    """The ``n`` most liquid and volatile names of ``selection_stats`` output.

    Names under ``min_price`` (dollars) or ``min_dollar_volume`` (dollars per session) are left
    out; the rest score the mean of their percentile ranks (in (0, 1]) of dollar volume and
    volatility. Returns ticker, score, rank (1 = best) and the stats columns, best first.
    """
    eligible = stats.filter(
        pl.col("price").is_finite()
        & pl.col("dollar_volume").is_finite()
        & pl.col("volatility").is_finite()
        # polars orders NaN above every number, hence the is_finite checks before these
        & (pl.col("price") >= min_price)
        & (pl.col("dollar_volume") >= min_dollar_volume)
    )
    # summing ranks before dividing keeps equal scores exactly equal, so ties go by ticker
    score = (_rank("dollar_volume") + _rank("volatility")) / (2.0 * pl.len())
    scored = eligible.with_columns(score=score)
    return _top(scored, "score", "rank", n).select(
        "ticker", "score", "rank", *[c for c in STAT_COLUMNS if c in stats.columns]
    )


def select_focus(
    active: pl.DataFrame,
    confidence: pl.DataFrame,
    n: int,
    weights: tuple[float, float, float] = (1.0, 1.0, 2.0),
) -> pl.DataFrame:
    """The ``n`` active names the engine watches most closely.

    ``confidence``: ticker, confidence (the models' mean recent confidence; a ticker missing from
    it, or with NaN, counts as 0). The focus score is the ``weights``-weighted mean of the
    percentile ranks of liquidity (dollar volume), volatility and confidence, in (0, 1].
    Returns ticker, focus_score, focus_rank (1 = best), best first.
    """
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights must be three non-negative numbers, not all 0; got {weights}")
    w_liquidity, w_volatility, w_confidence = weights
    mean_confidence = confidence.group_by("ticker").agg(pl.col("confidence").mean())
    joined = active.join(mean_confidence, on="ticker", how="left").with_columns(
        pl.col("confidence").cast(pl.Float64).fill_nan(0.0).fill_null(0.0)
    )
    weighted_ranks = (
        w_liquidity * _rank("dollar_volume")
        + w_volatility * _rank("volatility")
        + w_confidence * _rank("confidence")
    )
    scored = joined.with_columns(focus_score=weighted_ranks / (sum(weights) * pl.len()))
    return _top(scored, "focus_score", "focus_rank", n).select(
        "ticker", "focus_score", "focus_rank"
    )


def efficiency_ratio(closes: np.ndarray) -> float:
    """Kaufman's efficiency ratio: |net change| / sum of |changes|, in [0, 1]; 0 for a flat series."""
    closes = np.asarray(closes, dtype=np.float64)
    path = np.abs(np.diff(closes)).sum()
    if closes.size < 2 or path == 0:
        return 0.0
    return float(abs(closes[-1] - closes[0]) / path)


def _forward_fill(values: np.ndarray) -> np.ndarray:
    """Each NaN takes the last finite value before it; leading NaNs are dropped."""
    finite = np.isfinite(values)
    if not finite.any():
        return values[:0]
    last_seen = np.maximum.accumulate(np.where(finite, np.arange(values.size), 0))
    return values[last_seen][np.argmax(finite) :]


def select_timeframe(
    closes: np.ndarray, timeframes: tuple[int, ...] = (1, 5, 15), min_changes: int = 3
) -> int:
    """The bar timeframe (minutes) on which one ticker's recent price path is cleanest.

    ``closes``: the ticker's recent 1-minute closes (dollars, oldest first; NaN = no bar, which
    carries the previous close). Each timeframe samples every ``m``-th close ending at the latest
    one; the timeframe with the highest efficiency ratio wins. Ties, and timeframes with fewer than
    ``min_changes`` resampled changes, go to the shortest timeframe.
    """
    if not timeframes or min(timeframes) < 1:
        raise ValueError(f"timeframes must be whole minutes >= 1, got {timeframes}")
    path = _forward_fill(np.asarray(closes, dtype=np.float64).ravel())
    best, best_ratio = min(timeframes), -1.0
    for minutes in sorted(timeframes):
        # aligned to the end so every timeframe ends on the latest close
        sampled = path[(path.size - 1) % minutes :: minutes] if path.size else path
        if sampled.size - 1 < min_changes:
            continue
        ratio = efficiency_ratio(sampled)
        # a margin so float rounding on equally clean paths does not break the tie to the shortest
        if ratio > best_ratio + 1e-12:
            best, best_ratio = minutes, ratio
    return best


def timeframe_atr_scale(minutes: int) -> float:
    """Factor from a 1-minute ATR to an ATR on ``minutes``-minute bars: sqrt(minutes).

    Assumes a random walk (ranges grow with the square root of time); trending names will have
    larger real ranges, mean-reverting ones smaller.
    """
    if minutes < 1:
        raise ValueError(f"minutes must be >= 1, got {minutes}")
    return float(np.sqrt(minutes))
