"""The engine's vocabulary: sides, order types, orders, fills and positions (dollars and shares)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike


def side_of(direction: ArrayLike) -> np.ndarray:
    """+1 long, -1 short, 0 flat (NaN counts as flat), as float64 for broadcasting."""
    d = np.asarray(direction, dtype=np.float64)
    # comparisons with NaN are False, so NaN maps to 0 without a nan_to_num pass
    return (d > 0).astype(np.float64) - (d < 0)


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP_LIMIT = "stop_limit"


class Intent(StrEnum):
    """Why an order exists; part of its client order id and of the trade record."""

    ENTRY = "entry"
    STOP = "stop"
    TARGET = "target"
    PEAK = "peak"
    TIME = "time"
    SIGNAL_EXIT = "signal_exit"
    CLOSE = "close"  # flat at the session close
    KILL = "kill"  # kill switch flattening


def client_order_id(strategy: str, ticker: str, decided_at: datetime | str, intent: str) -> str:
    """Deterministic id of one decision: a retry of the same decision reuses it (max 48 chars).

    ``decided_at`` is the open time (UTC) of the bar on whose close the decision was made, or
    its ``isoformat()`` text (callers that make many ids format each bar once)."""
    when = decided_at if isinstance(decided_at, str) else decided_at.isoformat()
    text = f"{strategy}|{ticker}|{when}|{intent}"
    return f"ats-{hashlib.sha256(text.encode()).hexdigest()[:40]}"


@dataclass(frozen=True)
class Order:
    """One order; ``qty`` in whole shares (> 0), prices in dollars."""

    client_order_id: str
    ticker: str
    side: Side
    qty: int
    order_type: OrderType
    intent: Intent
    decided_at: datetime  # open time of the bar whose close made the decision
    limit_price: float | None = None
    stop_price: float | None = None
    reason: str = ""
    signal: str = ""  # the signal that opened the position (for attribution)
    expires_at: datetime | None = None  # a limit order's unfilled rest is cancelled at this time

    def __post_init__(self) -> None:
        if self.qty <= 0 or int(self.qty) != self.qty:
            raise ValueError(f"order {self.client_order_id}: qty must be a whole number > 0")
        if self.order_type is not OrderType.MARKET and self.limit_price is None:
            raise ValueError(
                f"order {self.client_order_id}: a {self.order_type} order needs a limit"
            )
        if self.order_type is OrderType.STOP_LIMIT and self.stop_price is None:
            raise ValueError(f"order {self.client_order_id}: a stop-limit order needs a stop price")

    @property
    def signed_qty(self) -> int:
        return self.qty if self.side is Side.BUY else -self.qty


@dataclass(frozen=True)
class Cancel:
    """A decision to cancel a working order (before an urgent exit replaces it)."""

    client_order_id: str
    ticker: str
    reason: str


@dataclass(frozen=True)
class Fill:
    """An execution of (part of) an order; ``price`` includes slippage, ``fees`` are dollars."""

    client_order_id: str
    ticker: str
    side: Side
    qty: int
    price: float
    fees: float
    ts: datetime  # open time of the bar in which it filled
    intent: Intent
    signal: str = ""
    reference_price: float = float("nan")  # mid/open before costs, for execution-quality analysis

    @property
    def signed_qty(self) -> int:
        return self.qty if self.side is Side.BUY else -self.qty


@dataclass
class Position:
    """An open position: ``qty`` > 0 long, < 0 short; ``avg_price`` in dollars per share."""

    ticker: str
    qty: int
    avg_price: float
    opened_at: datetime
    signal: str = ""
    stop: float = float("nan")
    target: float = float("nan")
    peak: float = float("nan")  # most favourable price since entry
    bars_held: int = 0
    max_holding_bars: int = 0  # 0: no time exit
    entry_fees: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def direction(self) -> int:
        return 1 if self.qty > 0 else -1
