"""What each market-data table holds: columns, source method and validity rules (no dagster here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ats_assets.core.validation import (
    Rule,
    crossed_quote,
    duplicate_key,
    expired_option,
    high_below_low,
    invalid_category,
    nan_value,
    negative,
    non_positive,
    open_close_outside_range,
    out_of_order,
    out_of_session,
    price_jump,
    stale_price_run,
    unknown_ticker,
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
    rules: tuple[Rule, ...]  # besides unknown_ticker, which needs the universe

    @property
    def quarantine(self) -> str:
        """Name of the table that holds this table's rejected rows."""
        return f"{self.name}_quarantine"

    def rules_for(self, universe: Sequence[str]) -> tuple[Rule, ...]:
        return (*self.rules, unknown_ticker(universe))


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
        nan_value("open", "high", "low", "close", "volume", "vwap", "trade_count"),
        non_positive("open", "high", "low", "close", "vwap"),
        high_below_low(),
        open_close_outside_range(),
        negative("volume", "trade_count"),
        duplicate_key("ticker", "ts"),
        out_of_session(),
        out_of_order(),
        stale_price_run(),
        price_jump(),
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
        nan_value("bid", "ask", "bid_size", "ask_size"),
        non_positive("bid", "ask"),
        crossed_quote(),
        negative("bid_size", "ask_size", name="negative_size"),
        duplicate_key("ticker", "ts"),
        out_of_session(),
        out_of_order(),
    ),
)

RAW_TRADES = MarketDataSpec(
    name="raw_trades",
    description="Trade prints during the regular session (the simulated tape is a thinned sample).",
    source="market_data",
    method="trades",
    schema={
        "ticker": pl.Utf8,
        "ts": UTC_TS,
        "trade_id": pl.Utf8,
        "price": pl.Float64,
        "size": pl.Float64,
        "exchange": pl.Utf8,
        "conditions": pl.Utf8,
    },
    rules=(
        nan_value("price", "size"),
        non_positive("price"),
        non_positive("size", name="non_positive_size"),
        duplicate_key("session", "ticker", "exchange", "trade_id"),
        out_of_session(),
        out_of_order(),
        price_jump(column="price"),
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
    # No out_of_order rule: flow APIs page newest first.
    rules=(
        nan_value("strike", "expiry", "price", "size", "premium", "underlying_price"),
        non_positive(
            "strike", "price", "size", "premium", "underlying_price", name="non_positive_value"
        ),
        duplicate_key("event_id"),
        out_of_session(),
        expired_option(),
        invalid_category("option_type", ("call", "put")),
        invalid_category("sentiment", ("bullish", "bearish")),
    ),
)

MARKET_DATA_SPECS = (RAW_BARS, RAW_QUOTES, RAW_TRADES, OPTIONS_FLOW)


def conform(frame: pl.DataFrame, spec: MarketDataSpec, session) -> pl.DataFrame:
    """``frame`` with a leading ``session`` column and exactly the spec's columns and types.

    A source that omits a column gets an error naming it; a value that cannot be cast becomes
    null, which the ``nan_value`` rule then quarantines (nothing is dropped without a record).
    """
    missing = [c for c in spec.schema if c not in frame.columns]
    if missing and len(frame):
        raise ValueError(f"{spec.name}: the source returned no column(s) {missing}")
    if not len(frame):
        frame = pl.DataFrame(schema=spec.schema)
    return frame.select(
        pl.lit(session, dtype=pl.Date).alias("session"),
        *[_cast(c, frame.schema[c], t) for c, t in spec.schema.items()],
    )


def _cast(column: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """Cast without raising: what cannot be represented exactly becomes null."""
    col = pl.col(column)
    if source == pl.Utf8 and target == pl.Date:
        return col.str.to_date(strict=False).alias(column)
    if source == pl.Utf8 and isinstance(target, pl.Datetime):
        return (
            col.str.to_datetime(strict=False, time_unit="us")
            .dt.convert_time_zone("UTC")
            .alias(column)
        )
    if source.is_float() and target.is_integer():
        # 1.5 shares of volume is not a count: null, so nan_value quarantines it
        return pl.when(col == col.round()).then(col).cast(target, strict=False).alias(column)
    return col.cast(target, strict=False).alias(column)
