"""The backtest's fill model behind the live :class:`~live.brokers.base.Broker` interface.

:class:`SimulatedLiveBroker` wraps :class:`~live.backtest.broker.SimulatedBroker` over the
session's panel: the session calls :meth:`on_bar` when bar ``i`` has arrived, the simulation
fills what that bar allows (orders decided on an earlier close only), and :meth:`poll_fills`
hands the fills over. Cash and positions are booked here as a broker's would be, so the
session can reconcile against them like against Alpaca. Orders are DAY orders; a limit order's
``expires_at`` is enforced by the simulation (``handles_expiry``).
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np

from live.backtest.broker import SimulatedBroker
from live.backtest.panel import MinutePanel
from live.brokers.base import (
    Account,
    BrokerOrder,
    BrokerPosition,
    MarketClock,
    OrderStatus,
)
from live.engine.portfolio import Portfolio
from live.engine.settings import ExecutionCosts
from live.engine.types import Fill, Order


class SimulatedLiveBroker:
    name = "simulated"
    handles_expiry = True  # the simulation cancels an expired limit itself

    def __init__(
        self,
        panel: MinutePanel,
        costs: ExecutionCosts | None = None,
        cash: float = 100_000.0,
        buying_power_multiple: float = 2.0,
    ) -> None:
        self.sim = SimulatedBroker(panel, costs)
        self.panel = panel
        self.row = -1
        self.book = Portfolio(cash=cash)  # the broker's own account, booked like the engine's
        self.buying_power_multiple = buying_power_multiple
        self.filled: dict[str, list[float]] = {}  # client id -> [qty, notional]
        self.last = np.full(len(panel.tickers), np.nan)
        self._fills: list[Fill] = []

    # -- the market -------------------------------------------------------------------------
    def on_bar(self, row: int) -> None:
        """Bar ``row`` has arrived: fill what it allows."""
        self.row = row
        close = self.panel.close[row]
        seen = np.isfinite(close)
        self.last[seen] = close[seen]
        for fill in self.sim.process_bar(row):
            self._book(fill)
            self._fills.append(fill)

    def end_session(self) -> None:
        self.sim.cancel_all("session end")

    def _book(self, fill: Fill) -> None:
        self.book.apply(fill)
        done = self.filled.setdefault(fill.client_order_id, [0, 0.0])
        done[0] += fill.qty
        done[1] += fill.qty * fill.price

    # -- the Broker interface ---------------------------------------------------------------
    def account(self) -> Account:
        column = self.sim.column
        values = [p.qty * self.last[column[t]] for t, p in self.book.positions.items()]
        values = [v for v in values if math.isfinite(v)]
        equity = self.book.cash + sum(values)
        gross = sum(abs(v) for v in values)
        return Account(
            equity=equity,
            cash=self.book.cash,
            buying_power=max(0.0, self.buying_power_multiple * equity - gross),
        )

    def clock(self) -> MarketClock:
        ts = self.panel.ts[max(self.row, 0)]
        close = self.panel.ts[-1] + timedelta(minutes=1)
        return MarketClock(ts, self.row < len(self.panel.ts) - 1, self.panel.ts[0], close)

    def positions(self) -> list[BrokerPosition]:
        return [
            BrokerPosition(t, p.qty, p.avg_price) for t, p in sorted(self.book.positions.items())
        ]

    def _status(self, order: Order) -> BrokerOrder:
        qty, notional = self.filled.get(order.client_order_id, [0, 0.0])
        if order.client_order_id in self.sim.working:
            status = OrderStatus.PARTIALLY_FILLED if qty else OrderStatus.NEW
        elif qty >= order.qty:
            status = OrderStatus.FILLED
        else:
            status = OrderStatus.CANCELED
        return BrokerOrder(
            client_order_id=order.client_order_id,
            broker_order_id=f"sim-{order.client_order_id[4:16]}",
            ticker=order.ticker,
            side=order.side,
            qty=order.qty,
            order_type=order.order_type,
            status=status,
            filled_qty=int(qty),
            filled_avg_price=notional / qty if qty else None,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            submitted_at=order.decided_at,
        )

    def open_orders(self) -> list[BrokerOrder]:
        return [self._status(w.order) for w in self.sim.working.values()]

    def working(self) -> list[Order]:
        """The working orders themselves (local: no conversion), in submission order."""
        return [w.order for w in self.sim.working.values()]

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        order = self.sim.seen.get(client_order_id)
        return self._status(order) if order is not None else None

    def submit(self, order: Order) -> BrokerOrder:
        self.sim.submit(order, self.row)  # a repeated id is ignored by the simulation
        return self._status(self.sim.seen[order.client_order_id])

    def cancel(self, client_order_id: str) -> None:
        self.sim.cancel(client_order_id, "cancelled")

    def poll_fills(self) -> list[Fill]:
        fills, self._fills = self._fills, []
        return fills

    def adopt(self, order: Order) -> None:
        return None  # the simulation knows every order it was given
