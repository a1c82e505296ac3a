"""Bar frames for features: 1-minute bars enriched with quotes, trades and options flow, resampled.

``minute_frame`` joins each 1-minute bar with what happened in its minute (spreads, quote
imbalance, buy/sell volume, options-flow premium); ``resample`` builds 5m/15m/1h bars inside each
session (aligned to the open, so 09:30-10:30 is the first hour) and one 1d bar per session. Every
resampled bar carries ``available_at``: the end of its window (at the latest the session's close),
when a live system could first know it complete.
"""

from datetime import date, timedelta

import polars as pl

from ats_assets.core.calendar import nyse_calendar

MINUTE = timedelta(minutes=1)
TIMEFRAME_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "1h": 60}
FLOW_SUMS = (
    "call_premium",
    "put_premium",
    "bullish_premium",
    "bearish_premium",
    "net_sweep_count",
    "sweep_count",
    "flow_count",
)
TRADE_SUMS = ("buy_volume", "sell_volume", "trades")


def _quote_minutes(quotes: pl.LazyFrame) -> pl.LazyFrame:
    mid = (pl.col("bid") + pl.col("ask")) / 2
    depth = pl.col("bid_size") + pl.col("ask_size")
    return (
        quotes.filter((pl.col("bid") > 0) & (pl.col("ask") >= pl.col("bid")))
        .group_by("ticker", pl.col("ts").dt.truncate("1m"))
        .agg(
            quoted_spread=(pl.col("ask") - pl.col("bid")).mean(),
            quoted_spread_bps=((pl.col("ask") - pl.col("bid")) / mid * 1e4).mean(),
            quote_imbalance=pl.when(depth > 0)
            .then((pl.col("bid_size") - pl.col("ask_size")) / depth)
            .mean(),
        )
    )


def _trade_minutes(trades: pl.LazyFrame, quotes: pl.LazyFrame) -> pl.LazyFrame:
    """Trades classified against the prevailing quote mid (as of the trade), summed per minute."""
    mids = (
        quotes.filter((pl.col("bid") > 0) & (pl.col("ask") >= pl.col("bid")))
        .select("ticker", "ts", mid=(pl.col("bid") + pl.col("ask")) / 2)
        .sort("ticker", "ts")
    )
    classified = (
        trades.select("ticker", "ts", "price", "size")
        .sort("ticker", "ts")
        .join_asof(mids, on="ts", by="ticker", strategy="backward", check_sortedness=False)
    )
    side = pl.col("price") - pl.col("mid")
    return classified.group_by("ticker", pl.col("ts").dt.truncate("1m")).agg(
        buy_volume=pl.when(side > 0).then(pl.col("size")).otherwise(0.0).sum(),
        sell_volume=pl.when(side < 0).then(pl.col("size")).otherwise(0.0).sum(),
        effective_spread_bps=(
            (2 * side.abs() / pl.col("mid") * 1e4 * pl.col("size")).sum()
            / pl.when(pl.col("mid").is_not_null()).then(pl.col("size")).sum()
        ).fill_nan(None),  # no quote before any of the minute's trades: unknown, not NaN
        trades=pl.len().cast(pl.Float64),
    )


def _flow_minutes(flow: pl.LazyFrame) -> pl.LazyFrame:
    premium = pl.col("premium")
    return flow.group_by("ticker", pl.col("ts").dt.truncate("1m")).agg(
        call_premium=premium.filter(pl.col("option_type") == "call").sum(),
        put_premium=premium.filter(pl.col("option_type") == "put").sum(),
        bullish_premium=premium.filter(pl.col("sentiment") == "bullish").sum(),
        bearish_premium=premium.filter(pl.col("sentiment") == "bearish").sum(),
        net_sweep_count=(
            (pl.col("execution") == "sweep").cast(pl.Float64)
            * pl.when(pl.col("sentiment") == "bullish").then(1.0).otherwise(-1.0)
        ).sum(),
        sweep_count=(pl.col("execution") == "sweep").sum().cast(pl.Float64),
        flow_count=pl.len().cast(pl.Float64),
    )


