"""Volatility: ATR, realized, Parkinson and Garman-Klass volatility, Bollinger width and %B.

All scale-free: ATR as a fraction of the close, volatilities of log prices per bar (not
annualised: multiply by sqrt(bars per year) to annualise), band width as a fraction of the middle
band. Windows run on the bars of each timeframe, continuously across sessions (so overnight gaps
count as one bar's move), and are null during each ticker's warm-up (``warmup_bars``) and while
they hold a bar whose prices are missing (null) or give no finite log (a price of 0).

Every feature carries ``impl`` (a digest of the indicators module) among its parameters, so that
its version changes when the shared indicator code does. Features whose warm-up exceeds the 14
hourly bars of the two prior sessions the pipeline loads are not computed on 1h.
"""

import math

import polars as pl

from ats_assets.features import indicators as ind
from ats_assets.features.definition import Feature

FAMILY = "volatility"
NOT_1H = ("1m", "5m", "15m", "1d")


def _atr_fraction(period: int, impl: str) -> pl.Expr:
    del impl  # versioning only
    return ind.natr("high", "low", "close", period) / 100.0


def _realized(period: int, impl: str) -> pl.Expr:
    del impl
    log_return = (pl.col("close") / pl.col("close").shift(1)).log()  # row 0: another ticker's
    return ind.window_std(log_return, period, ddof=1, skip=1)


def _parkinson(period: int, impl: str) -> pl.Expr:
    del impl
    log_range = (pl.col("high") / pl.col("low")).log()
    variance = ind.window_mean(log_range * log_range, period) / (4.0 * math.log(2.0))
    return variance.sqrt()


def _garman_klass(period: int, impl: str) -> pl.Expr:
    del impl
    log_range = (pl.col("high") / pl.col("low")).log()
    log_body = (pl.col("close") / pl.col("open")).log()
    per_bar = 0.5 * log_range * log_range - (2.0 * math.log(2.0) - 1.0) * log_body * log_body
    return ind.window_mean(per_bar, period).clip(lower_bound=0.0).sqrt()


def _bb_width(period: int, nbdev: float, impl: str) -> pl.Expr:
    del impl
    return ind.bbands_width("close", period, nbdev)


def _bb_percent_b(period: int, nbdev: float, impl: str) -> pl.Expr:
    del impl
    return ind.bbands_percent_b("close", period, nbdev)


FEATURES: tuple[Feature, ...] = (
    Feature(
        name="atr_fraction_14",
        family=FAMILY,
        build=_atr_fraction,
        params={"period": 14, "impl": ind.VERSION},
        description=(
            "Average true range over 14 bars (Wilder's smoothing, TA-Lib ATR) as a fraction of the "
            "close: TA-Lib NATR / 100."
        ),
        warmup_bars=ind.lookback("natr", period=14),
    ),
    Feature(
        name="realized_vol_20",
        family=FAMILY,
        build=_realized,
        params={"period": 20, "impl": ind.VERSION},
        description=(
            "Realized volatility: sample standard deviation of the last 20 one-bar log returns of "
            "the close, per bar (not annualised)."
        ),
        timeframes=NOT_1H,
        warmup_bars=20,
    ),
    Feature(
        name="parkinson_vol_20",
        family=FAMILY,
        build=_parkinson,
        params={"period": 20, "impl": ind.VERSION},
        description=(
            "Parkinson volatility over 20 bars, per bar: sqrt(mean(ln(high / low)^2) / (4 ln 2)); "
            "uses the bars' ranges, so it ignores moves between bars."
        ),
        timeframes=NOT_1H,
        warmup_bars=19,
    ),
    Feature(
        name="garman_klass_vol_20",
        family=FAMILY,
        build=_garman_klass,
        params={"period": 20, "impl": ind.VERSION},
        description=(
            "Garman-Klass volatility over 20 bars, per bar: sqrt(mean(0.5 ln(high / low)^2 - "
            "(2 ln 2 - 1) ln(close / open)^2)); range and open-to-close based, ignores gaps."
        ),
        timeframes=NOT_1H,
        warmup_bars=19,
    ),
    Feature(
        name="bb_width_20",
        family=FAMILY,
        build=_bb_width,
        params={"period": 20, "nbdev": 2.0, "impl": ind.VERSION},
        description=(
            "Bollinger band width as a fraction of the middle band: (upper - lower) / SMA(20) = "
            "4 x the 20-bar population standard deviation of the close / SMA(20) (TA-Lib BBANDS)."
        ),
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("bbands", period=20),
    ),
    Feature(
        name="bb_percent_b_20",
        family=FAMILY,
        build=_bb_percent_b,
        params={"period": 20, "nbdev": 2.0, "impl": ind.VERSION},
        description=(
            "Bollinger %B: (close - lower band) / (upper - lower) for the 20-bar, 2-deviation "
            "bands; 0 at the lower band, 1 at the upper, outside 0-1 beyond them; 0.5 when the "
            "bands collapse."
        ),
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("bbands", period=20),
    ),
)
