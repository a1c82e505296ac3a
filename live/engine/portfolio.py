"""Portfolio accounting: cash, positions, realized round trips and marked equity (dollars, shares).

Shared by the backtest and the live job: every fill, simulated or from a broker, goes through
:meth:`Portfolio.apply`. A position opened by one fill may be closed by several (partial fills);
each position that returns to zero becomes one round-trip record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from live.engine.types import Fill, Position


@dataclass
class RoundTrip:
    ticker: str
    direction: int
    qty: int
    entry_ts: datetime
    entry_price: float
    exit_ts: datetime
    exit_price: float
    exit_intent: str
    gross_pnl: float
    fees: float
    signal: str
    bars_held: int

    @property
    def pnl(self) -> float:
        return self.gross_pnl - self.fees

    def record(self, sector: str = "unknown") -> dict:
        notional = abs(self.qty * self.entry_price)
        return {
            "ticker": self.ticker,
            "sector": sector,
            "signal": self.signal,
            "direction": self.direction,
            "qty": self.qty,
            "entry_ts": self.entry_ts,
            "entry_price": self.entry_price,
            "exit_ts": self.exit_ts,
            "exit_price": self.exit_price,
            "exit_intent": self.exit_intent,
            "gross_pnl": round(self.gross_pnl, 2),
            "fees": round(self.fees, 2),
            "pnl": round(self.pnl, 2),
            "return_bps": self.pnl / notional * 1e4 if notional else 0.0,
            "bars_held": self.bars_held,
        }


@dataclass
class _Open:
    """Book-keeping of a position's round trip while it is open."""

    direction: int = 1
    qty_opened: int = 0
    entry_cost: float = 0.0  # dollars paid (long) or received (short) for the opening shares
    exit_value: float = 0.0
    qty_closed: int = 0
    fees: float = 0.0
    last_exit_ts: datetime | None = None
    last_intent: str = ""


@dataclass
class Portfolio:
    cash: float
    positions: dict[str, Position] = field(default_factory=dict)
    round_trips: list[RoundTrip] = field(default_factory=list)
    fees_paid: float = 0.0
    _open: dict[str, _Open] = field(default_factory=dict)

    def apply(self, fill: Fill) -> RoundTrip | None:
        """Book one fill; returns the round trip it completes, if any.

        A fill that would flip a position (long to short) is split: the part that closes the
        position completes the round trip and the rest opens a new one."""
        signed = fill.signed_qty
        position = self.positions.get(fill.ticker)
        self.cash -= signed * fill.price + fill.fees
        self.fees_paid += fill.fees
        if position is None or position.qty == 0:
            self._open_position(fill, signed, fill.fees)
            return None
        if (position.qty > 0) == (signed > 0):  # adding to the position
            book = self._open[fill.ticker]
            total = position.qty + signed
            position.avg_price = (position.avg_price * position.qty + fill.price * signed) / total
            position.qty = total
            book.qty_opened += abs(signed)
            book.entry_cost += abs(signed) * fill.price
            book.fees += fill.fees
            position.entry_fees += fill.fees
            return None
        closing = min(abs(signed), abs(position.qty))
        share = closing / abs(signed)
        book = self._open[fill.ticker]
        book.exit_value += closing * fill.price
        book.qty_closed += closing
        book.fees += fill.fees * share
        book.last_exit_ts = fill.ts
        book.last_intent = str(fill.intent)
        position.qty += int(math.copysign(closing, signed))
        if position.qty != 0:
            return None
        trip = self._close(position, book)
        rest = abs(signed) - closing
        if rest:
            self._open_position(fill, int(math.copysign(rest, signed)), fill.fees * (1 - share))
        return trip

    def _open_position(self, fill: Fill, signed: int, fees: float) -> None:
        self.positions[fill.ticker] = Position(
            ticker=fill.ticker,
            qty=signed,
            avg_price=fill.price,
            opened_at=fill.ts,
            signal=fill.signal,
            entry_fees=fees,
        )
        self._open[fill.ticker] = _Open(
            direction=1 if signed > 0 else -1,
            qty_opened=abs(signed),
            entry_cost=abs(signed) * fill.price,
            fees=fees,
        )

    def _close(self, position: Position, book: _Open) -> RoundTrip:
        direction = book.direction
        entry_price = book.entry_cost / book.qty_opened
        exit_price = book.exit_value / book.qty_closed
        trip = RoundTrip(
            ticker=position.ticker,
            direction=direction,
            qty=book.qty_opened,
            entry_ts=position.opened_at,
            entry_price=entry_price,
            exit_ts=book.last_exit_ts or position.opened_at,
            exit_price=exit_price,
            exit_intent=book.last_intent,
            gross_pnl=direction * (book.exit_value - book.entry_cost),
            fees=book.fees,
            signal=position.signal,
            bars_held=position.bars_held,
        )
        self.round_trips.append(trip)
        del self.positions[position.ticker]
        del self._open[position.ticker]
        return trip

    def adopt(self, ticker: str, qty: int, avg_price: float, ts: datetime, signal: str) -> None:
        """Take over a position found at the broker on reconciliation, at the broker's average
        price; cash does not move (the broker's cash is the truth and was read separately)."""
        self.positions[ticker] = Position(ticker, int(qty), float(avg_price), ts, signal=signal)
        self._open[ticker] = _Open(
            direction=1 if qty > 0 else -1,
            qty_opened=abs(int(qty)),
            entry_cost=abs(qty) * avg_price,
        )

    def forget(self, ticker: str) -> None:
        """Drop a position the broker does not have (reconciliation)."""
        self.positions.pop(ticker, None)
        self._open.pop(ticker, None)

    def market_value(self, prices: dict[str, float]) -> tuple[float, float]:
        """(net, gross) dollar exposure at ``prices`` (a position's own average price if missing)."""
        net = gross = 0.0
        for ticker, position in self.positions.items():
            price = prices.get(ticker, math.nan)
            if not math.isfinite(price):
                price = position.avg_price
            value = position.qty * price
            net += value
            gross += abs(value)
        return net, gross

    def equity(self, prices: dict[str, float]) -> float:
        return self.cash + self.market_value(prices)[0]
