"""A simple signal strategy: entries and exits given per bar, a fixed number of shares, long only.

The reference strategy: the backtest must agree with an independent backtester on it to the cent
(tests/test_backtest_reference.py), and ``make bench-backtest`` times it. It decides on bar close
like the full engine and goes through the same broker, fill model and portfolio accounting.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from live.engine.portfolio import Portfolio
from live.engine.types import Fill, Intent, Order, OrderType, Side, client_order_id


class SignalStrategy:
    def __init__(
        self,
        tickers: list[str],
        ts: list,
        entries: np.ndarray,
        exits: np.ndarray,
        size: int,
        strategy_id: str = "signals",
    ) -> None:
        """``entries`` and ``exits``: bool arrays (bars, tickers) read on each bar's close."""
        if entries.shape != exits.shape or entries.shape != (len(ts), len(tickers)):
            raise ValueError("entries and exits must both be (bars, tickers) arrays")
        self.tickers = tickers
        self.ts = ts
        self.entries = entries
        self.exits = exits
        self.size = size
        self.strategy_id = strategy_id
        self.active = entries.any(axis=1) | exits.any(axis=1)

    def start_session(self, day: date, rows: range, portfolio: Portfolio) -> None:
        return None

    def end_session(self, day: date, portfolio: Portfolio) -> None:
        return None

    def on_fill(self, fill: Fill, row: int, portfolio: Portfolio) -> None:
        return None

    def _order(self, ticker: str, side: Side, qty: int, row: int, intent: Intent) -> Order:
        decided = self.ts[row]
        return Order(
            client_order_id=client_order_id(self.strategy_id, ticker, decided, intent.value),
            ticker=ticker,
            side=side,
            qty=qty,
            order_type=OrderType.MARKET,
            intent=intent,
            decided_at=decided,
            signal=self.strategy_id,
        )

    def on_bar(
        self, row: int, equity: float, portfolio: Portfolio, pending: dict[str, list[Order]]
    ) -> list[Order]:
        if not self.active[row]:
            return []
        orders = []
        positions = portfolio.positions
        for j in np.flatnonzero(self.exits[row]):
            ticker = self.tickers[j]
            position = positions.get(ticker)
            if position is not None and ticker not in pending:
                orders.append(self._order(ticker, Side.SELL, position.qty, row, Intent.SIGNAL_EXIT))
        for j in np.flatnonzero(self.entries[row] & ~self.exits[row]):
            ticker = self.tickers[j]
            if ticker not in positions and ticker not in pending:
                orders.append(self._order(ticker, Side.BUY, self.size, row, Intent.ENTRY))
        return orders
