"""The broker interface the live session trades through, and the trading-mode switch.

A broker accepts :class:`~live.engine.types.Order` decisions keyed by their deterministic
``client_order_id``: submitting an id that already exists at the broker returns that order and
never places a second one, so a retry after a timeout is always safe. Fills come back as
:class:`~live.engine.types.Fill` records through :meth:`Broker.poll_fills`; positions and open
orders can be read at any time to reconcile the local book with the broker's.

Trading mode (``ATS_TRADING_MODE``): ``simulated`` (default), ``paper`` (Alpaca paper) or
``live`` (Alpaca live, real money). ``live`` additionally needs
``ATS_CONFIRM_LIVE_TRADING=yes-trade-real-money``; without it :func:`trading_mode` refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from live.engine.types import Fill, Order, OrderType, Side

LIVE_CONFIRMATION = "yes-trade-real-money"


class TradingMode(StrEnum):
    SIMULATED = "simulated"
    PAPER = "paper"
    LIVE = "live"


def trading_mode(env: Mapping[str, str]) -> TradingMode:
    """The mode ``env`` asks for; live only with the explicit confirmation (ValueError else)."""
    text = (env.get("ATS_TRADING_MODE") or TradingMode.SIMULATED.value).strip().lower()
    try:
        mode = TradingMode(text)
    except ValueError:
        choices = ", ".join(m.value for m in TradingMode)
        raise ValueError(f"ATS_TRADING_MODE={text!r}: expected one of {choices}") from None
    if mode is TradingMode.LIVE and env.get("ATS_CONFIRM_LIVE_TRADING") != LIVE_CONFIRMATION:
        raise ValueError(
            "ATS_TRADING_MODE=live trades real money and also needs "
            f"ATS_CONFIRM_LIVE_TRADING={LIVE_CONFIRMATION}; refusing to start"
        )
    return mode


class BrokerError(RuntimeError):
    """A broker call failed; ``retryable`` when the same call may succeed later."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class OrderRejected(BrokerError):
    """The broker refused an order (buying power, halted symbol, bad price...)."""


class OrderStatus(StrEnum):
    NEW = "new"  # accepted / pending_new / held: working
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def open(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


@dataclass(frozen=True)
class Account:
    """Dollars; ``trading_blocked`` when the broker will not accept orders."""

    equity: float
    cash: float
    buying_power: float
    trading_blocked: bool = False
    status: str = "ACTIVE"


@dataclass(frozen=True)
class BrokerOrder:
    """An order as the broker knows it."""

    client_order_id: str
    broker_order_id: str
    ticker: str
    side: Side
    qty: int
    order_type: OrderType
    status: OrderStatus
    filled_qty: int = 0
    filled_avg_price: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    submitted_at: datetime | None = None


@dataclass(frozen=True)
class BrokerPosition:
    """``qty`` > 0 long, < 0 short; ``avg_price`` in dollars per share."""

    ticker: str
    qty: int
    avg_price: float


@dataclass(frozen=True)
class MarketClock:
    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime


class Broker(Protocol):
    name: str

    def account(self) -> Account: ...

    def clock(self) -> MarketClock: ...

    def positions(self) -> list[BrokerPosition]: ...

    def open_orders(self) -> list[BrokerOrder]: ...

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client id, or None when the broker has none."""
        ...

    def submit(self, order: Order) -> BrokerOrder:
        """Place ``order`` (a DAY order). Idempotent by ``client_order_id``: when the broker
        already has that id (an earlier attempt whose response was lost) it returns that order
        and places nothing. Raises :class:`OrderRejected` when refused, :class:`BrokerError`
        when the outcome stays unknown after the retries."""
        ...

    def cancel(self, client_order_id: str) -> None:
        """Cancel the working order (no error when it is already done or unknown)."""
        ...

    def poll_fills(self) -> list[Fill]:
        """Executions not returned before, oldest first, for orders this broker submitted or
        adopted (see :meth:`adopt`)."""
        ...

    def adopt(self, order: Order) -> None:
        """Remember ``order`` (found open at the broker on reconcile) so its fills map back."""
        ...