def minute_frame(
    bars: pl.DataFrame, quotes: pl.DataFrame, trades: pl.DataFrame, flow: pl.DataFrame
) -> pl.DataFrame:
    """1-minute bars with microstructure and options-flow columns, sorted by ticker and ts.

    Sums are 0 in a minute without events; means (spreads, imbalance) are null there.
    """
    sessions = sorted(bars["session"].unique().to_list())
    bounds = nyse_calendar().bounds_frame(sessions).select("session", "session_open").lazy()
    quotes_lazy = quotes.lazy()
    frame = (
        bars.lazy()
        .select(
            "ticker",
            "session",
            "ts",
            *[pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")],
            pl.col("vwap").cast(pl.Float64),
            pl.col("trade_count").cast(pl.Float64),
        )
        .join(bounds, on="session", how="left")
        .with_columns(
            minute_of_session=((pl.col("ts") - pl.col("session_open")).dt.total_minutes()).cast(
                pl.Int32
            )
        )
        .drop("session_open")
        .join(_quote_minutes(quotes_lazy), on=["ticker", "ts"], how="left")
        .join(_trade_minutes(trades.lazy(), quotes_lazy), on=["ticker", "ts"], how="left")
        .join(_flow_minutes(flow.lazy()), on=["ticker", "ts"], how="left")
        .with_columns(pl.col(*TRADE_SUMS, *FLOW_SUMS).fill_null(0.0))
        .sort("ticker", "ts")
    )
    return frame.collect()


def resample(minute: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """Bars of ``timeframe`` built within each session, with ``available_at`` (UTC).

    ``minute`` must be sorted by ticker and ts (``minute_frame`` is); so is the result.
    """
    if timeframe == "1m":
        return minute.with_columns(available_at=pl.col("ts") + MINUTE)
    # The frame is sorted by ticker and ts, so each output bar is a run of consecutive rows:
    # numbering the runs gives one integer group key, much cheaper to group on than three.
    parts = [pl.col("ticker"), pl.col("session")]
    if timeframe != "1d":
        parts.append(pl.col("minute_of_session") // TIMEFRAME_MINUTES[timeframe])
    starts = pl.any_horizontal([(e != e.shift(1)).fill_null(True) for e in parts])
    keys = [starts.cum_sum().alias("_bucket")]
    weight = pl.col("volume")
    bars = (
        minute.group_by(keys, maintain_order=True)
        .agg(
            ticker=pl.col("ticker").first(),
            session=pl.col("session").first(),
            ts=pl.col("ts").first(),
            minute_of_session=pl.col("minute_of_session").first(),
            _last=pl.col("ts").last() + MINUTE,
            open=pl.col("open").first(),
            high=pl.col("high").max(),
            low=pl.col("low").min(),
            close=pl.col("close").last(),
            vwap=pl.when(weight.sum() > 0)
            .then((pl.col("vwap") * weight).sum() / weight.sum())
            .otherwise(pl.col("close").last()),
            volume=weight.sum(),
            trade_count=pl.col("trade_count").sum(),
            quoted_spread=pl.col("quoted_spread").mean(),
            quoted_spread_bps=pl.col("quoted_spread_bps").mean(),
            quote_imbalance=pl.col("quote_imbalance").mean(),
            effective_spread_bps=(
                (pl.col("effective_spread_bps") * pl.col("trades")).sum()
                / pl.when(pl.col("effective_spread_bps").is_not_null()).then(pl.col("trades")).sum()
            ).fill_nan(None),
            **{c: pl.col(c).sum() for c in (*TRADE_SUMS, *FLOW_SUMS)},
        )
        .drop("_bucket")
    )
    # A bar is known when its window ends (a bucket of the session, or the session itself), at
    # the latest at the close; not at its last row's minute, which for a bar still being built
    # (live trading) or a ticker without a bar in the window's last minute would come earlier.
    bounds = nyse_calendar().bounds_frame(sorted(bars["session"].unique().to_list()))
    if timeframe == "1d":
        end = pl.col("session_close")
    else:
        size = TIMEFRAME_MINUTES[timeframe]
        left = size - pl.col("minute_of_session") % size
        end = pl.min_horizontal(pl.col("ts") + pl.duration(minutes=left), pl.col("session_close"))
    return (
        bars.join(bounds.select("session", "session_close"), on="session", how="left")
        .with_columns(available_at=pl.max_horizontal(end, pl.col("_last")))
        .drop("_last", "session_close")
        .select(*(c for c in bars.columns if c != "_last"), "available_at")
    )


def sessions_before(day: date, count: int) -> list[date]:
    """The ``count`` sessions before ``day`` and ``day`` itself, oldest first."""
    calendar = nyse_calendar()
    out = [day]
    while len(out) <= count:
        out.insert(0, calendar.previous_session(out[0]))
    return out
