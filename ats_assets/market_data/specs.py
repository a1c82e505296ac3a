"""What each market-data table holds: columns, source method and validity rules (no dagster here)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ats_assets.core.validation import (
    BID_NOT_ABOVE_ASK,
    EXPIRY_NOT_BEFORE_SESSION,
    INSIDE_SESSION,
    OHLC_CONSISTENT,
    Rule,
    non_negative,
    positive,
    unique_key,
)

UTC_TS = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class MarketDataSpec:
    """One raw market-data table."""

    name: str
    description: str
    source: str  # resource key of the source that serves it
    method: str  # the source's method: method(symbols, start, end) -> frame
    schema: dict[str, pl.DataType]  # columns after ``session``, in order
    rules: tuple[Rule, ...]


RAW_BARS = MarketDataSpec(
    name="raw_bars",
    description="Regular-session 1-minute bars of every ticker in the universe, labelled by open time (UTC).",
    source="market_data",
    method="bars",
    schema={
        "ticker": pl.Utf8,
        "ts": UTC_TS,
        "open": pl.Float64,
        "high": pl.Float64,
        "low": pl.Float64,
        "close": pl.Float64,
        "volume": pl.Int64,
        "vwap": pl.Float64,
        "trade_count": pl.Int64,
    },
    rules=(
        positive("positive_prices", "open", "high", "low", "close", "vwap"),
        OHLC_CONSISTENT,
        non_negative("volume", "trade_count"),
        unique_key("ticker", "ts"),
        INSIDE_SESSION,
    ),
)

RAW_QUOTES = MarketDataSpec(
    name="raw_quotes",
    description="NBBO quotes (at least one per ticker per minute) during the regular session.",
    source="market_data",
    method="quotes",
    schema={
        "ticker": pl.Utf8,
        "ts": UTC_TS,
        "bid": pl.Float64,
        "ask": pl.Float64,
        "bid_size": pl.Int64,
        "ask_size": pl.Int64,
    },
    rules=(
        positive("positive_prices", "bid", "ask"),
        BID_NOT_ABOVE_ASK,
        non_negative("bid_size", "ask_size"),
        unique_key("ticker", "ts"),
        INSIDE_SESSION,
    ),
)

OPTIONS_FLOW = MarketDataSpec(
    name="options_flow",
    description=(
        "Options-flow alerts: ticker, time, call/put, strike, expiry, premium (dollars), size "
        "(contracts), execution (sweep/block/single), side and bullish/bearish sentiment."
    ),
    source="options_flow_source",
    method="options_flow",
    schema={
        "event_id": pl.Utf8,
        "ticker": pl.Utf8,
        "ts": UTC_TS,
        "option_type": pl.Utf8,
        "strike": pl.Float64,
        "expiry": pl.Date,
        "price": pl.Float64,
        "size": pl.Int64,
        "premium": pl.Float64,
        "underlying_price": pl.Float64,
        "execution": pl.Utf8,
        "side": pl.Utf8,
        "sentiment": pl.Utf8,
    },
    rules=(
        positive("positive_values", "strike", "price", "size", "premium", "underlying_price"),
        unique_key("event_id"),
        INSIDE_SESSION,
        EXPIRY_NOT_BEFORE_SESSION,
    ),
)

MARKET_DATA_SPECS = (RAW_BARS, RAW_QUOTES, OPTIONS_FLOW)


def conform(frame: pl.DataFrame, spec: MarketDataSpec, session) -> pl.DataFrame:
    """``frame`` with a leading ``session`` column and exactly the spec's columns and types.

    A source that omits a column or sends one that cannot be cast gets an error naming it.
    """
    missing = [c for c in spec.schema if c not in frame.columns]
    if missing and len(frame):
        raise ValueError(f"{spec.name}: the source returned no column(s) {missing}")
    if not len(frame):
        frame = pl.DataFrame(schema=spec.schema)
    return frame.select(
        pl.lit(session, dtype=pl.Date).alias("session"),
        *[pl.col(c).cast(t) for c, t in spec.schema.items()],
    )
