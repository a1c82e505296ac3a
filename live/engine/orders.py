"""The order generator: picks market, limit or stop-limit for a decision and prices it to the cent."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from live.engine.settings import StrategySettings
from live.engine.types import Intent, Order, OrderType, Position, Side, client_order_id

# exits that must leave now, whatever the spread: protection, flattening, a stale or reversed trade
URGENT_EXITS = frozenset(
    {Intent.STOP, Intent.KILL, Intent.CLOSE, Intent.TIME, Intent.PEAK, Intent.SIGNAL_EXIT}
)
_CENT = Decimal("0.01")


def to_cent(price: float) -> float:
    """``price`` dollars rounded to the cent, halves away from zero (10.005 -> 10.01).

    Rounds the shortest decimal form of the float, so 10.005 is a half, not 10.00499999..."""
    return float(Decimal(repr(float(price))).quantize(_CENT, rounding=ROUND_HALF_UP))


def _wider_than(value_bps: float, threshold_bps: float) -> bool:
    # NaN compares False: an unknown spread or volatility counts as neither wide nor fast
    return value_bps > threshold_bps


def select_order_type(
    intent: Intent | str,
    spread_bps: float,
    volatility_bps: float,
    settings: StrategySettings,
) -> OrderType:
    """Order type for a decision, given the quoted spread and the 1-minute ATR (both bps of price).

    Urgent exits are MARKET; a TARGET exit is a LIMIT at the target. An ENTRY is a STOP_LIMIT in a
    fast name (volatility above ``stop_limit_volatility_bps``: enter only if the move goes on),
    else a LIMIT when the spread is above ``limit_spread_bps``, else MARKET."""
    intent = Intent(intent)
    if intent in URGENT_EXITS:
        return OrderType.MARKET
    if intent is Intent.TARGET:
        return OrderType.LIMIT
    if _wider_than(volatility_bps, settings.stop_limit_volatility_bps):
        return OrderType.STOP_LIMIT
    if _wider_than(spread_bps, settings.limit_spread_bps):
        return OrderType.LIMIT
    return OrderType.MARKET


class OrderGenerator:
    """Turns entry and exit decisions of one strategy into ``Order``s with deterministic ids."""

    def __init__(self, strategy_id: str, settings: StrategySettings) -> None:
        self.strategy_id = strategy_id
        self.settings = settings

    def _expiry(self, order_type: OrderType, decided_at: datetime) -> datetime | None:
        if order_type is OrderType.MARKET:
            return None
        # decided_at is the open of the 1-minute bar whose close made the decision, so the order
        # reaches the market a minute later and rests for the full TTL from then
        return decided_at + timedelta(minutes=self.settings.limit_ttl_minutes + 1)

    def entry(
        self,
        ticker: str,
        direction: int,
        qty: int,
        price: float,
        spread_bps: float,
        volatility_bps: float,
        decided_at: datetime,
        signal: str = "",
        reason: str = "",
    ) -> Order:
        """Open ``qty`` whole shares, long for ``direction`` +1 or short for -1, near ``price``.

        ``price`` is the mid (dollars); ``spread_bps`` the quoted spread and ``volatility_bps`` the
        1-minute ATR, both bps of price. A LIMIT rests at the near touch (the ask for a buy, the bid
        for a sell); a STOP_LIMIT buy triggers a quarter ATR above ``price`` with its limit one
        spread above the stop (mirrored for a sell; an unknown spread puts the limit at the stop)."""
        _check_qty(qty)
        if direction not in (1, -1):
            raise ValueError(f"direction must be +1 or -1, got {direction}")
        if not (math.isfinite(price) and price > 0):
            raise ValueError(f"{ticker}: entry price must be positive dollars, got {price}")
        side = Side.BUY if direction > 0 else Side.SELL
        order_type = select_order_type(Intent.ENTRY, spread_bps, volatility_bps, self.settings)
        limit_price = stop_price = None
        if order_type is OrderType.LIMIT:
            limit_price = to_cent(price * (1 + direction * spread_bps / 2 / 1e4))
        elif order_type is OrderType.STOP_LIMIT:
            stop_price = to_cent(price * (1 + direction * volatility_bps / 4 / 1e4))
            spread = spread_bps if math.isfinite(spread_bps) else 0.0
            limit_price = to_cent(stop_price * (1 + direction * spread / 1e4))
        return Order(
            client_order_id=client_order_id(self.strategy_id, ticker, decided_at, Intent.ENTRY),
            ticker=ticker,
            side=side,
            qty=qty,
            order_type=order_type,
            intent=Intent.ENTRY,
            decided_at=decided_at,
            limit_price=limit_price,
            stop_price=stop_price,
            reason=reason,
            signal=signal,
            expires_at=self._expiry(order_type, decided_at),
        )

    def exit(
        self,
        position: Position,
        intent: Intent | str,
        price: float,
        spread_bps: float,
        volatility_bps: float,
        decided_at: datetime,
        reason: str = "",
    ) -> Order:
        """Close all of ``position``: sell a long, buy back a short, ``abs(position.qty)`` shares.

        A TARGET exit is a LIMIT at ``position.target`` (dollars, to the cent); every other exit is
        MARKET. ``price``, ``spread_bps`` and ``volatility_bps`` describe the market as for entry."""
        intent = Intent(intent)
        if intent is Intent.ENTRY:
            raise ValueError(f"{position.ticker}: an exit needs an exit intent, not {intent}")
        qty = abs(position.qty)
        _check_qty(qty)
        order_type = select_order_type(intent, spread_bps, volatility_bps, self.settings)
        limit_price = None
        if order_type is OrderType.LIMIT:
            if not (math.isfinite(position.target) and position.target > 0):
                raise ValueError(f"{position.ticker}: a target exit needs position.target")
            limit_price = to_cent(position.target)
        return Order(
            client_order_id=client_order_id(self.strategy_id, position.ticker, decided_at, intent),
            ticker=position.ticker,
            side=Side.SELL if position.qty > 0 else Side.BUY,
            qty=qty,
            order_type=order_type,
            intent=intent,
            decided_at=decided_at,
            limit_price=limit_price,
            reason=reason,
            signal=position.signal,
            expires_at=self._expiry(order_type, decided_at),
        )


def _check_qty(qty: int) -> None:
    if isinstance(qty, bool) or not (qty > 0 and float(qty).is_integer()):
        raise ValueError(f"qty must be a whole number of shares > 0, got {qty}")
