"""Candlestick and range patterns, as Float64 flags: 1/0, or -1/0/1 where the pattern has a side.

A flag is 0 where its inputs are missing (the first bar of a ticker for two-bar patterns, the
first 20 bars for the range break), so "not flagged" and "cannot tell yet" read the same; see
``warmup_bars``. Zero-range bars (high == low) are never flagged. Two-bar patterns compare with
the previous bar of the same ticker, across session boundaries (on 1d bars that is the previous
day). Patterns are shape-only: no trend condition is applied.

Builders are self-contained and take their thresholds as parameters, so a feature's version
changes whenever what it computes changes.
"""

import polars as pl

from ats_assets.features.definition import Feature

FAMILY = "pattern"


def _doji(body_fraction: float) -> pl.Expr:
    width = pl.col("high") - pl.col("low")
    body = (pl.col("close") - pl.col("open")).abs()
    noise = 1e-9 * pl.col("close").abs()  # cent-rounded prices: ties must not hinge on rounding
    flag = (width > noise) & (body <= body_fraction * width + noise)
    return flag.fill_null(False).cast(pl.Float64)


def _engulfing() -> pl.Expr:
    o, c = pl.col("open"), pl.col("close")
    direction = (c - o).sign()  # +1 rising bar, -1 falling, 0 flat
    body = (c - o).abs()
    bottom, top = pl.min_horizontal(o, c), pl.max_horizontal(o, c)
    # Opposite colours, and the current body covers the previous one and is strictly larger.
    engulfs = (
        (direction * direction.shift(1) == -1)
        & (bottom <= bottom.shift(1))
        & (top >= top.shift(1))
        & (body > body.shift(1))
    )
    # The frame is sorted by ticker: the previous row is the same ticker's where the ticker is
    # unchanged (the same values as ``.over("ticker")``, at a third of the time).
    same_ticker = pl.col("ticker") == pl.col("ticker").shift(1)
    return pl.when(engulfs & same_ticker).then(direction).otherwise(0.0).cast(pl.Float64)


def _hammer(shadow_to_body: float, max_opposite_shadow: float) -> pl.Expr:
    o, c, h, lo = pl.col("open"), pl.col("close"), pl.col("high"), pl.col("low")
    width = h - lo
    body = (c - o).abs()
    lower_shadow = pl.min_horizontal(o, c) - lo
    upper_shadow = h - pl.max_horizontal(o, c)
    noise = 1e-9 * c.abs()  # cent-rounded prices: ties must not hinge on rounding
    flag = (
        (width > noise)
        & (lower_shadow >= shadow_to_body * body - noise)
        & (upper_shadow <= max_opposite_shadow * width + noise)
    )
    return flag.fill_null(False).cast(pl.Float64)


def _shooting_star(shadow_to_body: float, max_opposite_shadow: float) -> pl.Expr:
    o, c, h, lo = pl.col("open"), pl.col("close"), pl.col("high"), pl.col("low")
    width = h - lo
    body = (c - o).abs()
    lower_shadow = pl.min_horizontal(o, c) - lo
    upper_shadow = h - pl.max_horizontal(o, c)
    noise = 1e-9 * c.abs()  # cent-rounded prices: ties must not hinge on rounding
    flag = (
        (width > noise)
        & (upper_shadow >= shadow_to_body * body - noise)
        & (lower_shadow <= max_opposite_shadow * width + noise)
    )
    return flag.fill_null(False).cast(pl.Float64)


def _range_break(bars: int) -> pl.Expr:
    prior_high = pl.col("high").shift(1).rolling_max(bars, min_samples=bars)
    prior_low = pl.col("low").shift(1).rolling_min(bars, min_samples=bars)
    up = (pl.col("close") > prior_high).fill_null(False).cast(pl.Float64)
    down = (pl.col("close") < prior_low).fill_null(False).cast(pl.Float64)
    # Window extremes are exact, so they can run down the whole sorted column: a window is the
    # ticker's own where the row ``bars`` back has the same ticker (as ``.over("ticker")``).
    same_ticker = pl.col("ticker") == pl.col("ticker").shift(bars)
    return pl.when(same_ticker).then(up - down).otherwise(0.0)


def _inside_bar() -> pl.Expr:
    h, lo = pl.col("high"), pl.col("low")
    h1, lo1 = h.shift(1), lo.shift(1)
    same_ticker = pl.col("ticker") == pl.col("ticker").shift(1)  # sorted by ticker
    flag = (h <= h1) & (lo >= lo1) & ((h - lo) < (h1 - lo1)) & same_ticker
    return flag.fill_null(False).cast(pl.Float64)


FEATURES: tuple[Feature, ...] = (
    Feature(
        name="doji",
        family=FAMILY,
        build=_doji,
        params={"body_fraction": 0.1},
        description=(
            "Doji, 1/0: |close - open| <= 0.1 x (high - low) (ties up to 1e-9 x price count), "
            "on a bar with a non-zero range."
        ),
    ),
    Feature(
        name="engulfing",
        family=FAMILY,
        build=_engulfing,
        description=(
            "Engulfing pair, -1/0/1: +1 when a rising bar's body (open <= previous close, close "
            ">= previous open) covers a strictly smaller falling previous body, -1 for the mirror "
            "(falling bar engulfing a rising one), else 0."
        ),
        warmup_bars=1,
    ),
    Feature(
        name="hammer",
        family=FAMILY,
        build=_hammer,
        params={"shadow_to_body": 2.0, "max_opposite_shadow": 0.1},
        description=(
            "Hammer shape, 1/0: lower shadow >= 2 x body and upper shadow <= 0.1 x (high - low), "
            "on a bar with a non-zero range (no prior-trend condition)."
        ),
    ),
    Feature(
        name="shooting_star",
        family=FAMILY,
        build=_shooting_star,
        params={"shadow_to_body": 2.0, "max_opposite_shadow": 0.1},
        description=(
            "Shooting-star shape, 1/0: upper shadow >= 2 x body and lower shadow <= 0.1 x "
            "(high - low), on a bar with a non-zero range (no prior-trend condition)."
        ),
    ),
    Feature(
        name="range_break_20",
        family=FAMILY,
        build=_range_break,
        params={"bars": 20},
        description=(
            "20-bar range break, -1/0/1: +1 when the close is above the highest high of the "
            "previous 20 bars (breakout), -1 when below their lowest low (breakdown), else 0. "
            "Not on 1h: 20 hourly bars exceed the two prior sessions the pipeline loads."
        ),
        timeframes=("1m", "5m", "15m", "1d"),
        warmup_bars=20,
    ),
    Feature(
        name="inside_bar",
        family=FAMILY,
        build=_inside_bar,
        description=(
            "Inside bar, 1/0: high <= previous high, low >= previous low and a strictly smaller "
            "range than the previous bar."
        ),
        warmup_bars=1,
    ),
)
