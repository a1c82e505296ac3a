"""Volume: on-balance-volume flow, volume z-score, MFI, time-of-day relative volume, VWAP distance.

Scale-free: OBV (a running sum of shares) is used as its change over a window divided by the
volume traded in it, volumes are compared with the same ticker's own history, prices with a
volume-weighted average. Windows run on the bars of each timeframe, continuously across sessions,
and are null during each ticker's warm-up (``warmup_bars``) and while they hold a bar whose input
is missing (a null volume, say).

Every feature carries ``impl`` (a digest of the indicators module) among its parameters, so that
its version changes when the shared indicator code does. Features whose warm-up exceeds the 14
hourly bars of the two prior sessions the pipeline loads are not computed on 1h.
"""

import polars as pl

from ats_assets.features import indicators as ind
from ats_assets.features.definition import Feature

FAMILY = "volume"
NOT_1H = ("1m", "5m", "15m", "1d")


def _obv_flow(period: int, impl: str) -> pl.Expr:
    del impl  # versioning only
    # OBV's change over ``period`` bars / the volume of those bars (mean x period), from the
    # ticker's row ``period`` on (skip=1: the window starts after the row the change is from).
    change = ind.obv("close", "volume").diff(period)
    traded = ind.window_mean(pl.col("volume"), period, skip=1) * period
    return pl.when(traded > 0).then(change / traded).when(traded == 0).then(0.0)


def _volume_zscore(period: int, impl: str) -> pl.Expr:
    del impl
    # The previous ``period`` bars' mean and sample deviation, in one pass; 0 on a flat window.
    before = ind.window_mean_std(pl.col("volume"), period, ddof=1, lag=1)
    parts = pl.struct(v=pl.col("volume").cast(pl.Float64), before=before)
    mean, sd = pl.field("before").struct.field("mean"), pl.field("before").struct.field("sd")
    z = pl.when(sd > 0).then((pl.field("v") - mean) / sd).when(sd == 0).then(0.0)
    return parts.struct.with_fields(z=z).struct.field("z")


def _mfi(period: int, impl: str) -> pl.Expr:
    del impl
    return ind.mfi("high", "low", "close", "volume", period)


def _relative_volume_by_time(sessions: int, min_sessions: int, impl: str) -> pl.Expr:
    del impl
    return ind.relative_to_time_of_day(pl.col("volume"), sessions, min_sessions)


def _vwap_distance(period: int, impl: str) -> pl.Expr:
    del impl
    # Bars without a vwap carry no weight. Means of the window's dollars and shares: their ratio
    # is that of the sums; null during the warm-up.
    weighted = (pl.col("vwap") > 0) & pl.col("vwap").is_finite()  # polars orders NaN above 0
    weight = pl.when(weighted).then(pl.col("volume")).otherwise(0.0).fill_null(0.0)
    dollars = pl.when(weighted).then(pl.col("vwap") * pl.col("volume")).otherwise(0.0)
    sums = pl.struct(
        c=pl.col("close"),
        dollars=ind.window_mean(dollars.fill_null(0.0), period),
        shares=ind.window_mean(weight, period),
    )
    distance = (
        pl.when((pl.field("shares") > 0) & (pl.field("dollars") > 0))
        .then(pl.field("c") * pl.field("shares") / pl.field("dollars") - 1.0)
        .when(pl.field("shares").is_not_null())
        .then(0.0)
    )
    return sums.struct.with_fields(d=distance).struct.field("d")


FEATURES: tuple[Feature, ...] = (
    Feature(
        name="obv_flow_20",
        family=FAMILY,
        build=_obv_flow,
        params={"period": 20, "impl": ind.VERSION},
        description=(
            "On-balance-volume change over 20 bars divided by the volume traded in them, -1 "
            "(every bar closed down) to 1 (every bar up): the share of the volume on up closes "
            "minus that on down closes (TA-Lib OBV); 0 without volume."
        ),
        timeframes=NOT_1H,
        warmup_bars=20,
    ),
    Feature(
        name="volume_zscore_20",
        family=FAMILY,
        build=_volume_zscore,
        params={"period": 20, "impl": ind.VERSION},
        description=(
            "Volume z-score: (volume - mean) / sample standard deviation of the volume of the 20 "
            "bars before this one; 0 when those 20 volumes are all equal."
        ),
        timeframes=NOT_1H,
        warmup_bars=20,
    ),
    Feature(
        name="mfi_14",
        family=FAMILY,
        build=_mfi,
        params={"period": 14, "impl": ind.VERSION},
        description=(
            "Money flow index over 14 bars, 0-100 (TA-Lib MFI): a volume-weighted RSI of the "
            "typical price (high + low + close) / 3."
        ),
        warmup_bars=ind.lookback("mfi", period=14),
    ),
    Feature(
        name="relative_volume_tod_5",
        family=FAMILY,
        build=_relative_volume_by_time,
        params={"sessions": 5, "min_sessions": 2, "impl": ind.VERSION},
        description=(
            "Volume relative to the usual volume at this time of day: volume / the mean volume of "
            "the same ticker's bars at the same minute_of_session over the previous 5 sessions "
            "(at least 2; previous sessions only). Null until 2 earlier sessions have that minute "
            "(warm-up 2 sessions: 780 one-minute bars) and when they traded nothing. Intraday "
            "timeframes only."
        ),
        timeframes=("1m", "5m", "15m", "1h"),
        warmup_bars=2 * 390,
    ),
    Feature(
        name="vwap_distance_20",
        family=FAMILY,
        build=_vwap_distance,
        params={"period": 20, "impl": ind.VERSION},
        description=(
            "Close relative to the volume-weighted average price of the last 20 bars, as a "
            "fraction: close / (sum(vwap * volume) / sum(volume)) - 1; 0 without volume."
        ),
        timeframes=NOT_1H,
        warmup_bars=19,
    ),
)
