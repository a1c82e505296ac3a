"""Microstructure features: spreads, order-book and trade-flow imbalance, illiquidity, activity.

Bars without quotes or trades: the bar frame gives 0 for sums (``buy_volume``, ``sell_volume``)
and null for means (``quoted_spread_bps``, ``quote_imbalance``, ``effective_spread_bps``); NaN
in a mean (0 / 0 upstream) is treated as null too. Spreads carry the ticker's last known value
forward (null until its first quote or trade); imbalances are 0 (balanced) when there is nothing
to measure. Rolling windows run over the ticker's bars, across sessions.

Builders are self-contained and take their windows and scales as parameters, so a feature's
version changes whenever what it computes changes; the rolling windows run on a kernel of the
indicators module, so those features also carry ``impl`` (its digest) among their parameters.
"""

import polars as pl

from ats_assets.features import indicators as ind
from ats_assets.features.definition import Feature

FAMILY = "microstructure"


def _quoted_spread_bps() -> pl.Expr:
    return pl.col("quoted_spread_bps").fill_nan(None).forward_fill().over("ticker")


def _effective_spread_bps() -> pl.Expr:
    return pl.col("effective_spread_bps").fill_nan(None).forward_fill().over("ticker")


def _quote_imbalance() -> pl.Expr:
    return pl.col("quote_imbalance").fill_nan(None).fill_null(0.0).clip(-1.0, 1.0)


def _trade_imbalance() -> pl.Expr:
    buy = pl.col("buy_volume").fill_null(0.0)
    sell = pl.col("sell_volume").fill_null(0.0)
    total = buy + sell
    return pl.when(total > 0).then((buy - sell) / total).otherwise(0.0)


def _amihud(bars: int, scale: float, impl: str) -> pl.Expr:
    del impl  # versioning only
    # |open-to-close log return| per dollar traded; bars without dollar volume are skipped: the
    # window's mean ratio (skipped bars as 0) / the share of bars not skipped.
    dollars = pl.col("vwap") * pl.col("volume")
    valid = (dollars > 0) & (pl.col("open") > 0) & (pl.col("close") > 0)
    ratio = pl.when(valid).then((pl.col("close") / pl.col("open")).log().abs() / dollars)
    means = pl.struct(
        ratio=ind.window_mean(ratio.fill_null(0.0), bars),
        share=ind.window_mean(valid.fill_null(False), bars),
    )
    amihud = pl.when(pl.field("share") > 0).then(pl.field("ratio") / pl.field("share") * scale)
    return means.struct.with_fields(a=amihud).struct.field("a")


def _trade_intensity(bars: int, impl: str) -> pl.Expr:
    del impl
    trades = pl.col("trade_count").cast(pl.Float64).fill_null(0.0)
    baseline = ind.window_mean(trades, bars, lag=1)  # the previous ``bars`` bars
    return ((trades + 1.0) / (baseline + 1.0)).log()


FEATURES: tuple[Feature, ...] = (
    Feature(
        name="quoted_spread_bps",
        family=FAMILY,
        build=_quoted_spread_bps,
        description=(
            "Quoted spread in basis points of the mid: the bar's mean (ask - bid) / mid x 1e4; a "
            "bar without quotes carries the ticker's last value (null before its first quote)."
        ),
    ),
    Feature(
        name="effective_spread_bps",
        family=FAMILY,
        build=_effective_spread_bps,
        description=(
            "Effective spread in basis points: the bar's volume-weighted 2 |price - mid| / mid x "
            "1e4 over its trades; a bar without trades carries the ticker's last value (null "
            "before its first classified trade)."
        ),
    ),
    Feature(
        name="quote_imbalance",
        family=FAMILY,
        build=_quote_imbalance,
        description=(
            "Top-of-book imbalance, -1..1: the bar's mean (bid_size - ask_size) / (bid_size + "
            "ask_size); positive means more size bid; 0 for a bar without quotes."
        ),
    ),
    Feature(
        name="trade_imbalance",
        family=FAMILY,
        build=_trade_imbalance,
        description=(
            "Signed trade-volume imbalance, -1..1: (buy_volume - sell_volume) / (buy_volume + "
            "sell_volume), trades above / below the quote mid; 0 when no trade was classified."
        ),
    ),
    Feature(
        name="amihud_illiquidity_20",
        family=FAMILY,
        build=_amihud,
        params={"bars": 20, "scale": 1e9, "impl": ind.VERSION},
        description=(
            "Amihud illiquidity x 1e9: the mean over the last 20 bars (this one included) of "
            "|ln(close / open)| / (vwap x volume), i.e. absolute return per billion dollars "
            "traded. Open-to-close returns keep overnight gaps out. Bars without dollar volume "
            "are skipped; null when none of the 20 bars traded. Not on 1h (too little history "
            "in the pipeline's two prior sessions)."
        ),
        timeframes=("1m", "5m", "15m", "1d"),
        warmup_bars=19,
    ),
    Feature(
        name="trade_intensity_20",
        family=FAMILY,
        build=_trade_intensity,
        params={"bars": 20, "impl": ind.VERSION},
        description=(
            "Trade intensity, log ratio: ln((1 + trade_count) / (1 + mean trade_count of the "
            "previous 20 bars)); 0 is an ordinary bar, +0.69 about twice the usual number of "
            "trades. Not on 1h (too little history in the pipeline's two prior sessions)."
        ),
        timeframes=("1m", "5m", "15m", "1d"),
        warmup_bars=20,
    ),
)
