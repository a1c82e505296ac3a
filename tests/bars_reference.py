"""A reference for resampled bars, written as plain polars aggregations.

``frames.resample`` (compiled) is tested against it with missing values in every column
(``test_feature_pipeline``); the family tests build their coarser bars with it.
"""

import polars as pl

from ats_assets.features.frames import BAR_VALUES, FLOW_SUMS, QUOTE_MEANS, TRADE_SUMS


def polars_resample(minute: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """The bars ``frames.resample`` must give, as polars aggregations (without available_at)."""
    keys = [pl.col("ticker").rle_id().alias("_run"), pl.col("session").alias("_session")]
    if timeframe != "1d":
        size = {"5m": 5, "15m": 15, "1h": 60}[timeframe]
        keys.append((pl.col("minute_of_session") // size).alias("_bucket"))
    weight = pl.col("volume")
    spread = pl.col("effective_spread_bps")
    return (
        minute.group_by(keys, maintain_order=True)
        .agg(
            ticker=pl.col("ticker").first(),
            session=pl.col("session").first(),
            ts=pl.col("ts").first(),
            minute_of_session=pl.col("minute_of_session").first(),
            open=pl.col("open").first(),
            high=pl.col("high").max(),
            low=pl.col("low").min(),
            close=pl.col("close").last(),
            vwap=pl.when(weight.sum() > 0)
            .then((pl.col("vwap") * weight).sum() / weight.sum())
            .otherwise(pl.col("close").last()),
            volume=weight.sum(),
            trade_count=pl.col("trade_count").sum(),
            **{c: pl.col(c).mean() for c in QUOTE_MEANS},
            effective_spread_bps=(
                (spread * pl.col("trades")).sum()
                / pl.when(spread.is_not_null()).then(pl.col("trades")).sum()
            ).fill_nan(None),
            **{c: pl.col(c).sum() for c in (*TRADE_SUMS, *FLOW_SUMS)},
        )
        .select("ticker", "session", "ts", "minute_of_session", *BAR_VALUES)
    )
