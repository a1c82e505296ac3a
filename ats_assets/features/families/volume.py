"""Volume: on-balance-volume flow, volume z-score, MFI, time-of-day relative volume, VWAP distance.

Scale-free: OBV (a running sum of shares) is used as its change over a window divided by the
volume traded in it, volumes are compared with the same ticker's own history, prices with a
volume-weighted average. Windows run on the bars of each timeframe, continuously across sessions,
and are null during each ticker's warm-up (``warmup_bars``).

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
    change = ind.obv("close", "volume").diff(period)
    traded = ind.window_sum(pl.col("volume").cast(pl.Float64), period)
    return ind.from_row(period, pl.when(traded > 0).then(change / traded).otherwise(0.0))


def _volume_zscore(period: int, impl: str) -> pl.Expr:
    del impl
    volume = pl.col("volume").cast(pl.Float64)
    before = pl.struct(
        v=volume,
        mean=ind.window_mean(volume.shift(1), period),
        sd=ind.window_std(volume.shift(1), period, ddof=1),
    )
    z = pl.when(pl.field("sd") > 0).then((pl.field("v") - pl.field("mean")) / pl.field("sd"))
    return ind.from_row(period, before.struct.with_fields(z=z.otherwise(0.0)).struct.field("z"))


def _mfi(period: int, impl: str) -> pl.Expr:
    del impl
    return ind.mfi("high", "low", "close", "volume", period)


def _relative_volume_by_time(sessions: int, min_sessions: int, impl: str) -> pl.Expr:
    del impl
    return ind.relative_to_time_of_day(pl.col("volume"), sessions, min_sessions)


def _vwap_distance(period: int, impl: str) -> pl.Expr:
    del impl
    # Bars without a vwap carry no weight.
    weight = pl.when(pl.col("vwap") > 0).then(pl.col("volume")).otherwise(0.0).fill_null(0.0)
    sums = pl.struct(
        c=pl.col("close"),
        dollars=ind.window_sum((pl.col("vwap") * weight).fill_null(0.0), period),
        shares=ind.window_sum(weight.cast(pl.Float64), period),
    )
    distance = pl.when((pl.field("shares") > 0) & (pl.field("dollars") > 0)).then(
        pl.field("c") * pl.field("shares") / pl.field("dollars") - 1.0
    )
    value = sums.struct.with_fields(d=distance.otherwise(0.0)).struct.field("d")
    return ind.from_row(period - 1, value)


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
