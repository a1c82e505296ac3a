"""Momentum oscillators: RSI, MACD, rate of change, stochastic, Williams' %R and CCI.

Values are TA-Lib's (:mod:`ats_assets.features.indicators` reproduces them), on the bars of each
timeframe, continuously across sessions; they are scale-free as defined (oscillators on fixed
scales, percentages), except the MACD lines, which are in price units and are therefore divided by
the close. Null during each ticker's warm-up (``warmup_bars``: TA-Lib's lookback).

Every feature carries ``impl`` (a digest of the indicators module) among its parameters, so that
its version changes when the shared indicator code does, not only when its builder here does.
Features whose warm-up exceeds the 14 hourly bars of the two prior sessions the pipeline loads are
not computed on 1h.
"""

import polars as pl

from ats_assets.features import indicators as ind
from ats_assets.features.definition import Feature

FAMILY = "momentum"
NOT_1H = ("1m", "5m", "15m", "1d")


def _rsi(period: int, impl: str) -> pl.Expr:
    del impl  # versioning only
    return ind.rsi("close", period)


def _macd(fast: int, slow: int, signal: int, output: str, impl: str) -> pl.Expr:
    del impl
    line, signal_line, histogram = ind.macd("close", fast, slow, signal)
    value = {"line": line, "signal": signal_line, "histogram": histogram}[output]
    return value / pl.col("close")


def _roc(period: int, impl: str) -> pl.Expr:
    del impl
    return ind.roc("close", period)


def _stoch(
    fastk_period: int, slowk_period: int, slowd_period: int, output: str, impl: str
) -> pl.Expr:
    del impl
    k, d = ind.stoch("high", "low", "close", fastk_period, slowk_period, slowd_period)
    return k if output == "k" else d


def _willr(period: int, impl: str) -> pl.Expr:
    del impl
    return ind.willr("high", "low", "close", period)


def _cci(period: int, impl: str) -> pl.Expr:
    del impl
    return ind.cci("high", "low", "close", period)


_MACD = {"fast": 12, "slow": 26, "signal": 9, "impl": ind.VERSION}
_STOCH = {"fastk_period": 14, "slowk_period": 3, "slowd_period": 3, "impl": ind.VERSION}

FEATURES: tuple[Feature, ...] = (
    Feature(
        name="rsi_14",
        family=FAMILY,
        build=_rsi,
        params={"period": 14, "impl": ind.VERSION},
        description=(
            "Relative strength index over 14 bars, 0-100 (TA-Lib RSI: Wilder's smoothing of gains "
            "and losses, 100 * gain / (gain + loss)); above 70 / below 30 read as overbought / "
            "oversold."
        ),
        warmup_bars=ind.lookback("rsi", period=14),
    ),
    Feature(
        name="macd_12_26_9",
        family=FAMILY,
        build=_macd,
        params={**_MACD, "output": "line"},
        description=(
            "MACD line (EMA 12 - EMA 26 of the close, TA-Lib MACD) as a fraction of the close: "
            "positive when the short-term average is above the long-term one."
        ),
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("macd"),
    ),
    Feature(
        name="macd_signal_12_26_9",
        family=FAMILY,
        build=_macd,
        params={**_MACD, "output": "signal"},
        description=(
            "MACD signal line (EMA 9 of the MACD line, TA-Lib MACD) as a fraction of the close."
        ),
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("macd"),
    ),
    Feature(
        name="macd_hist_12_26_9",
        family=FAMILY,
        build=_macd,
        params={**_MACD, "output": "histogram"},
        description=(
            "MACD histogram (MACD line - signal line, TA-Lib MACD) as a fraction of the close; "
            "its sign change is the classic MACD crossover."
        ),
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("macd"),
    ),
    Feature(
        name="roc_10",
        family=FAMILY,
        build=_roc,
        params={"period": 10, "impl": ind.VERSION},
        description=(
            "Rate of change of the close over 10 bars in percent: 100 * (close / close 10 bars "
            "ago - 1) (TA-Lib ROC)."
        ),
        warmup_bars=ind.lookback("roc", period=10),
    ),
    Feature(
        name="stoch_k_14_3_3",
        family=FAMILY,
        build=_stoch,
        params={**_STOCH, "output": "k"},
        description=(
            "Slow stochastic %K, 0-100: where the close sits in the 14-bar high-low range "
            "(100 = at the high), smoothed by a 3-bar SMA (TA-Lib STOCH 14, 3, 3 SMA); 0 on a flat "
            "range."
        ),
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("stoch"),
    ),
    Feature(
        name="stoch_d_14_3_3",
        family=FAMILY,
        build=_stoch,
        params={**_STOCH, "output": "d"},
        description="Slow stochastic %D, 0-100: 3-bar SMA of slow %K (TA-Lib STOCH 14, 3, 3 SMA).",
        timeframes=NOT_1H,
        warmup_bars=ind.lookback("stoch"),
    ),
    Feature(
        name="willr_14",
        family=FAMILY,
        build=_willr,
        params={"period": 14, "impl": ind.VERSION},
        description=(
            "Williams' %R over 14 bars, -100 (close at the 14-bar low) to 0 (at the high) "
            "(TA-Lib WILLR); 0 on a flat range."
        ),
        warmup_bars=ind.lookback("willr", period=14),
    ),
    Feature(
        name="cci_14",
        family=FAMILY,
        build=_cci,
        params={"period": 14, "impl": ind.VERSION},
        description=(
            "Commodity channel index over 14 bars: (typical price - its 14-bar mean) / (0.015 * "
            "mean absolute deviation) (TA-Lib CCI); typically within +-100, unbounded."
        ),
        warmup_bars=ind.lookback("cci", period=14),
    ),
)
