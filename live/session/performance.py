"""A live session's results from its records: round trips, and the quality of its executions.

Execution quality per fill, in basis points against the trader (positive = paid):

- ``slippage_arrival_bps``: against the arrival price, the last close when the order was decided
  (what the strategy saw); the difference is the implementation shortfall of that fill;
- ``slippage_vwap_bps``: against the volume-weighted average price of the bar the fill happened
  in (what the market traded at meanwhile).

The summary weights fills by notional and adds the shortfall in dollars (price moves plus fees).
"""

from __future__ import annotations

import polars as pl

from live.backtest.simulator import TRADE_SCHEMA
from live.engine.portfolio import Portfolio
from live.engine.types import Fill, Intent, Side


def round_trips(fills: pl.DataFrame, sectors: dict[str, str] | None = None) -> pl.DataFrame:
    """The round trips the fills make, booked by the engine's own portfolio accounting."""
    portfolio = Portfolio(cash=0.0)
    for row in fills.sort("ts").iter_rows(named=True):
        portfolio.apply(
            Fill(
                client_order_id=row["client_order_id"],
                ticker=row["ticker"],
                side=Side(row["side"]),
                qty=int(row["qty"]),
                price=float(row["price"]),
                fees=float(row["fees"]),
                ts=row["ts"],
                intent=Intent(row["intent"]),
                signal=row["signal"] or "",
            )
        )
    sectors = sectors or {}
    return pl.DataFrame(
        [t.record(sectors.get(t.ticker, "unknown")) for t in portfolio.round_trips],
        schema=TRADE_SCHEMA,
        orient="row",
    )


def execution_quality(
    fills: pl.DataFrame, orders: pl.DataFrame, bars: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, float]]:
    """(per fill: ticker, side, intent, order_type, qty, price, arrival, vwap, both slippages,
    shortfall dollars; summary figures)."""
    empty = {
        "slippage_arrival_bps": float("nan"),
        "slippage_vwap_bps": float("nan"),
        "shortfall_dollars": 0.0,
        "filled_notional": 0.0,
    }
    if fills.is_empty():
        return pl.DataFrame(), empty
    submitted = orders.filter(pl.col("status").is_in(["submitted", "duplicate"])).unique(
        "client_order_id", keep="first"
    )
    sign = pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0)
    frame = (
        fills.join(
            submitted.select("client_order_id", "order_type", "arrival_price"),
            on="client_order_id",
            how="left",
        )
        # a broker's fill time falls inside a minute bar; the simulated one's is the bar's open
        .with_columns(_minute=pl.col("ts").dt.truncate("1m"))
        .join(
            bars.select("ticker", pl.col("ts").alias("_minute"), "vwap"),
            on=["ticker", "_minute"],
            how="left",
        )
        .drop("_minute")
        .with_columns(notional=pl.col("qty") * pl.col("price"))
        .with_columns(
            slippage_arrival_bps=sign * (pl.col("price") / pl.col("arrival_price") - 1) * 1e4,
            slippage_vwap_bps=sign * (pl.col("price") / pl.col("vwap") - 1) * 1e4,
            shortfall_dollars=sign * (pl.col("price") - pl.col("arrival_price")) * pl.col("qty")
            + pl.col("fees"),
        )
    )

    def weighted(column: str) -> pl.Expr:  # NaN, not 0, when no fill has the reference
        known = pl.col(column).is_not_null() & pl.col(column).is_not_nan()
        share = pl.when(known).then(pl.col("notional"))
        return ((pl.col(column) * share).sum() / share.sum()).fill_null(float("nan"))

    figures = frame.select(
        slippage_arrival_bps=weighted("slippage_arrival_bps"),
        slippage_vwap_bps=weighted("slippage_vwap_bps"),
        shortfall_dollars=pl.col("shortfall_dollars").sum(),
        filled_notional=pl.col("notional").sum(),
    ).row(0, named=True)
    columns = ["ts", "ticker", "side", "intent", "order_type", "qty", "price", "arrival_price",
               "vwap", "slippage_arrival_bps", "slippage_vwap_bps", "shortfall_dollars"]  # fmt: skip
    return frame.select(columns).sort("ts"), {k: float(v) for k, v in figures.items()}
