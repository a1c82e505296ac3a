"""A fast path for given-signal strategies: the event loop's exact results without walking every bar.

``run_signals`` gives the same orders, fills, round trips, equity curve and P&L as
``run_backtest(panel, SignalStrategy(...))`` (same client order ids, fill prices, fees, session-end
cancellations and missing-bar behaviour), computed as follows:

1. per row and ticker, the next row with a finite open in the same session (where a market order
   decided on that row's close fills; none: it is cancelled at the session's end), with numpy;
2. per ticker, a Python loop over the rows that carry a signal only, keeping flat/long/pending;
3. fill prices, fees, cash, positions and the per-minute equity from those orders, with numpy.

Units: dollars, shares, basis points; times are bar open times (UTC).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from live.backtest.broker import last_prices
from live.backtest.panel import MinutePanel
from live.backtest.simulator import FILL_SCHEMA, ORDER_SCHEMA, TRADE_SCHEMA, BacktestResult
from live.engine.settings import ExecutionCosts
from live.engine.types import Intent, OrderType, Side, client_order_id

_NONE = np.iinfo(np.int64).max  # "no fillable row" while taking minima


def next_fill_rows(panel: MinutePanel) -> np.ndarray:
    """(rows, tickers) int: the row where a market order decided on row ``i``'s close fills.

    That is the first row after ``i`` in the same session with a finite open for the ticker;
    -1 where there is none (the order is cancelled at the session's end)."""
    rows, n = panel.shape
    finite = np.isfinite(panel.open)
    index = np.where(finite, np.arange(rows)[:, None], _NONE)
    at_or_after = np.minimum.accumulate(index[::-1], axis=0)[::-1]
    following = np.full((rows, n), _NONE, dtype=np.int64)
    following[:-1] = at_or_after[1:]
    last = session_last_rows(panel)
    return np.where(following <= last[:, None], following, -1)


def session_last_rows(panel: MinutePanel) -> np.ndarray:
    """Per row: the row of its session's last bar."""
    ends = np.flatnonzero(panel.session_end)
    session_index = np.concatenate([[0], np.cumsum(panel.session_end[:-1])]).astype(np.int64)
    return ends[session_index]


def _walk_signals(
    entries: np.ndarray, exits: np.ndarray, fill_rows: np.ndarray, last_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The orders :class:`SignalStrategy` submits: (decided row, column, is buy, fill row or -1).

    Per ticker, only the rows with an entry or exit are visited. An order is pending from its
    decision until the bar it fills in (or, unfilled, until its session ends); a signal seen
    while it is pending is ignored, as the strategy ignores tickers with working orders."""
    decided, columns, buys, fills = [], [], [], []
    for j in range(entries.shape[1]):
        rows = np.flatnonzero(entries[:, j] | exits[:, j])
        if rows.size == 0:
            continue
        enter = (entries[rows, j] & ~exits[rows, j]).tolist()
        leave = exits[rows, j].tolist()
        fill_at = fill_rows[rows, j].tolist()
        session_last = last_rows[rows].tolist()
        held = pending = pending_buy = False
        resolved_at = pending_fill = -1
        for k, row in enumerate(rows.tolist()):
            if pending:
                if row < resolved_at:
                    continue
                if pending_fill >= 0:
                    held = pending_buy
                pending = False
            if held and leave[k]:
                pending_buy = False
            elif not held and enter[k]:
                pending_buy = True
            else:
                continue
            pending = True
            pending_fill = fill_at[k]
            resolved_at = pending_fill if pending_fill >= 0 else session_last[k] + 1
            decided.append(row)
            columns.append(j)
            buys.append(pending_buy)
            fills.append(pending_fill)
    return (
        np.array(decided, dtype=np.int64),
        np.array(columns, dtype=np.int64),
        np.array(buys, dtype=bool),
        np.array(fills, dtype=np.int64),
    )


def market_fill_prices(
    panel: MinutePanel,
    costs: ExecutionCosts,
    rows: np.ndarray,
    cols: np.ndarray,
    qty: int,
    buy: np.ndarray,
) -> np.ndarray:
    """Dollars per share of ``qty``-share market orders filling at ``rows``' opens: the broker's
    slippage (half the quoted spread plus ``impact_bps * sqrt(qty / volume)``), against the trader."""
    spread = panel.spread_bps[rows, cols]
    spread = np.where(np.isfinite(spread), spread, costs.default_spread_bps)
    half = spread / 2 if costs.half_spread else np.zeros_like(spread)
    volume = np.maximum(panel.volume[rows, cols], 1.0)
    slippage = half + costs.impact_bps * np.sqrt(qty / volume)
    sign = np.where(buy, 1.0, -1.0)
    return panel.open[rows, cols] * (1 + sign * slippage / 1e4)


def fill_fees(costs: ExecutionCosts, buy: np.ndarray, qty: int, price: np.ndarray) -> np.ndarray:
    """Dollars of :meth:`ExecutionCosts.fees` for fills of ``qty`` shares at ``price``, bit for bit.

    A purchase's fees do not depend on its price. A sale's do, and the broker passes a numpy
    price, so they are rounded to cents as numpy rounds (``np.round``), not as Python does."""
    commission = costs.commission_per_order + costs.commission_per_share * qty
    if commission > 0:
        commission = max(commission, costs.commission_min)
    regulatory = costs.sec_fee_rate * qty * price + min(
        costs.finra_taf_per_share * qty, costs.finra_taf_max
    )
    return np.where(buy, costs.fees("buy", qty, 0.0), np.round(commission + regulatory, 2))


def run_signals(
    panel: MinutePanel,
    entries: np.ndarray,
    exits: np.ndarray,
    size: int,
    costs: ExecutionCosts | None = None,
    initial_capital: float = 100_000.0,
    strategy_id: str = "signals",
) -> BacktestResult:
    """Backtest fixed-``size`` (shares) long-only ``entries``/``exits`` ((bars, tickers) bool,
    read on each bar's close) exactly as ``run_backtest`` runs :class:`SignalStrategy`;
    ``initial_capital`` in dollars."""
    if entries.shape != exits.shape or entries.shape != panel.shape:
        raise ValueError("entries and exits must both be (bars, tickers) arrays")
    if size <= 0 or int(size) != size:
        raise ValueError(f"size must be a whole number of shares > 0, got {size}")
    costs = costs or ExecutionCosts()
    decided, cols, buy, fill_row = _walk_signals(
        np.asarray(entries, dtype=bool),
        np.asarray(exits, dtype=bool),
        next_fill_rows(panel),
        session_last_rows(panel),
    )
    # the broker's order within a bar: decision row, then exits before entries, then column
    submitted = np.lexsort((cols, buy, decided))
    decided, cols, buy = decided[submitted], cols[submitted], buy[submitted]
    fill_row = fill_row[submitted]
    frames = _Frames(panel, size, strategy_id)
    orders = frames.orders(decided, cols, buy)

    filled = np.flatnonzero(fill_row >= 0)
    filled = filled[np.argsort(fill_row[filled], kind="stable")]
    rows, cols, buy = fill_row[filled], cols[filled], buy[filled]
    price = market_fill_prices(panel, costs, rows, cols, size, buy)
    fees = fill_fees(costs, buy, size, price)
    return BacktestResult(
        initial_capital=initial_capital,
        equity=frames.equity(rows, cols, np.where(buy, size, -size), price, fees, initial_capital),
        trades=frames.trades(rows, cols, buy, price, fees),
        fills=frames.fills(orders["client_order_id"].gather(filled), rows, cols, buy, price, fees),
        orders=orders,
        cancelled=orders.filter(pl.Series(fill_row < 0)).with_columns(
            unfilled=pl.lit(size, dtype=pl.Int64), why=pl.lit("session end")
        ),
        rejections=pl.DataFrame(),
        bar_events=int(np.isfinite(panel.close).sum()),
    )


class _Frames:
    """The simulator's frames (same schemas, same numbers) from arrays of orders and fills."""

    def __init__(self, panel: MinutePanel, size: int, strategy_id: str) -> None:
        self.panel = panel
        self.size = size
        self.strategy_id = strategy_id
        self.ts = pl.Series("ts", panel.ts, dtype=FILL_SCHEMA["ts"])
        self.tickers = pl.Series("ticker", panel.tickers, dtype=pl.Utf8)

    def _constant(self, value, n: int, dtype) -> pl.Series:
        return pl.repeat(value, n, dtype=dtype, eager=True)

    @staticmethod
    def _choose(buy: np.ndarray, if_buy: str, if_sell: str) -> pl.Series:
        return pl.Series([if_sell, if_buy], dtype=pl.Utf8).gather(buy.astype(np.int64))

    def orders(self, decided: np.ndarray, cols: np.ndarray, buy: np.ndarray) -> pl.DataFrame:
        n = len(decided)
        tickers = self.tickers.gather(cols)
        intents = self._choose(buy, Intent.ENTRY.value, Intent.SIGNAL_EXIT.value)
        # each decision bar's isoformat() once, not once per order
        rows = np.unique(decided)
        iso = dict(zip(rows.tolist(), (self.panel.ts[r].isoformat() for r in rows), strict=True))
        ids = [
            client_order_id(self.strategy_id, t, iso[d], i)
            for t, d, i in zip(tickers.to_list(), decided.tolist(), intents.to_list(), strict=True)
        ]
        return pl.DataFrame(
            {
                "client_order_id": pl.Series(ids, dtype=pl.Utf8),
                "ticker": tickers,
                "side": self._choose(buy, Side.BUY.value, Side.SELL.value),
                "qty": self._constant(self.size, n, pl.Int64),
                "order_type": self._constant(OrderType.MARKET.value, n, pl.Utf8),
                "intent": intents,
                "decided_at": self.ts.gather(decided),
                "limit_price": self._constant(None, n, pl.Float64),
                "stop_price": self._constant(None, n, pl.Float64),
                "reason": self._constant("", n, pl.Utf8),
                "signal": self._constant(self.strategy_id, n, pl.Utf8),
            },
            schema=ORDER_SCHEMA,
        )

    def fills(self, ids: pl.Series, rows, cols, buy, price, fees) -> pl.DataFrame:
        n = len(rows)
        return pl.DataFrame(
            {
                "client_order_id": ids,
                "ticker": self.tickers.gather(cols),
                "side": self._choose(buy, Side.BUY.value, Side.SELL.value),
                "qty": self._constant(self.size, n, pl.Int64),
                "price": price,
                "fees": fees,
                "ts": self.ts.gather(rows),
                "intent": self._choose(buy, Intent.ENTRY.value, Intent.SIGNAL_EXIT.value),
                "signal": self._constant(self.strategy_id, n, pl.Utf8),
                "reference_price": self.panel.open[rows, cols],
            },
            schema=FILL_SCHEMA,
        ).with_columns(notional=pl.col("qty") * pl.col("price"))

    def trades(self, rows, cols, buy, price, fees) -> pl.DataFrame:
        """Round trips as :class:`~live.engine.portfolio.Portfolio` books them, in exit-fill order.

        A ticker's fills alternate buy, sell (an unfilled order leaves its state unchanged), so
        each sell closes the ticker's previous fill. The arithmetic is the portfolio's own, so
        every number is the event loop's to the bit; its gross P&L is a Python float (rounded as
        Python rounds), its fees and net P&L numpy floats (rounded as numpy rounds)."""
        size = self.size
        by_ticker = np.lexsort((np.arange(len(rows)), cols))
        same = cols[by_ticker][1:] == cols[by_ticker][:-1]
        previous = np.full(len(rows), -1, dtype=np.int64)
        previous[by_ticker[1:][same]] = by_ticker[:-1][same]
        exits = np.flatnonzero(~buy)
        entries = previous[exits]
        entry_cost = size * price[entries]
        exit_value = size * price[exits]
        entry_price = entry_cost / size
        gross = exit_value - entry_cost
        fee = fees[entries] + fees[exits] * 1.0
        pnl = gross - fee
        notional = np.abs(size * entry_price)
        n = len(exits)
        return pl.DataFrame(
            {
                "ticker": self.tickers.gather(cols[exits]),
                "sector": self._constant("unknown", n, pl.Utf8),
                "signal": self._constant(self.strategy_id, n, pl.Utf8),
                "direction": self._constant(1, n, pl.Int64),
                "qty": self._constant(size, n, pl.Int64),
                "entry_ts": self.ts.gather(rows[entries]),
                "entry_price": entry_price,
                "exit_ts": self.ts.gather(rows[exits]),
                "exit_price": exit_value / size,
                "exit_intent": self._constant(Intent.SIGNAL_EXIT.value, n, pl.Utf8),
                "gross_pnl": pl.Series([round(x, 2) for x in gross.tolist()], dtype=pl.Float64),
                "fees": np.round(fee, 2),
                "pnl": np.round(pnl, 2),
                "return_bps": np.where(
                    notional != 0, pnl / np.where(notional != 0, notional, 1) * 1e4, 0
                ),
                "bars_held": self._constant(0, n, pl.Int64),
            },
            schema=TRADE_SCHEMA,
        )

    def equity(self, rows, cols, signed, price, fees, initial_capital) -> pl.DataFrame:
        """Per bar: cash after the bar's fills, positions marked at the last close, as the loop."""
        panel = self.panel
        n_rows, n = panel.shape
        # the portfolio subtracts each fill's cash flow in turn: accumulate in the same order
        cash_after = np.cumsum(np.concatenate([[initial_capital], -(signed * price + fees)]))
        cash = cash_after[np.searchsorted(rows, np.arange(n_rows), side="right")]
        delta = np.zeros((n_rows, n))
        np.add.at(delta, (rows, cols), signed)
        qty = np.cumsum(delta, axis=0)
        value = qty * np.nan_to_num(last_prices(panel))
        net = value.sum(axis=1)
        return pl.DataFrame(
            {
                "ts": self.ts,
                "session": panel.session,
                "equity": cash + net,
                "cash": cash,
                "gross_exposure": np.abs(value).sum(axis=1),
                "net_exposure": net,
                "positions": (qty != 0).sum(axis=1).astype(np.int64),
            },
            schema_overrides={"ts": pl.Datetime("us", "UTC")},
        )
