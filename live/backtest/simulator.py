"""The backtest's event loop over 1-minute bars: fills on bar open, decisions on bar close.

For every bar of every session, in order: the simulated broker fills what the bar allows (orders
decided on an earlier close only), the portfolio books the fills, equity is marked at the bar's
close, then the strategy decides on the close and its orders go to the broker. Working orders are
DAY orders: whatever is unfilled at the session's end is cancelled. The same strategy objects
run in the live job, where a clock replaces the loop and a broker replaces the simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import numpy as np
import polars as pl

from live.backtest.broker import SimulatedBroker, last_prices
from live.backtest.panel import MinutePanel
from live.engine.portfolio import Portfolio
from live.engine.settings import ExecutionCosts
from live.engine.types import Cancel, Fill, Order


class Strategy(Protocol):
    """What the loop drives: the full :class:`~live.engine.strategy.StrategyEngine` or a simple
    signal strategy."""

    def start_session(self, day: date, rows: range, portfolio: Portfolio) -> None: ...

    def on_fill(self, fill: Fill, row: int, portfolio: Portfolio) -> None: ...

    def on_bar(
        self, row: int, equity: float, portfolio: Portfolio, pending: dict[str, list[Order]]
    ) -> list[Order | Cancel]:
        """Decisions on bar ``row``'s close; ``pending``: each ticker's working orders. A
        :class:`Cancel` takes effect before the orders that follow it are submitted."""
        ...

    def end_session(self, day: date, portfolio: Portfolio) -> None: ...


@dataclass
class BacktestResult:
    initial_capital: float
    equity: pl.DataFrame  # ts, session, equity, cash, gross_exposure, net_exposure, positions
    trades: pl.DataFrame  # one row per round trip
    fills: pl.DataFrame
    orders: pl.DataFrame  # every submitted order
    cancelled: pl.DataFrame  # orders cancelled with unfilled shares, and why
    rejections: pl.DataFrame = field(default_factory=pl.DataFrame)  # decisions not taken, why
    bar_events: int = 0  # ticker-minutes simulated


TRADE_SCHEMA = {
    "ticker": pl.Utf8,
    "sector": pl.Utf8,
    "signal": pl.Utf8,
    "direction": pl.Int64,
    "qty": pl.Int64,
    "entry_ts": pl.Datetime("us", "UTC"),
    "entry_price": pl.Float64,
    "exit_ts": pl.Datetime("us", "UTC"),
    "exit_price": pl.Float64,
    "exit_intent": pl.Utf8,
    "gross_pnl": pl.Float64,
    "fees": pl.Float64,
    "pnl": pl.Float64,
    "return_bps": pl.Float64,
    "bars_held": pl.Int64,
}
FILL_SCHEMA = {
    "client_order_id": pl.Utf8,
    "ticker": pl.Utf8,
    "side": pl.Utf8,
    "qty": pl.Int64,
    "price": pl.Float64,
    "fees": pl.Float64,
    "ts": pl.Datetime("us", "UTC"),
    "intent": pl.Utf8,
    "signal": pl.Utf8,
    "reference_price": pl.Float64,
}
ORDER_SCHEMA = {
    "client_order_id": pl.Utf8,
    "ticker": pl.Utf8,
    "side": pl.Utf8,
    "qty": pl.Int64,
    "order_type": pl.Utf8,
    "intent": pl.Utf8,
    "decided_at": pl.Datetime("us", "UTC"),
    "limit_price": pl.Float64,
    "stop_price": pl.Float64,
    "reason": pl.Utf8,
    "signal": pl.Utf8,
}


def order_row(order: Order) -> dict:
    """An order as a row of ``ORDER_SCHEMA`` (also the live session's order records)."""
    return {
        "client_order_id": order.client_order_id,
        "ticker": order.ticker,
        "side": order.side.value,
        "qty": order.qty,
        "order_type": order.order_type.value,
        "intent": order.intent.value,
        "decided_at": order.decided_at,
        "limit_price": order.limit_price,
        "stop_price": order.stop_price,
        "reason": order.reason,
        "signal": order.signal,
    }


def run_backtest(
    panel: MinutePanel,
    strategy: Strategy,
    broker: SimulatedBroker | None = None,
    initial_capital: float = 100_000.0,
    costs: ExecutionCosts | None = None,
    sectors: dict[str, str] | None = None,
) -> BacktestResult:
    """Run ``strategy`` over every bar of ``panel``; dollars, shares, UTC times."""
    broker = broker or SimulatedBroker(panel, costs)
    portfolio = Portfolio(cash=initial_capital)
    column = panel.column()
    qty = np.zeros(len(panel.tickers), dtype=np.float64)
    marks = np.nan_to_num(last_prices(panel))
    rows, _ = panel.shape
    equity = np.empty(rows)
    cash = np.empty(rows)
    gross = np.empty(rows)
    net = np.empty(rows)
    held = np.empty(rows, dtype=np.int64)
    fills: list[Fill] = []
    orders: list[Order] = []
    for day in panel.sessions():
        span = panel.rows_of(day)
        strategy.start_session(day, span, portfolio)
        for i in span:
            for fill in broker.process_bar(i):
                portfolio.apply(fill)
                qty[column[fill.ticker]] += fill.signed_qty
                strategy.on_fill(fill, i, portfolio)
                fills.append(fill)
            value = qty * marks[i]
            net[i] = value.sum()
            gross[i] = np.abs(value).sum()
            cash[i] = portfolio.cash
            equity[i] = portfolio.cash + net[i]
            held[i] = len(portfolio.positions)
            pending: dict[str, list[Order]] = {}
            for work in broker.working.values():
                pending.setdefault(work.order.ticker, []).append(work.order)
            for decision in strategy.on_bar(i, float(equity[i]), portfolio, pending):
                if isinstance(decision, Cancel):
                    broker.cancel(decision.client_order_id, decision.reason)
                elif broker.submit(decision, i):
                    orders.append(decision)
        broker.cancel_all("session end")
        strategy.end_session(day, portfolio)
    sectors = sectors or {}
    trades = pl.DataFrame(
        [t.record(sectors.get(t.ticker, "unknown")) for t in portfolio.round_trips],
        schema=TRADE_SCHEMA,
        orient="row",
    )
    return BacktestResult(
        initial_capital=initial_capital,
        equity=pl.DataFrame(
            {
                "ts": panel.ts,
                "session": panel.session,
                "equity": equity,
                "cash": cash,
                "gross_exposure": gross,
                "net_exposure": net,
                "positions": held,
            },
            schema_overrides={"ts": pl.Datetime("us", "UTC")},
        ),
        trades=trades,
        fills=pl.DataFrame(
            [
                {
                    **{k: getattr(f, k) for k in FILL_SCHEMA if k not in ("side", "intent")},
                    "side": f.side.value,
                    "intent": f.intent.value,
                }
                for f in fills
            ],
            schema=FILL_SCHEMA,
            orient="row",
        ).with_columns(notional=pl.col("qty") * pl.col("price")),
        orders=pl.DataFrame([order_row(o) for o in orders], schema=ORDER_SCHEMA, orient="row"),
        cancelled=pl.DataFrame(
            [{**order_row(o), "unfilled": n, "why": why} for o, n, why in broker.cancelled],
            schema={**ORDER_SCHEMA, "unfilled": pl.Int64, "why": pl.Utf8},
            orient="row",
        ),
        rejections=getattr(strategy, "rejections_frame", lambda: pl.DataFrame())(),
        bar_events=int(np.isfinite(panel.close).sum()),
    )
