"""The simulated broker: the fill model shared by the backtest and the live job's default broker.

Orders are DAY orders, eligible from the bar after the one whose close decided them. Per bar:
- market orders fill in full at the bar's open plus slippage (half the quoted spread, plus impact
  of ``impact_bps * sqrt(qty / bar volume)``), against the trader;
- limit orders fill at the open when it is at or better than the limit (capped at the limit), or
  at the limit when the bar trades through it; at most ``participation_rate`` of the bar's volume
  per bar, so large orders fill partially over several bars;
- stop-limit orders trigger when the bar trades at or through the stop, then act as limits;
- an order still working at its ``expires_at`` (or at the session's end) is cancelled.
Fees (commission, SEC fee, FINRA TAF) come from :class:`~live.engine.settings.ExecutionCosts`.
Submitting a ``client_order_id`` that was already submitted does nothing: retries never duplicate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from live.backtest.panel import MinutePanel
from live.engine.settings import ExecutionCosts
from live.engine.types import Fill, Order, OrderType, Side


@dataclass
class WorkingOrder:
    order: Order
    eligible_row: int
    remaining: int
    triggered: bool = False


class SimulatedBroker:
    def __init__(self, panel: MinutePanel, costs: ExecutionCosts | None = None) -> None:
        self.panel = panel
        self.costs = costs or ExecutionCosts()
        self.column = panel.column()
        self.working: dict[str, WorkingOrder] = {}
        self.seen: dict[str, Order] = {}
        self.cancelled: list[tuple[Order, int, str]] = []  # (order, unfilled shares, why)

    def submit(self, order: Order, row: int) -> bool:
        """Accept ``order`` decided on the close of ``row``; False (and no new order) on a repeat."""
        if order.client_order_id in self.seen:
            return False
        if order.ticker not in self.column:
            raise ValueError(f"order {order.client_order_id}: {order.ticker} is not in the panel")
        self.seen[order.client_order_id] = order
        self.working[order.client_order_id] = WorkingOrder(order, row + 1, order.qty)
        return True

    def cancel(self, client_order_id: str, why: str = "cancelled") -> None:
        work = self.working.pop(client_order_id, None)
        if work is not None:
            self.cancelled.append((work.order, work.remaining, why))

    def cancel_all(self, why: str) -> None:
        for key in list(self.working):
            self.cancel(key, why)

    def pending(self, ticker: str) -> list[Order]:
        return [w.order for w in self.working.values() if w.order.ticker == ticker]

    def process_bar(self, i: int) -> list[Fill]:
        """Fill what bar ``i`` allows; returns the fills in submission order."""
        if not self.working:
            return []
        panel = self.panel
        ts = panel.ts[i]
        fills = []
        for key, work in list(self.working.items()):
            order = work.order
            if work.eligible_row > i:
                continue
            if order.expires_at is not None and ts >= order.expires_at:
                self.cancel(key, "expired")
                continue
            j = self.column[order.ticker]
            open_ = panel.open[i, j]
            if not math.isfinite(open_):
                continue  # no bar for this ticker in this minute
            fill = self._execute(work, i, j)
            if fill is None:
                continue
            fills.append(fill)
            work.remaining -= fill.qty
            if work.remaining == 0:
                del self.working[key]
        return fills

    def _slippage_bps(self, qty: int, i: int, j: int) -> float:
        costs = self.costs
        spread = self.panel.spread_bps[i, j]
        if not math.isfinite(spread):
            spread = costs.default_spread_bps
        half = spread / 2 if costs.half_spread else 0.0
        volume = max(self.panel.volume[i, j], 1.0)
        return half + costs.impact_bps * math.sqrt(qty / volume)

    def _execute(self, work: WorkingOrder, i: int, j: int) -> Fill | None:
        order = work.order
        panel = self.panel
        open_, high, low = panel.open[i, j], panel.high[i, j], panel.low[i, j]
        buy = order.side is Side.BUY
        sign = 1.0 if buy else -1.0
        qty = work.remaining
        if order.order_type is OrderType.MARKET:
            price = open_ * (1 + sign * self._slippage_bps(qty, i, j) / 1e4)
        else:
            limit = order.limit_price
            reference = open_
            if order.order_type is OrderType.STOP_LIMIT and not work.triggered:
                stop = order.stop_price
                if (buy and high < stop) or (not buy and low > stop):
                    return None
                work.triggered = True
                reference = max(open_, stop) if buy else min(open_, stop)
            cap = math.floor(self.costs.participation_rate * panel.volume[i, j])
            qty = min(qty, cap)
            if qty <= 0:
                return None
            if (buy and reference <= limit) or (not buy and reference >= limit):
                slipped = reference * (1 + sign * self._slippage_bps(qty, i, j) / 1e4)
                price = min(slipped, limit) if buy else max(slipped, limit)
            elif (buy and low < limit) or (not buy and high > limit):
                price = limit
            else:
                return None
        fees = self.costs.fees(order.side.value, qty, price)
        return Fill(
            client_order_id=order.client_order_id,
            ticker=order.ticker,
            side=order.side,
            qty=int(qty),
            price=float(price),
            fees=fees,
            ts=panel.ts[i],
            intent=order.intent,
            signal=order.signal,
            reference_price=float(open_),
        )


def last_prices(panel: MinutePanel) -> np.ndarray:
    """Each ticker's last known close at every row (forward-filled; NaN before its first bar)."""
    close = panel.close
    index = np.where(np.isfinite(close), np.arange(close.shape[0])[:, None], 0)
    np.maximum.accumulate(index, axis=0, out=index)
    filled = close[index, np.arange(close.shape[1])[None, :]]
    return filled
