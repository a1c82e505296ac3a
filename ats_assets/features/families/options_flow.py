"""Options-flow features from the alert sums of each bar (premium in dollars, counts).

A bar without alerts has 0 in every flow column; ratios and shares are then 0 (neutral). The
60-minute counts use a wall-clock window on ``ts`` (bars opening in the last 60 minutes, this one
included), so they mean the same on every intraday timeframe (60 1m bars, 12 5m bars, 4 15m bars,
one 1h bar) and restart at each session's open, the overnight gap being longer than the window.

Builders are self-contained and take their windows as parameters, so a feature's version changes
whenever what it computes changes; the wall-clock windows run on a kernel of the indicators
module, so those features also carry ``impl`` (its digest) among their parameters.
"""

from datetime import timedelta

import polars as pl

from ats_assets.features import indicators as ind
from ats_assets.features.definition import Feature

FAMILY = "options_flow"


def _call_put_ratio() -> pl.Expr:
    call = pl.col("call_premium").fill_null(0.0).clip(lower_bound=0.0)
    put = pl.col("put_premium").fill_null(0.0).clip(lower_bound=0.0)
    return ((call + 1.0) / (put + 1.0)).log()


def _net_bullish_share() -> pl.Expr:
    bullish = pl.col("bullish_premium").fill_null(0.0)
    bearish = pl.col("bearish_premium").fill_null(0.0)
    total = bullish + bearish
    return pl.when(total > 0).then((bullish - bearish) / total).otherwise(0.0)


def _rolling_count(column: str, window: str, impl: str) -> pl.Expr:
    del impl  # versioning only: the window sum is a kernel in the indicators module
    minutes = timedelta(minutes=int(window.removesuffix("m")))
    return ind.time_window_sum(pl.col(column).cast(pl.Float64), minutes)


def _net_premium(window: str, impl: str) -> pl.Expr:
    del impl
    # Signed log so a $2M print and a $20k print differ by a few units, not by a factor of 100.
    net = pl.col("bullish_premium").fill_null(0.0) - pl.col("bearish_premium").fill_null(0.0)
    total = ind.time_window_sum(net, timedelta(minutes=int(window.removesuffix("m"))))
    return total.sign() * total.abs().log1p()


def _premium_zscore(bars: int, min_std: float, impl: str) -> pl.Expr:
    del impl  # versioning only
    # Log premium (0 without flow) against the mean and standard deviation of the previous bars;
    # the deviation is floored at ``min_std`` log units so a first alert after a quiet window
    # scores a large but finite value (about ln(premium) / min_std) instead of infinity.
    premium = pl.col("call_premium").fill_null(0.0) + pl.col("put_premium").fill_null(0.0)
    x = premium.clip(lower_bound=0.0).log1p()
    parts = pl.struct(x=x, before=ind.window_mean_std(x, bars, ddof=1, lag=1))
    mean, std = pl.field("before").struct.field("mean"), pl.field("before").struct.field("sd")
    z = (pl.field("x") - mean) / pl.max_horizontal(std, pl.lit(min_std))
    return parts.struct.with_fields(z=z).struct.field("z")


FEATURES: tuple[Feature, ...] = (
    Feature(
        name="flow_call_put_ratio",
        family=FAMILY,
        build=_call_put_ratio,
        description=(
            "Call/put premium balance of the bar's alerts, log ratio: ln((call_premium + 1) / "
            "(put_premium + 1)), premiums in dollars; 0 without flow, positive when calls dominate."
        ),
    ),
    Feature(
        name="flow_net_bullish_share",
        family=FAMILY,
        build=_net_bullish_share,
        description=(
            "Net bullish share of the bar's alert premium, -1..1: (bullish_premium - "
            "bearish_premium) / (bullish_premium + bearish_premium); 0 without flow."
        ),
    ),
    Feature(
        name="flow_sweeps_60min",
        family=FAMILY,
        build=_rolling_count,
        params={"column": "sweep_count", "window": "60m", "impl": ind.VERSION},
        description=(
            "Number of sweep alerts in bars opening within the last 60 minutes (wall clock, this "
            "bar included; restarts each session). Intraday timeframes only."
        ),
        timeframes=("1m", "5m", "15m", "1h"),
    ),
    Feature(
        name="flow_count_60min",
        family=FAMILY,
        build=_rolling_count,
        params={"column": "flow_count", "window": "60m", "impl": ind.VERSION},
        description=(
            "Number of options-flow alerts in bars opening within the last 60 minutes (wall "
            "clock, this bar included; restarts each session). Intraday timeframes only."
        ),
        timeframes=("1m", "5m", "15m", "1h"),
    ),
    Feature(
        name="flow_net_sweeps_30min",
        family=FAMILY,
        build=_rolling_count,
        params={"column": "net_sweep_count", "window": "30m", "impl": ind.VERSION},
        description=(
            "Bullish minus bearish sweep alerts in bars opening within the last 30 minutes (wall "
            "clock, this bar included; restarts each session): aggressive, multi-venue orders."
        ),
        timeframes=("1m", "5m"),
    ),
    Feature(
        name="flow_net_sweeps_60min",
        family=FAMILY,
        build=_rolling_count,
        params={"column": "net_sweep_count", "window": "60m", "impl": ind.VERSION},
        description=(
            "Bullish minus bearish sweep alerts in bars opening within the last 60 minutes (wall "
            "clock, this bar included; restarts each session)."
        ),
        timeframes=("1m", "5m"),
    ),
    Feature(
        name="flow_net_premium_60min",
        family=FAMILY,
        build=_net_premium,
        params={"window": "60m", "impl": ind.VERSION},
        description=(
            "Net bullish premium of the alerts in bars opening within the last 60 minutes (wall "
            "clock, this bar included; restarts each session), signed log: sign(x) * ln(1 + |x|) "
            "with x = bullish_premium - bearish_premium in dollars."
        ),
        timeframes=("1m", "5m"),
    ),
    Feature(
        name="flow_premium_zscore_30",
        family=FAMILY,
        build=_premium_zscore,
        params={"bars": 30, "min_std": 1.0, "impl": ind.VERSION},
        description=(
            "Unusual-activity z-score: (x - mean) / max(std, 1) where x = ln(1 + call_premium + "
            "put_premium) of this bar (dollars; 0 without flow) and mean / std are over the "
            "previous 30 bars; the floor of 1 log unit keeps a first alert after a quiet window "
            "finite (about ln(premium)). Not on 1h (too little history in the pipeline)."
        ),
        timeframes=("1m", "5m", "15m", "1d"),
        warmup_bars=30,
    ),
)
