"""Trend: distance from moving averages, ADX, Aroon and the slope of a regression line.

Scale-free: distances are fractions of the average, the slope is in log-price per bar, ADX and
Aroon are on TA-Lib's fixed 0-100 (oscillator -100-100) scales. Indicators run on the bars of each
timeframe, continuously across sessions, and are null during each ticker's warm-up
(``warmup_bars``: TA-Lib's lookback).

Every feature carries ``impl`` (a digest of the indicators module) among its parameters, so that
its version changes when the shared indicator code does. Features whose warm-up exceeds the 14
hourly bars of the two prior sessions the pipeline loads are not computed on 1h; the 50-bar
average is not computed on 1d either (the pipeline loads 40 prior daily bars).
"""

import polars as pl

from ats_assets.features import indicators as ind
from ats_assets.features.definition import Feature

FAMILY = "trend"
NOT_1H = ("1m", "5m", "15m", "1d")


def _sma_distance(period: int, impl: str) -> pl.Expr:
    del impl  # versioning only
    return pl.col("close") / ind.sma("close", period) - 1.0


def _ema_distance(period: int, impl: str) -> pl.Expr:
    del impl
    return pl.col("close") / ind.ema("close", period) - 1.0


def _adx(period: int, impl: str) -> pl.Expr:
    del impl
    return ind.adx("high", "low", "close", period)


def _aroon(period: int, output: str, impl: str) -> pl.Expr:
    del impl
    if output == "oscillator":
        return ind.aroon_osc("high", "low", period)
    down, up = ind.aroon("high", "low", period)
    return up if output == "up" else down


def _log_slope(period: int, impl: str) -> pl.Expr:
    del impl
    return ind.linreg_slope(pl.col("close").log(), period)


FEATURES: tuple[Feature, ...] = (
    Feature(
        name="sma_distance_20",
        family=FAMILY,
        build=_sma_distance,
        params={"period": 20, "impl": ind.VERSION},
        description="Close relative to its 20-bar simple moving average: close / SMA(20) - 1.",
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("sma", period=20),
    ),
    Feature(
        name="sma_distance_50",
        family=FAMILY,
        build=_sma_distance,
        params={"period": 50, "impl": ind.VERSION},
        description="Close relative to its 50-bar simple moving average: close / SMA(50) - 1.",
        timeframes=("1m", "5m", "15m"),
        warmup_bars=ind.lookback("sma", period=50),
    ),
    Feature(
        name="ema_distance_20",
        family=FAMILY,
        build=_ema_distance,
        params={"period": 20, "impl": ind.VERSION},
        description=(
            "Close relative to its 20-bar exponential moving average (TA-Lib EMA, seeded with the "
            "SMA): close / EMA(20) - 1."
        ),
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("ema", period=20),
    ),
    Feature(
        name="adx_14",
        family=FAMILY,
        build=_adx,
        params={"period": 14, "impl": ind.VERSION},
        description=(
            "Average directional index over 14 bars, 0-100 (TA-Lib ADX): trend strength whatever "
            "its direction; above ~25 reads as trending."
        ),
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("adx", period=14),
    ),
    Feature(
        name="aroon_up_14",
        family=FAMILY,
        build=_aroon,
        params={"period": 14, "output": "up", "impl": ind.VERSION},
        description=(
            "Aroon up, 0-100: 100 * (14 - bars since the highest high of the last 15 bars) / 14 "
            "(TA-Lib AROON; the most recent high when tied)."
        ),
        warmup_bars=ind.lookback("aroon", period=14),
    ),
    Feature(
        name="aroon_down_14",
        family=FAMILY,
        build=_aroon,
        params={"period": 14, "output": "down", "impl": ind.VERSION},
        description=(
            "Aroon down, 0-100: 100 * (14 - bars since the lowest low of the last 15 bars) / 14 "
            "(TA-Lib AROON; the most recent low when tied)."
        ),
        warmup_bars=ind.lookback("aroon", period=14),
    ),
    Feature(
        name="aroon_osc_14",
        family=FAMILY,
        build=_aroon,
        params={"period": 14, "output": "oscillator", "impl": ind.VERSION},
        description="Aroon oscillator, -100-100: Aroon up - Aroon down (TA-Lib AROONOSC).",
        warmup_bars=ind.lookback("aroon_osc", period=14),
    ),
    Feature(
        name="log_slope_20",
        family=FAMILY,
        build=_log_slope,
        params={"period": 20, "impl": ind.VERSION},
        description=(
            "Slope of the least-squares line through the last 20 log closes, in log-price per bar "
            "(about the fractional drift per bar; TA-Lib LINEARREG_SLOPE of ln(close))."
        ),
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("linreg_slope", period=20),
    ),
)
